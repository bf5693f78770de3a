"""The classifier: facenet-pytorch's Inception-ResNet-V1, untrained, with a 3-class head and a reason head.

``Depths`` says how many residual blocks each of the trunk's three repeats keeps: the full network has
5, 10 and 5; the webcam mode's student keeps the first block of each (``LIVE_STUDENT_DEPTHS``), with
every other stage the same, so a full model's weights start it (``state_for_depths``).

``forward_features`` runs the convolutional trunk up to ``block8`` (the last conv block, the paper's
Grad-CAM layer); ``forward_head`` maps its activations to the outputs. In eval mode the head is
average pooling followed by affine maps, so it is linear in the ``block8`` activations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from facenet_pytorch import InceptionResnetV1
from torch import nn

from .data import CLASSES, REASONS

# Trunk stages in forward order; Grad-CAM target layers are named by these.
STAGES: tuple[str, ...] = (
    "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
    "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8",
)


REPEATS = ("repeat_1", "repeat_2", "repeat_3")
FULL_DEPTHS = (5, 10, 5)


@dataclass(frozen=True)
class Depths:
    """Residual blocks kept in ``repeat_1`` (Block35), ``repeat_2`` (Block17) and ``repeat_3`` (Block8)."""

    repeat_1: int = 5
    repeat_2: int = 10
    repeat_3: int = 5

    def __post_init__(self):
        for name, full in zip(REPEATS, FULL_DEPTHS):
            if not 0 <= getattr(self, name) <= full:
                raise ValueError(f"{name} keeps 0..{full} blocks, not {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


# Zero-shot (no training), keeping these blocks of the shipped model kept 97.8% on the validation split
# against its 99.6%, at about half the int8 graph's time in wasm; a distilled run recovers the rest.
LIVE_STUDENT_DEPTHS = Depths(1, 1, 1)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the network input: resize to size x size, scale to [0, 1], then
    (x - mean) / std per channel. Written into checkpoints and the export manifest."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        return cls(size=int(values["size"]), mean=tuple(values["mean"]), std=tuple(values["std"]),
                   interpolation=values.get("interpolation", "bilinear"))


# facenet-pytorch's fixed_image_standardization, (255 x - 127.5) / 128, written as mean/std on [0, 1].
FACENET_NORMALIZATION = dict(mean=(0.5, 0.5, 0.5), std=(128 / 255, 128 / 255, 128 / 255))
# The paper only turns images into tensors.
IDENTITY_NORMALIZATION = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class MaskClassifier(nn.Module):
    """Inception-ResNet-V1 trunk + 3-class head + incorrect-reason head.

    Outputs ``(logits [N, 3], reason_logits [N, 3])``. The reason head is trained only on incorrectly
    masked faces; it answers "what is uncovered" and never changes the 3-class answer.
    """

    def __init__(self, preprocessing: Preprocessing, dropout: float = 0.6, depths: Depths = Depths()):
        super().__init__()
        self.preprocessing = preprocessing
        self.depths = depths
        self.classes = CLASSES
        self.reasons = REASONS
        self.backbone = InceptionResnetV1(pretrained=None, classify=True, num_classes=len(CLASSES),
                                          dropout_prob=dropout)
        for name in REPEATS:
            setattr(self.backbone, name, getattr(self.backbone, name)[:getattr(depths, name)])
        self.reason_head = nn.Linear(self.backbone.last_linear.out_features, len(REASONS))

    def forward_until(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Runs the trunk up to and including ``stage``."""
        for name in STAGES:
            x = getattr(self.backbone, name)(x)
            if name == stage:
                return x
        raise KeyError(f"unknown stage {stage!r}; stages are {STAGES}")

    def forward_from(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Runs the trunk from just after ``stage`` to the end of ``block8``."""
        for name in STAGES[STAGES.index(stage) + 1:]:
            x = getattr(self.backbone, name)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_until(x, "block8")

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.avgpool_1a(features).flatten(1)
        x = b.dropout(x)
        return b.last_bn(b.last_linear(x))

    def forward_head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embedding(features)
        return self.backbone.logits(embedding), self.reason_head(embedding)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def build_model(preprocessing: Preprocessing, dropout: float = 0.6, depths: Depths = Depths()) -> MaskClassifier:
    return MaskClassifier(preprocessing, dropout=dropout, depths=depths)


def state_for_depths(state: dict[str, torch.Tensor], depths: Depths) -> dict[str, torch.Tensor]:
    """A deeper model's weights for a model of ``depths``: the first blocks of each repeat, the rest dropped."""
    def kept(key: str) -> bool:
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "backbone" and parts[1] in REPEATS:
            return int(parts[2]) < getattr(depths, parts[1])
        return True
    return {key: value for key, value in state.items() if kept(key)}
