"""Training command: ``masklens-train --preset {default,paper} --out-dir runs/NAME``.

Runs on one process, or under ``torchrun --nproc_per_node N`` with DistributedDataParallel (gloo on
CPU, nccl on CUDA). Writes into ``out_dir``: ``config.json`` (the resolved config), ``last.pt`` after
every epoch (resumable with ``--resume true``), ``history.json`` and, at the end, ``model.pt``: the
weights alone, stored in fp16, with everything needed to rebuild and run the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2
from tqdm import tqdm

from .cli import parse_config
from .data import (CLASSES, NO_REASON, REASONS, Sample, SplitIndex, cpu_name, index_split, sha256_of,
                   write_json)
from .faces import MASKED
from .model import (FACENET_NORMALIZATION, FULL_DEPTHS, FULL_WIDTHS, IDENTITY_NORMALIZATION, LIVE_STUDENT_DEPTHS,
                    LIVE_STUDENT_SLIM_WIDTHS, Depths, MaskClassifier, Preprocessing, Widths, build_model,
                    state_for_depths, state_for_widths)
from .preprocess import load_rgb, to_input_array

CHECKPOINT_FORMAT = "masklens-checkpoint/1"
NORMALIZATIONS = {"facenet": FACENET_NORMALIZATION, "identity": IDENTITY_NORMALIZATION}
AUGMENTATIONS = ("none", "flip", "standard", "robust", "webcam")
DISTILL_ON = ("clean", "all")
# Label of an image known to show a mask but not whether it is worn correctly (a weak label).
MASKED_LABEL = -2
MASK_CLASSES = [CLASSES.index("covered"), CLASSES.index("incorrect")]


@dataclass(frozen=True)
class TrainConfig:
    data_root: str = field(default="../shared/data/maskedface-net", metadata={"help": "MaskedFace-Net-style root"})
    out_dir: str = field(default="runs/default", metadata={"help": "where checkpoints and logs go"})
    image_size: int = 160
    depths: tuple[int, ...] = field(default=FULL_DEPTHS, metadata={
        "help": "residual blocks kept in repeat_1, repeat_2 and repeat_3 (training.model.Depths)"})
    widths: tuple[int, ...] = field(default=FULL_WIDTHS, metadata={
        "help": "channels kept inside the stem and the reductions (training.model.Widths)"})
    normalization: str = field(default="facenet", metadata={"help": "facenet or identity"})
    augment: str = field(default="standard", metadata={"help": "none, flip, standard, robust or webcam"})
    epochs: int = 3
    batch_size: int = 32
    optimizer: str = field(default="adamw", metadata={"help": "adam or adamw"})
    lr: float = 2e-3
    weight_decay: float = 0.05
    schedule: str = field(default="onecycle", metadata={"help": "constant or onecycle"})
    label_smoothing: float = 0.1
    reason_weight: float = field(default=0.5, metadata={"help": "weight of the incorrect-reason loss; 0 turns it off"})
    dropout: float = 0.6
    seed: int = 0
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (fast only on CPUs with AVX512-BF16/AMX)"})
    channels_last: bool = True
    num_workers: int = 1
    validate: bool = True
    resume: bool = False
    max_images: int = field(default=0, metadata={"help": "cap on training images per epoch (0: all)"})
    init_from: str = field(default="", metadata={"help": "checkpoint whose weights start the run (fine-tuning)"})
    faces_index: str = field(default="", metadata={"help": "index.json of training.faces: real face crops"})
    synthetic_per_epoch: int = field(default=0, metadata={"help": "masked faces synthesised per epoch"})
    mask_templates: str = field(default="../shared/data/mask-templates", metadata={"help": "for synthesis"})
    real_validation_percent: int = field(default=0, metadata={
        "help": "percent of the real photos of faces_index kept out of training and scored every epoch"})
    occluded_share: float = field(default=0.0, metadata={
        "help": "share of the synthesised faces that get a thing at the mouth that is not a mask (uncovered)"})
    teacher: str = field(default="", metadata={
        "help": "checkpoint distilled into this run on MaskedFace-Net's train images (seen unaugmented)"})
    distill_weight: float = field(default=0.0, metadata={"help": "weight of the distillation loss"})
    distill_on: str = field(default="clean", metadata={
        "help": "clean: MaskedFace-Net's train images, the teacher seeing them unaugmented; all: every training "
                "image, the teacher seeing what the student sees"})
    distill_temperature: float = 2.0
    masked_covered_share: float = field(default=0.0, metadata={
        "help": "0: a weak 'masked' label trains with -log(p_covered + p_incorrect); s > 0: towards covered with "
                "probability s and incorrect with 1 - s instead (most real masks are worn correctly)"})


PRESETS: dict[str, TrainConfig] = {
    # Chosen on validation by training.sweep (results/sweep.json): flips only, 8 epochs.
    "default": TrainConfig(augment="flip", epochs=8),
    # The earlier default (flips, crops and colour jitter, 3 epochs): a better start for real photos than
    # the flips-only default (a real run from that one scored lower on every real test set).
    "real-base": TrainConfig(out_dir="runs/real-base", augment="standard", epochs=3),
    # real-base, fine-tuned on real faces (weak labels) and masks fitted onto unmasked faces.
    "real": TrainConfig(out_dir="runs/real", augment="robust", epochs=4, lr=5e-4, init_from="runs/real-base/model.pt",
                        faces_index="build/faces/index.json", synthetic_per_epoch=3000),
    # real, one more epoch for webcam frames (small, blurry, gray faces) and things at the mouth that are
    # not masks, distilled on MaskedFace-Net from the MaskedFace-Net-only default so that it keeps what
    # default gets right there.
    "real-webcam": TrainConfig(out_dir="runs/real-webcam", augment="webcam", epochs=1, lr=1.5e-4,
                               init_from="models/real.pt", faces_index="build/faces/index.json",
                               synthetic_per_epoch=4000, occluded_share=0.25, teacher="models/default.pt",
                               distill_weight=1.0),
    # The paper: 256 x 256, resize + to-tensor only, Adam at 0.009 for 2 epochs, plain cross-entropy.
    "paper": TrainConfig(out_dir="runs/paper", image_size=256, normalization="identity", augment="none",
                         epochs=2, optimizer="adam", lr=0.009, weight_decay=0.0, schedule="constant",
                         label_smoothing=0.0, reason_weight=0.0),
}


# The webcam mode's student: the shipped model's first residual block of each repeat, distilled from the
# whole shipped model on everything it trained on, each image as the student sees it, with real-prior's
# labels and augmentation beside.
PRESETS["live-student"] = dataclasses.replace(PRESETS["real-webcam"], out_dir="runs/live-student",
                                              depths=dataclasses.astuple(LIVE_STUDENT_DEPTHS), epochs=2,
                                              lr=5e-4, init_from="models/real-prior.pt", teacher="models/real-prior.pt",
                                              distill_on="all", masked_covered_share=0.8, bf16=True)
# Its second step for the webcam mode: the same student with half the channels inside the stem and the
# reductions (where the shallow trunk does most of its work), started from live-student's channels of
# largest batch-norm scale and distilled from real-prior the same way.
PRESETS["live-student-slim"] = dataclasses.replace(PRESETS["live-student"], out_dir="runs/live-student-slim",
                                                   widths=dataclasses.astuple(LIVE_STUDENT_SLIM_WIDTHS),
                                                   init_from="models/live-student.pt")


# The real-webcam recipe once more, from real-soup (the mean of real and real-webcam, training.soup), with a
# photo known only to show a mask trained towards "worn correctly" (as most real masks are worn).
PRESETS["real-prior"] = dataclasses.replace(PRESETS["real-webcam"], out_dir="runs/real-prior",
                                            init_from="models/real-soup.pt", masked_covered_share=0.8)


def preprocessing_for(config: TrainConfig) -> Preprocessing:
    return Preprocessing(size=config.image_size, **NORMALIZATIONS[config.normalization])


class RandomLowResolution(torch.nn.Module):
    """With probability ``p``, shrinks a PIL image to a longer side in ``sides`` and enlarges it back.

    A small face in a webcam or CCTV frame has lost its fine detail *and* shows its pixel grid once
    scaled up to the classifier's input; a Gaussian blur only softens edges.
    """

    def __init__(self, sides: tuple[int, int] = (40, 96), p: float = 0.3):
        super().__init__()
        self.sides, self.p = sides, p

    def forward(self, image):
        from PIL import Image

        if torch.rand(1).item() >= self.p:
            return image
        side = int(torch.randint(self.sides[0], self.sides[1] + 1, (1,)).item())
        width, height = image.size
        scale = side / max(width, height)
        if scale >= 1:
            return image
        small = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
        return small.resize((width, height), Image.BILINEAR)


def _shortcut_breakers(grayscale: float, small_faces: bool) -> list:
    """What stops the model from equating a mask with one colour or one kind of picture: strong hue
    jitter, grayscale (webcam and CCTV frames), blur, JPEG artefacts, and a shift and scale of about
    the spread of the face detector's boxes (results/framing.json: a few percent of the crop)."""
    steps = [v2.RandomHorizontalFlip(),
             v2.RandomAffine(degrees=8, translate=(0.05, 0.05), scale=(0.9, 1.1), fill=127),
             v2.RandomApply([v2.ColorJitter(brightness=0.35, contrast=0.35, saturation=0.5, hue=0.15)], p=0.8),
             v2.RandomGrayscale(p=grayscale),
             v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.3, 1.6))], p=0.2)]
    if small_faces:
        steps.append(RandomLowResolution())
    return steps + [v2.RandomApply([v2.JPEG(quality=(25, 90))], p=0.3)]


