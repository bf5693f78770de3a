"""What a training run reads: MaskedFace-Net images, real face crops (weak labels) and synthesised masked
faces, each augmented per ``TrainConfig.augment``; batches that skip unreadable files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from masklens.files import sha256_of
from masklens.framing import Framing, reframe
from masklens.labels import CLASSES, INCORRECT, NO_REASON, REASONS
from masklens.preprocess import load_rgb, to_input_array

from .config import AUGMENTATIONS
from .data import MASKED, Sample
from .model import Preprocessing

# Label of an image known to show a mask but not whether it is worn correctly (a weak label).
MASKED_LABEL = -2

MASK_CLASSES = [CLASSES.index("covered"), CLASSES.index("incorrect")]


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
    steps = [
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=8, translate=(0.05, 0.05), scale=(0.9, 1.1), fill=127),
        v2.RandomApply([v2.ColorJitter(brightness=0.35, contrast=0.35, saturation=0.5, hue=0.15)], p=0.8),
        v2.RandomGrayscale(p=grayscale),
        v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.3, 1.6))], p=0.2),
    ]
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
        "standard": [
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03),
        ],
        "robust": _shortcut_breakers(grayscale=0.15, small_faces=False),
        "webcam": _shortcut_breakers(grayscale=0.25, small_faces=True),
    }[augment]
    return v2.Compose(steps)


@dataclass(frozen=True)
class Reframing:
    """Re-cuts an image framed by ``measured`` (MaskedFace-Net's) to ``target`` (``masklens.framing.reframe``)."""

    measured: Framing
    target: Framing

    def __call__(self, image):
        from PIL import Image

        return Image.fromarray(reframe(np.asarray(image), self.measured, self.target))

    def to_dict(self) -> dict:
        return {"measured_framing": asdict(self.measured), "framing": asdict(self.target)}

    @classmethod
    def from_dict(cls, values: dict) -> Reframing:
        """From ``to_dict``'s keys, which ``masklens framing --side``'s ``all`` carries too."""
        return cls(Framing(**values["measured_framing"]), Framing(**values["framing"]))


def reframing_for(framing_file: str) -> Reframing | None:
    """The re-cut of MaskedFace-Net's images for a model trained for ``framing_file`` (TrainConfig.framing);
    None for its own framing (no file, or one without a ``measured_framing``)."""
    if not framing_file:
        return None
    framing = json.loads(Path(framing_file).read_text())["all"]
    return Reframing.from_dict(framing) if "measured_framing" in framing else None


def reframing_of(checkpoint: dict) -> Reframing | None:
    """The re-cut a checkpoint was trained with (recorded in its data summary), or None."""
    recorded = checkpoint["data"].get("reframing")
    return Reframing.from_dict(recorded) if recorded else None


class FaceDataset(Dataset):
    """Yields (image tensor, class, reason, teacher's view) or None for a file that fails to decode
    (skipped by collate). The teacher's view is the image unaugmented where ``teacher_view``, else None.
    ``reframing`` re-cuts each image before anything else (MaskedFace-Net's, for a model of another framing).
    """

    def __init__(
        self,
        samples: tuple[Sample, ...],
        preprocessing: Preprocessing,
        augment: str,
        teacher_view: bool = False,
        reframing: Reframing | None = None,
    ):
        self.samples = samples
        self.preprocessing = preprocessing
        self.transform = make_transform(augment, preprocessing.size)
        self.teacher_view = teacher_view
        self.reframing = reframing

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
        if self.reframing:
            image = self.reframing(image)
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
    by a hash of the photo's name (the file's, in an index without photos): the same faces whatever the
    machine or the order of the index, and every face of a photo on the same side."""
    if entry["source"].startswith("mfn-"):
        return False
    key = entry.get("photo", entry["file"])
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < percent


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


# Placement -> share of the synthesised masks. maskedface-net: its three incorrect ways in the reasons'
# proportions of its train split. real-wear: also the ways real-wear's incorrect masks are worn that
# MaskedFace-Net lacks, weighted towards those the model called uncovered (under the chin, on the
# neck, hanging from an ear).
PLACEMENT_MIXES: dict[str, dict[str, float]] = {
    "maskedface-net": {"covered": 0.5, "nose": 0.25, "chin": 0.125, "nose_and_mouth": 0.125},
    "real-wear": {
        "covered": 0.5,
        "nose": 0.15,
        "mouth_only": 0.04,
        "chin": 0.08,
        "nose_and_mouth": 0.09,
        "neck": 0.07,
        "one_ear": 0.07,
    },
}


class SyntheticMaskDataset(FaceDataset):
    """``count`` masked faces per epoch, made from unmasked faces by ``training.synth.fit_mask``.

    Item i of epoch e depends only on (seed, e, i): half are masks worn correctly, half worn
    incorrectly, the placements drawn from ``PLACEMENT_MIXES[placement_mix]``. With
    ``occluded_share`` > 0, that share of the items is instead the face with a thing on the lower face
    that is not a mask (``training.occluders.fit_occluder``, one of ``OCCLUDER_SETS[occluders]``), labelled
    uncovered.
    """

    def __init__(
        self,
        sources: list[tuple[Path, np.ndarray]],
        count: int,
        templates: str,
        seed: int,
        preprocessing: Preprocessing,
        augment: str,
        occluded_share: float = 0.0,
        placement_mix: str = "maskedface-net",
        occluders: str = "default",
    ):
        from .occluders import OCCLUDER_SETS

        super().__init__((), preprocessing, augment)
        if occluders not in OCCLUDER_SETS:
            raise ValueError(f"unknown occluders {occluders!r}; expected one of {list(OCCLUDER_SETS)}")
        self.occluder_kinds = OCCLUDER_SETS[occluders]
        if placement_mix not in PLACEMENT_MIXES:
            raise ValueError(f"unknown placement_mix {placement_mix!r}; expected one of {list(PLACEMENT_MIXES)}")
        self.placement_p = PLACEMENT_MIXES[placement_mix]
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

        from .occluders import fit_occluder
        from .placements import PLACEMENT_REASON
        from .synth import fit_mask, load_mask_library

        rng = np.random.default_rng([self.seed, self.epoch, i])
        path, landmarks = self.sources[rng.integers(len(self.sources))]
        placement = rng.choice(list(self.placement_p), p=list(self.placement_p.values()))
        # Drawn only when asked for, so that runs without occluders keep their exact items.
        occluded = self.occluded_share > 0 and rng.random() < self.occluded_share
        try:
            rgb = np.asarray(load_rgb(path))
        except OSError:
            return None
        if occluded:
            return self.to_item(
                Image.fromarray(fit_occluder(rgb, landmarks, rng, kinds=self.occluder_kinds)),
                CLASSES.index("uncovered"),
                NO_REASON,
            )
        masked = fit_mask(rgb, landmarks, placement, load_mask_library(self.templates), rng)
        if placement == "covered":
            label, reason = CLASSES.index("covered"), NO_REASON
        else:
            label, reason = CLASSES.index("incorrect"), REASONS.index(PLACEMENT_REASON[placement])
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


def real_face_data(
    config, preprocessing: Preprocessing, summary: dict
) -> tuple[list[Dataset], SyntheticMaskDataset | None, dict[str, Dataset]]:
    """What ``config.faces_index`` adds to a run (a TrainConfig): (its training sets: the real face crops,
    incorrect ones repeated, and the synthesised masked faces; the synthetic set, re-drawn every epoch;
    the held-out real faces scored every epoch, by history key). Records them in ``summary``."""
    parts: list[Dataset] = []
    synthetic = None
    real_validation: dict[str, Dataset] = {}
    if not config.faces_index:
        if config.synthetic_per_epoch:
            raise ValueError("synthetic_per_epoch needs faces_index (the unmasked faces to fit masks onto)")
        return parts, synthetic, real_validation
    faces = read_faces_index(config.faces_index, config.real_validation_percent)
    rare = tuple(s for s in faces.samples if s.label == INCORRECT)
    real = tuple(faces.samples) + rare * (config.incorrect_repeats - 1)
    parts.append(FaceDataset(real, preprocessing, config.augment))
    summary["faces"] = {
        "index": str(config.faces_index),
        "sha256": sha256_of(config.faces_index),
        "real_faces": len(faces.samples),
        "weakly_labelled": sum(s.label == MASKED_LABEL for s in faces.samples),
        "incorrect_repeated": len(rare) * (config.incorrect_repeats - 1),
        "synthesis_sources": len(faces.sources),
        "held_out_real_faces": len(faces.held_out_samples),
        "held_out_synthesis_sources": len(faces.held_out_sources),
    }
    if config.synthetic_per_epoch:
        synthetic = SyntheticMaskDataset(
            faces.sources,
            config.synthetic_per_epoch,
            config.mask_templates,
            config.seed,
            preprocessing,
            config.augment,
            config.occluded_share,
            config.placement_mix,
            config.occluders,
        )
        parts.append(synthetic)
    if config.validate and faces.held_out_samples:
        real_validation["real_val_accuracy"] = FaceDataset(tuple(faces.held_out_samples), preprocessing, "none")
    if config.validate and faces.held_out_sources:
        # One mask fitted onto each held-out unmasked face, the same every epoch (its epoch stays 0).
        real_validation["real_val_synthetic_accuracy"] = SyntheticMaskDataset(
            faces.held_out_sources,
            len(faces.held_out_sources),
            config.mask_templates,
            config.seed + 1,
            preprocessing,
            "none",
            placement_mix=config.placement_mix,
        )
    return parts, synthetic, real_validation
