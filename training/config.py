"""The training stage's config: ``TrainConfig`` (every field a ``masklens train`` flag) and its presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .model import (
    FACENET_NORMALIZATION,
    FULL_DEPTHS,
    FULL_WIDTHS,
    IDENTITY_NORMALIZATION,
    LIVE_STUDENT_DEPTHS,
    LIVE_STUDENT_SLIM_WIDTHS,
    Preprocessing,
)

NORMALIZATIONS = {"facenet": FACENET_NORMALIZATION, "identity": IDENTITY_NORMALIZATION}

AUGMENTATIONS = ("none", "flip", "standard", "robust", "webcam")

DISTILL_ON = ("clean", "all")


@dataclass(frozen=True)
class TrainConfig:
    data_root: str = field(default="../shared/data/maskedface-net", metadata={"help": "MaskedFace-Net-style root"})
    out_dir: str = field(default="runs/default", metadata={"help": "where checkpoints and logs go"})
    image_size: int = 160
    depths: tuple[int, ...] = field(
        default=FULL_DEPTHS,
        metadata={"help": "residual blocks kept in repeat_1, repeat_2 and repeat_3 (training.model.Depths)"},
    )
    widths: tuple[int, ...] = field(
        default=FULL_WIDTHS,
        metadata={"help": "channels kept inside the stem and the reductions (training.model.Widths)"},
    )
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
    real_validation_percent: int = field(
        default=0,
        metadata={"help": "percent of the real photos of faces_index kept out of training and scored every epoch"},
    )
    occluded_share: float = field(
        default=0.0,
        metadata={
            "help": "share of the synthesised faces that get a thing at the mouth that is not a mask (uncovered)"
        },
    )
    occluders: str = field(
        default="default",
        metadata={"help": "the things that are not masks drawn (training.occluders.OCCLUDER_SETS): default, with-food"},
    )
    placement_mix: str = field(
        default="maskedface-net",
        metadata={
            "help": "how the synthesised masks are worn (training.datasets.PLACEMENT_MIXES): maskedface-net (its "
            "three incorrect ways) or real-wear (also under the chin on the neck, hanging from an ear, mouth only)"
        },
    )
    teacher: str = field(
        default="",
        metadata={"help": "checkpoint distilled into this run on MaskedFace-Net's train images (seen unaugmented)"},
    )
    distill_weight: float = field(default=0.0, metadata={"help": "weight of the distillation loss"})
    distill_on: str = field(
        default="clean",
        metadata={
            "help": "clean: MaskedFace-Net's train images, the teacher seeing them unaugmented; all: every training "
            "image, the teacher seeing what the student sees"
        },
    )
    distill_temperature: float = 2.0
    incorrect_repeats: int = field(
        default=1,
        metadata={"help": "times each real face labelled incorrect (faces_index) is seen per epoch: they are rare"},
    )
    framing: str = field(
        default="",
        metadata={
            "help": "masklens framing's JSON of the face crop to train for: MaskedFace-Net's images are re-cut to it "
            "from its measured_framing, faces_index must be cut with it; empty: MaskedFace-Net's own framing"
        },
    )
    masked_covered_share: float = field(
        default=0.0,
        metadata={
            "help": "0: a weak 'masked' label trains with -log(p_covered + p_incorrect); s > 0: towards covered with "
            "probability s and incorrect with 1 - s instead (most real masks are worn correctly)"
        },
    )


PRESETS: dict[str, TrainConfig] = {
    # Chosen on validation by training.sweep (results/sweep.json): flips only, 8 epochs.
    "default": TrainConfig(augment="flip", epochs=8),
    # The earlier default (flips, crops and colour jitter, 3 epochs): a better start for real photos than
    # the flips-only default (a real run from that one scored lower on every real test set).
    "real-base": TrainConfig(out_dir="runs/real-base", augment="standard", epochs=3),
    # real-base, fine-tuned on real faces (weak labels) and masks fitted onto unmasked faces.
    "real": TrainConfig(
        out_dir="runs/real",
        augment="robust",
        epochs=4,
        lr=5e-4,
        init_from="runs/real-base/model.pt",
        faces_index="build/faces/index.json",
        synthetic_per_epoch=3000,
    ),
    # real, one more epoch for webcam frames (small, blurry, gray faces) and things at the mouth that are
    # not masks, distilled on MaskedFace-Net from the MaskedFace-Net-only default so that it keeps what
    # default gets right there.
    "real-webcam": TrainConfig(
        out_dir="runs/real-webcam",
        augment="webcam",
        epochs=1,
        lr=1.5e-4,
        init_from="models/real.pt",
        faces_index="build/faces/index.json",
        synthetic_per_epoch=4000,
        occluded_share=0.25,
        teacher="models/default.pt",
        distill_weight=1.0,
    ),
    # The paper: 256 x 256, resize + to-tensor only, Adam at 0.009 for 2 epochs, plain cross-entropy.
    "paper": TrainConfig(
        out_dir="runs/paper",
        image_size=256,
        normalization="identity",
        augment="none",
        epochs=2,
        optimizer="adam",
        lr=0.009,
        weight_decay=0.0,
        schedule="constant",
        label_smoothing=0.0,
        reason_weight=0.0,
    ),
}


# The webcam mode's student: the shipped model's first residual block of each repeat, distilled from the
# whole shipped model on everything it trained on, each image as the student sees it, with real-prior's
# labels and augmentation beside.
PRESETS["live-student"] = dataclasses.replace(
    PRESETS["real-webcam"],
    out_dir="runs/live-student",
    depths=dataclasses.astuple(LIVE_STUDENT_DEPTHS),
    epochs=2,
    lr=5e-4,
    init_from="models/real-prior.pt",
    teacher="models/real-prior.pt",
    distill_on="all",
    masked_covered_share=0.8,
    bf16=True,
)

# Its second step for the webcam mode: the same student with half the channels inside the stem and the
# reductions (where the shallow trunk does most of its work), started from live-student's channels of
# largest batch-norm scale and distilled from real-prior the same way.
PRESETS["live-student-slim"] = dataclasses.replace(
    PRESETS["live-student"],
    out_dir="runs/live-student-slim",
    widths=dataclasses.astuple(LIVE_STUDENT_SLIM_WIDTHS),
    init_from="models/live-student.pt",
)


# One compact network for photos and webcam, taught real incorrect wear: live-student-slim fine-tuned on
# real-wear's per-face labels besides everything it trained on (no teacher: none knows real incorrect wear),
# 15% of the real photos held out by photo to choose thresholds and the temperature on.
PRESETS["real-wear"] = dataclasses.replace(
    PRESETS["live-student-slim"],
    out_dir="runs/real-wear",
    init_from="models/live-student-slim.pt",
    teacher="",
    distill_weight=0.0,
    epochs=3,
    lr=5e-4,
    real_validation_percent=15,
    incorrect_repeats=3,
)


# real-wear once more, from it, with the synthesised masks also worn the ways real-wear's incorrect masks
# are that MaskedFace-Net lacks (training.placements) and with beards, scarves and palms among the
# things that are not masks: the incorrect faces it called uncovered wore their masks under the chin or
# on one ear.
PRESETS["real-wear-placements"] = dataclasses.replace(
    PRESETS["real-wear"],
    out_dir="runs/real-wear-placements",
    init_from="models/real-wear.pt",
    epochs=2,
    lr=2.5e-4,
    synthetic_per_epoch=6000,
    placement_mix="real-wear",
)


# real-wear-placements' recipe for a crop that reaches below the chin (results/framing-neck.json: the
# measured framing grown downwards to a side of 2 face sizes): real-wear's incorrect faces called uncovered
# mostly wore the mask under the chin or on the neck, below MaskedFace-Net's framing.
PRESETS["real-wear-neck"] = dataclasses.replace(
    PRESETS["real-wear-placements"],
    out_dir="runs/real-wear-neck",
    epochs=4,
    lr=5e-4,
    framing="results/framing-neck.json",
    faces_index="build/faces-neck/index.json",
)


# real-wear-neck, 2 epochs more from it with food among the things that are not masks and a few more of
# them: looked at by eye, the bare faces it calls incorrect include bites of food, a cup, a dummy, beards.
PRESETS["real-wear-neck-food"] = dataclasses.replace(
    PRESETS["real-wear-neck"],
    out_dir="runs/real-wear-neck-food",
    init_from="models/real-wear-neck.pt",
    epochs=2,
    lr=2.5e-4,
    occluders="with-food",
    occluded_share=0.3,
)


# The real-webcam recipe once more, from real-soup (the mean of real and real-webcam, training.soup), with a
# photo known only to show a mask trained towards "worn correctly" (as most real masks are worn).
PRESETS["real-prior"] = dataclasses.replace(
    PRESETS["real-webcam"], out_dir="runs/real-prior", init_from="models/real-soup.pt", masked_covered_share=0.8
)


def preprocessing_for(config: TrainConfig) -> Preprocessing:
    return Preprocessing(size=config.image_size, **NORMALIZATIONS[config.normalization])