def make_transform(augment: str, size: int) -> v2.Compose:
    """PIL image -> augmented PIL image.

    ``robust``: ``_shortcut_breakers``. ``webcam``: those, with more grayscale and faces of a few
    dozen pixels (``RandomLowResolution``), as webcam frames and video crops show them.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    steps = {
        "none": [v2.Identity()],
        "flip": [v2.RandomHorizontalFlip()],
        "standard": [v2.RandomHorizontalFlip(),
                     v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1)),
                     v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03)],
        "robust": _shortcut_breakers(grayscale=0.15, small_faces=False),
        "webcam": _shortcut_breakers(grayscale=0.25, small_faces=True),
    }[augment]
    return v2.Compose(steps)


class FaceDataset(Dataset):
    """Yields (image tensor, class, reason, teacher's view) or None for a file that fails to decode
    (skipped by collate). The teacher's view is the image unaugmented where ``teacher_view``, else None.
    """

    def __init__(self, samples: tuple[Sample, ...], preprocessing: Preprocessing, augment: str,
                 teacher_view: bool = False):
        self.samples = samples
        self.preprocessing = preprocessing
        self.transform = make_transform(augment, preprocessing.size)
        self.teacher_view = teacher_view

    def __len__(self) -> int:
        return len(self.samples)

    def to_item(self, image, label: int, reason: int):
        p = self.preprocessing
        array = to_input_array(self.transform(image), p.size, p.mean, p.std, p.interpolation)
        clean = None
        if self.teacher_view:
            clean = torch.from_numpy(to_input_array(image, p.size, p.mean, p.std, p.interpolation))
        return torch.from_numpy(array), label, reason, clean

    def __getitem__(self, i: int):
        sample = self.samples[i]
        try:
            image = load_rgb(sample.path)
        except OSError:
            return None
        return self.to_item(image, sample.label, sample.reason)


@dataclass(frozen=True)
class FacesIndex:
    """training.faces' index, split into what trains and what is held out to validate on real faces."""
    samples: list[Sample]  # real face crops (weak "masked" labels included)
    sources: list[tuple[Path, np.ndarray]]  # unmasked faces with landmarks, for synthesis
    held_out_samples: list[Sample]
    held_out_sources: list[tuple[Path, np.ndarray]]


def is_held_out(entry: dict, percent: int) -> bool:
    """A fixed ``percent`` of the real photos (never MaskedFace-Net's, which has its own validation split),
    by a hash of the file name: the same faces whatever the machine or the order of the index."""
    if entry["source"].startswith("mfn-"):
        return False
    return int(hashlib.sha256(entry["file"].encode()).hexdigest()[:8], 16) % 100 < percent


def read_faces_index(path: str | Path, held_out_percent: int = 0) -> FacesIndex:
    path = Path(path)
    index = json.loads(path.read_text())
    split = FacesIndex([], [], [], [])
    for entry in index["faces"]:
        file = path.parent / entry["file"]
        label = MASKED_LABEL if entry["label"] == MASKED else CLASSES.index(entry["label"])
        held_out = is_held_out(entry, held_out_percent)
        (split.held_out_samples if held_out else split.samples).append(Sample(path=file, label=label, reason=NO_REASON))
        if entry["synth_source"]:
            source = (file, np.asarray(entry["landmarks"], np.float32))
            (split.held_out_sources if held_out else split.sources).append(source)
    return split


class SyntheticMaskDataset(FaceDataset):
    """``count`` masked faces per epoch, made from unmasked faces by ``training.synth.fit_mask``.

    Item i of epoch e depends only on (seed, e, i): half are masks worn correctly, half worn
    incorrectly in the reasons' proportions of MaskedFace-Net's train split (nose 0.5, chin 0.25,
    nose and mouth 0.25). With ``occluded_share`` > 0, that share of the items is instead the face
    with a thing at the mouth that is not a mask (``training.synth.fit_occluder``), labelled uncovered.
    """

    PLACEMENT_P = {"covered": 0.5, "nose": 0.25, "chin": 0.125, "nose_and_mouth": 0.125}

    def __init__(self, sources: list[tuple[Path, np.ndarray]], count: int, templates: str, seed: int,
                 preprocessing: Preprocessing, augment: str, occluded_share: float = 0.0):
        super().__init__((), preprocessing, augment)
        if not sources:
            raise ValueError("no unmasked faces to synthesise masked faces from")
        if not 0.0 <= occluded_share <= 1.0:
            raise ValueError(f"occluded_share must be within 0..1, got {occluded_share}")
        self.sources, self.count, self.templates, self.seed = sources, count, templates, seed
        self.occluded_share = occluded_share
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        from PIL import Image

        from .synth import fit_mask, fit_occluder, load_mask_library

        rng = np.random.default_rng([self.seed, self.epoch, i])
        path, landmarks = self.sources[rng.integers(len(self.sources))]
        placement = rng.choice(list(self.PLACEMENT_P), p=list(self.PLACEMENT_P.values()))
        # Drawn only when asked for, so that runs without occluders keep their exact items.
        occluded = self.occluded_share > 0 and rng.random() < self.occluded_share
        try:
            rgb = np.asarray(load_rgb(path))
        except OSError:
            return None
        if occluded:
            return self.to_item(Image.fromarray(fit_occluder(rgb, landmarks, rng)), CLASSES.index("uncovered"),
                                NO_REASON)
        masked = fit_mask(rgb, landmarks, placement, load_mask_library(self.templates), rng)
        if placement == "covered":
            label, reason = CLASSES.index("covered"), NO_REASON
        else:
            label, reason = CLASSES.index("incorrect"), REASONS.index(placement)
        return self.to_item(Image.fromarray(masked), label, reason)


def collate_skipping_unreadable(batch):
    """-> ((images, labels, reasons, teacher), skipped). ``teacher`` is None, or (rows, images): the
    batch rows that have a teacher's view, and those views."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, skipped
    images = torch.stack([item[0] for item in kept])
    labels = torch.tensor([item[1] for item in kept])
    reasons = torch.tensor([item[2] for item in kept])
    rows = [row for row, item in enumerate(kept) if item[3] is not None]
    teacher = (torch.tensor(rows), torch.stack([kept[row][3] for row in rows])) if rows else None
    return (images, labels, reasons, teacher), skipped


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def partial_label_loss(logits: torch.Tensor, allowed: list[int]) -> torch.Tensor:
    """Per image, -log of the probability that the class is one of ``allowed``: -log(sum p_allowed)."""
    return torch.logsumexp(logits, dim=1) - torch.logsumexp(logits[:, allowed], dim=1)


def masked_prior_loss(logits: torch.Tensor, covered_share: float) -> torch.Tensor:
    """Per image, cross-entropy towards covered with probability ``covered_share`` and incorrect with the rest."""
    log_p = F.log_softmax(logits, dim=1)
    covered, incorrect = MASK_CLASSES
    return -(covered_share * log_p[:, covered] + (1 - covered_share) * log_p[:, incorrect])


def compute_loss(outputs, labels, reasons, config: TrainConfig) -> torch.Tensor:
    """Cross-entropy on known classes, ``partial_label_loss`` (or, with ``masked_covered_share``,
    ``masked_prior_loss``) on weak "masked" labels, plus the reason loss.

    Both class terms are summed per image and divided by the batch size, so a weakly labelled
    image weighs as much as a labelled one.
    """
    logits, reason_logits = outputs
    logits = logits.float()
    weak = labels == MASKED_LABEL
    known = F.cross_entropy(logits, labels.clamp_min(0), label_smoothing=config.label_smoothing, reduction="none")
    weak_loss = (masked_prior_loss(logits, config.masked_covered_share) if config.masked_covered_share
                 else partial_label_loss(logits, MASK_CLASSES))
    per_image = torch.where(weak, weak_loss, known)
    loss = per_image.mean()
    # The reason loss is the mean over the batch's incorrectly masked images. It stays in the graph even
    # when the batch has none (or its weight is 0), because DistributedDataParallel needs every parameter
    # to receive a gradient on every rank at every step.
    has_reason = reasons != NO_REASON
    per_image = F.cross_entropy(reason_logits.float(), reasons.clamp_min(0), reduction="none")
    reason_loss = (per_image * has_reason).sum() / has_reason.sum().clamp_min(1)
    return loss + config.reason_weight * reason_loss


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s KL(teacher || student) at ``temperature``, times its square (so that the
    gradients keep their size whatever the temperature); mean over the images."""
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature ** 2


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def predict_batches(model: MaskClassifier, loader: DataLoader, device: torch.device, bf16: bool = False,
                    channels_last: bool = False):
    """Yields (probabilities, reason probabilities, labels, reasons) per batch, in loader order."""
    model.eval()
    for batch, _ in loader:
        if batch is None:
            continue
        images, labels, reasons, _ = batch
        images = images.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            logits, reason_logits = model(images)
        yield logits.float().softmax(1).cpu(), reason_logits.float().softmax(1).cpu(), labels, reasons


def count_correct(predicted: torch.Tensor, labels: torch.Tensor) -> int:
    """Right answers; a weakly labelled "masked" image is right when the class is covered or incorrect."""
    weak = labels == MASKED_LABEL
    right = torch.where(weak, predicted != CLASSES.index("uncovered"), predicted == labels)
    return int(right.sum())


def validation_scores(model, loader, device, config: TrainConfig) -> dict:
    correct = total = 0
    loss_sum = 0.0
    for probs, _, labels, _ in predict_batches(model, loader, device, config.bf16, config.channels_last):
        correct += int((probs.argmax(1) == labels).sum())
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum"))
        total += len(labels)
    return {"val_accuracy": correct / max(total, 1), "val_loss": loss_sum / max(total, 1)}


def accuracy_on(model, loader, device, config: TrainConfig) -> float:
    """Share of right answers, a weak "masked" label counting as right for covered or incorrect."""
    correct = total = 0
    for probs, _, labels, _ in predict_batches(model, loader, device, config.bf16, config.channels_last):
        correct += count_correct(probs.argmax(1), labels)
        total += len(labels)
    return correct / max(total, 1)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be adam or adamw, got {config.optimizer!r}")


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, pct_start=0.2,
                                                   total_steps=config.epochs * steps_per_epoch)
    raise ValueError(f"schedule must be constant or onecycle, got {config.schedule!r}")


