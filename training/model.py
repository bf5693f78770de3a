"""The classifier: facenet-pytorch's Inception-ResNet-V1, untrained, with a 3-class head and a reason head.

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

    def __init__(self, preprocessing: Preprocessing, dropout: float = 0.6):
        super().__init__()
        self.preprocessing = preprocessing
        self.classes = CLASSES
        self.reasons = REASONS
        self.backbone = InceptionResnetV1(pretrained=None, classify=True, num_classes=len(CLASSES),
                                          dropout_prob=dropout)
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


def build_model(preprocessing: Preprocessing, dropout: float = 0.6) -> MaskClassifier:
    return MaskClassifier(preprocessing, dropout=dropout)