def storable(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor in ``dtype`` if every value fits its range, else unchanged.

    Batch norm's running variances can outgrow fp16 (over 1e5 in the paper recipe, whose inputs are
    not standardised), and an infinite variance would break the model.
    """
    if not tensor.is_floating_point() or dtype == tensor.dtype:
        return tensor
    if tensor.abs().max() > torch.finfo(dtype).max:
        return tensor
    return tensor.to(dtype)


def checkpoint_payload(model: MaskClassifier, config: TrainConfig, data_summary: dict, history: list,
                       epoch: int, weights_dtype: torch.dtype = torch.float32) -> dict:
    state = {k: storable(v, weights_dtype) for k, v in model.state_dict().items()}
    return {
        "format": CHECKPOINT_FORMAT,
        "model": state,
        "config": dataclasses.asdict(config),
        "classes": list(CLASSES),
        "reasons": list(REASONS),
        "preprocessing": model.preprocessing.to_dict(),
        "data": data_summary,
        "history": history,
        "epoch": epoch,
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),
    }


def load_checkpoint(path: str | Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    return checkpoint


def load_checkpoint_for(path: str | Path, preprocessing: Preprocessing) -> dict:
    """``load_checkpoint``, refusing a model trained with other preprocessing than this run's."""
    checkpoint = load_checkpoint(path)
    if checkpoint["preprocessing"] != preprocessing.to_dict():
        raise ValueError(f"{path} was trained with preprocessing {checkpoint['preprocessing']}, "
                         f"this run uses {preprocessing.to_dict()}")
    return checkpoint


def depths_of(checkpoint: dict) -> Depths:
    """The checkpoint's ``Depths`` (checkpoints from before depths were configurable are full models)."""
    return Depths(*checkpoint["config"].get("depths", FULL_DEPTHS))


def widths_of(checkpoint: dict) -> Widths:
    """The checkpoint's ``Widths`` (checkpoints from before widths were configurable are full width)."""
    return Widths(*checkpoint["config"].get("widths", FULL_WIDTHS))


def model_from_checkpoint(checkpoint: dict) -> MaskClassifier:
    """Rebuilds the model in fp32 eval mode from a checkpoint dict (fp16-stored weights are upcast)."""
    if tuple(checkpoint["classes"]) != CLASSES or tuple(checkpoint["reasons"]) != REASONS:
        raise ValueError(f"checkpoint classes {checkpoint['classes']} / reasons {checkpoint['reasons']} "
                         f"differ from this code's {CLASSES} / {REASONS}")
    model = build_model(Preprocessing.from_dict(checkpoint["preprocessing"]),
                        dropout=checkpoint["config"]["dropout"], depths=depths_of(checkpoint),
                        widths=widths_of(checkpoint))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()})
    return model.eval()


class Distributed:
    """Process-group facts for torchrun; a single process is rank 0 of 1."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def train(config: TrainConfig, on_step: Callable[[int], None] | None = None) -> Path:
    """Trains per ``config`` and returns the path of the final ``model.pt``.

    ``on_step(global_step)`` is called after every optimiser step (progress hooks; tests use it to
    interrupt a run).
    """
    env = Distributed()
    try:
        return _train(config, env, on_step)
    finally:
        env.close()


def _train(config: TrainConfig, env: Distributed, on_step) -> Path:
    out_dir = Path(config.out_dir)
    device = env.device
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", dataclasses.asdict(config))
    train_index = index_split(config.data_root, "train")
    splits: dict[str, SplitIndex] = {"train": train_index}
    if config.validate:
        splits["validation"] = index_split(config.data_root, "validation")
    data_summary = {name: index.summary() for name, index in splits.items()}
    for name, index in splits.items():
        if index.unreadable and env.is_main:
            print(f"{name}: skipping {len(index.unreadable)} unreadable image(s): "
                  + ", ".join(str(p) for p in index.unreadable[:5]), file=sys.stderr)

    torch.manual_seed(config.seed)
    preprocessing = preprocessing_for(config)
    if config.distill_on not in DISTILL_ON:
        raise ValueError(f"distill_on must be one of {DISTILL_ON}, got {config.distill_on!r}")
    depths, widths = Depths(*config.depths), Widths(*config.widths)
    model = build_model(preprocessing, dropout=config.dropout, depths=depths, widths=widths)
    if config.init_from:
        start = load_checkpoint_for(config.init_from, preprocessing)
        state = state_for_widths(state_for_depths(start["model"], depths), widths)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        data_summary["init_from"] = {"file": str(config.init_from), "sha256": sha256_of(config.init_from)}
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = None
    if config.distill_weight and not config.teacher:
        raise ValueError("distill_weight needs teacher (the checkpoint to distil)")
    if config.teacher:
        teacher = model_from_checkpoint(load_checkpoint_for(config.teacher, preprocessing)).to(device)
        if config.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        data_summary["teacher"] = {"file": str(config.teacher), "sha256": sha256_of(config.teacher)}

    samples = train_index.samples
    if config.max_images:
        samples = tuple(np.random.default_rng(config.seed).permutation(np.array(samples, dtype=object))
                        [:config.max_images])
    clean_views = teacher is not None and config.distill_on == "clean"
    parts: list[Dataset] = [FaceDataset(samples, preprocessing, config.augment, teacher_view=clean_views)]
    synthetic = None
    real_val_sets: dict[str, Dataset] = {}
    if config.faces_index:
        faces = read_faces_index(config.faces_index, config.real_validation_percent)
        parts.append(FaceDataset(tuple(faces.samples), preprocessing, config.augment))
        data_summary["faces"] = {"index": str(config.faces_index), "sha256": sha256_of(config.faces_index),
                                 "real_faces": len(faces.samples),
                                 "weakly_labelled": sum(s.label == MASKED_LABEL for s in faces.samples),
                                 "synthesis_sources": len(faces.sources),
                                 "held_out_real_faces": len(faces.held_out_samples),
                                 "held_out_synthesis_sources": len(faces.held_out_sources)}
        if config.synthetic_per_epoch:
            synthetic = SyntheticMaskDataset(faces.sources, config.synthetic_per_epoch, config.mask_templates,
                                             config.seed, preprocessing, config.augment, config.occluded_share)
            parts.append(synthetic)
        if config.validate and faces.held_out_samples:
            real_val_sets["real_val_accuracy"] = FaceDataset(tuple(faces.held_out_samples), preprocessing, "none")
        if config.validate and faces.held_out_sources:
            # One mask fitted onto each held-out unmasked face, the same every epoch (its epoch stays 0).
            real_val_sets["real_val_synthetic_accuracy"] = SyntheticMaskDataset(
                faces.held_out_sources, len(faces.held_out_sources), config.mask_templates, config.seed + 1,
                preprocessing, "none")
    elif config.synthetic_per_epoch:
        raise ValueError("synthetic_per_epoch needs faces_index (the unmasked faces to fit masks onto)")
    train_set = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    sampler = (DistributedSampler(train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                  seed=config.seed, drop_last=True) if env.enabled else None)
    per_rank_batch = max(1, config.batch_size // env.world_size)
    per_rank_images = len(sampler) if sampler else len(train_set)
    # Batch norm cannot train on a batch of one image, so a final batch of one is dropped.
    drop_last = per_rank_images % per_rank_batch == 1 and per_rank_images > 1
    steps_per_epoch = per_rank_images // per_rank_batch if drop_last else math.ceil(per_rank_images / per_rank_batch)

    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    history: list[dict] = []
    start_epoch = 0
    last_path = out_dir / "last.pt"
    if config.resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        saved = {k: v for k, v in state["config"].items() if k != "resume"}
        current = {k: v for k, v in dataclasses.asdict(config).items() if k != "resume"}
        if saved != current:
            changed = sorted(k for k in current if saved.get(k) != current[k])
            raise ValueError(f"cannot resume {last_path}: config differs in {changed}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        if env.is_main:
            print(f"resuming from {last_path} after epoch {state['epoch'] + 1}", file=sys.stderr)

    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                           else None) if env.enabled else model)
    real_val_loaders = {name: DataLoader(dataset, batch_size=64, num_workers=config.num_workers,
                                         collate_fn=collate_skipping_unreadable)
                        for name, dataset in real_val_sets.items()}
    val_loader = None
    if config.validate:
        val_loader = DataLoader(FaceDataset(splits["validation"].samples, preprocessing, "none"),
                                batch_size=64, num_workers=config.num_workers,
                                collate_fn=collate_skipping_unreadable)

    global_step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed + 1000 * (epoch + 1) + env.rank)
        if sampler:
            sampler.set_epoch(epoch)
        if synthetic is not None:
            synthetic.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed + epoch)
        loader = DataLoader(train_set, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler,
                            num_workers=config.num_workers, collate_fn=collate_skipping_unreadable,
                            generator=generator, drop_last=drop_last,
                            worker_init_fn=_seed_worker, persistent_workers=False)
        ddp_model.train()
        seen = correct = skipped = 0
        loss_sum = 0.0
        started = time.perf_counter()
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not env.is_main,
                        dynamic_ncols=True, mininterval=2.0)
        for batch, batch_skipped in progress:
            skipped += batch_skipped
            if batch is not None:
                images, labels, reasons, teacher_views = batch
                images, labels, reasons = images.to(device), labels.to(device), reasons.to(device)
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with autocast(device, config.bf16):
                    outputs = ddp_model(images)
                loss = compute_loss(outputs, labels, reasons, config)
                if teacher is not None and config.distill_on == "all":
                    teacher_views = (torch.arange(len(labels)), images)
                if teacher is not None and teacher_views is not None:
                    rows, views = teacher_views[0].to(device), teacher_views[1].to(device)
                    if config.channels_last:
                        views = views.contiguous(memory_format=torch.channels_last)
                    with torch.no_grad(), autocast(device, config.bf16):
                        teacher_logits, _ = teacher(views)
                    # Summed over the distilled images and divided by the batch size, like the other terms.
                    distilled = distillation_loss(outputs[0][rows], teacher_logits, config.distill_temperature)
                    loss = loss + config.distill_weight * distilled * len(rows) / len(labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(labels)
                correct += count_correct(outputs[0].argmax(1), labels)
                loss_sum += loss.item() * len(labels)
                rate = seen / (time.perf_counter() - started)
                progress.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                                     img_s=f"{rate * env.world_size:.1f}", refresh=False)
            # Every rank steps the schedule even for an all-unreadable batch, so ranks stay in lockstep.
            scheduler.step()
            global_step += 1
            if on_step:
                on_step(global_step)
        seen, correct, loss_sum, skipped = env.all_sum([seen, correct, loss_sum, skipped])
        seconds = time.perf_counter() - started
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                  "seconds": seconds, "images_per_second": seen / seconds, "skipped_unreadable": int(skipped),
                  "lr_end": scheduler.get_last_lr()[0], "device": device_name(device)}
        if env.is_main:
            if val_loader is not None:
                record.update(validation_scores(model, val_loader, device, config))
            for name, real_val_loader in real_val_loaders.items():
                record[name] = accuracy_on(model, real_val_loader, device, config)
            history.append(record)
            print(json.dumps(record), file=sys.stderr)
            state = checkpoint_payload(model, config, data_summary, history, epoch)
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
            torch.save(state, out_dir / "last.pt.tmp")
            os.replace(out_dir / "last.pt.tmp", last_path)
            write_json(out_dir / "history.json", {"history": history})
        env.barrier()

    model_path = out_dir / "model.pt"
    if env.is_main:
        if not history:
            history = torch.load(last_path, map_location="cpu", weights_only=True)["history"]
        final = checkpoint_payload(model, config, data_summary, history, config.epochs - 1,
                                   weights_dtype=torch.float16)
        torch.save(final, model_path)
    env.barrier()
    return model_path


def device_name(device: torch.device) -> str:
    """What trained: the GPU's name, or the CPU's model and the threads torch used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainConfig, argv, PRESETS, description=__doc__.splitlines()[0])
    path = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
