"""The classifier: facenet-pytorch's Inception-ResNet-V1, untrained, with a 3-class head and a reason head.

``Depths`` says how many residual blocks each of the trunk's three repeats keeps: the full network has
5, 10 and 5; the webcam mode's student keeps the first block of each (``LIVE_STUDENT_DEPTHS``), with
every other stage the same, so a full model's weights start it (``state_for_depths``). ``Widths`` says
how many channels the trunk keeps where no residual sum sees them (inside the stem and the two
reductions, which do most of a shallow trunk's work); a wider model's weights start a narrower one
(``state_for_widths``: each narrowed layer keeps its channels of largest batch-norm scale).

``forward_features`` runs the convolutional trunk up to ``block8`` (the last conv block, the paper's
Grad-CAM layer); ``forward_head`` maps its activations to the outputs. In eval mode the head is
average pooling followed by affine maps, so it is linear in the ``block8`` activations.

With ``mirror_average`` set, ``forward`` answers with the mean of the logits for the image and for its
mirror image (test-time augmentation: a face's left and right are alike, so the two are two looks at one
face), and ``gradcam_layer`` names where Grad-CAM reads that answer (``MirrorPair``).
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, fields

import torch
from facenet_pytorch import InceptionResnetV1
from facenet_pytorch.models.inception_resnet_v1 import BasicConv2d
from torch import nn

from masklens.labels import CLASSES, REASONS

# Trunk stages in forward order; Grad-CAM target layers are named by these.
STAGES: tuple[str, ...] = (
    "conv2d_1a",
    "conv2d_2a",
    "conv2d_2b",
    "maxpool_3a",
    "conv2d_3b",
    "conv2d_4a",
    "conv2d_4b",
    "repeat_1",
    "mixed_6a",
    "repeat_2",
    "mixed_7a",
    "repeat_3",
    "block8",
)


REPEATS = ("repeat_1", "repeat_2", "repeat_3")


def check_within_full(sizes, least: int, unit: str) -> None:
    """Each field of a frozen sizes dataclass lies in least..its default (the full network's size)."""
    for field in fields(sizes):
        if not least <= getattr(sizes, field.name) <= field.default:
            raise ValueError(f"{field.name} keeps {least}..{field.default} {unit}, not {getattr(sizes, field.name)}")


@dataclass(frozen=True)
class Depths:
    """Residual blocks kept in ``repeat_1`` (Block35), ``repeat_2`` (Block17) and ``repeat_3`` (Block8)."""

    repeat_1: int = 5
    repeat_2: int = 10
    repeat_3: int = 5

    def __post_init__(self):
        check_within_full(self, 0, "blocks")

    def to_dict(self) -> dict:
        return asdict(self)


FULL_DEPTHS = astuple(Depths())

# Zero-shot (no training), keeping these blocks of the shipped model kept 97.8% on the validation split
# against its 99.6%, at about half the int8 graph's time in wasm; a distilled run recovers the rest.
LIVE_STUDENT_DEPTHS = Depths(1, 1, 1)


@dataclass(frozen=True)
class Widths:
    """Output channels of ``conv2d_2b``, ``conv2d_3b`` and ``conv2d_4a``, of the inner layers of ``mixed_6a``'s
    convolution branch, and of the inner layers of ``mixed_7a``'s three convolution branches."""

    conv2d_2b: int = 64
    conv2d_3b: int = 80
    conv2d_4a: int = 192
    mixed_6a: int = 192
    mixed_7a: int = 256

    def __post_init__(self):
        check_within_full(self, 1, "channels")

    def to_dict(self) -> dict:
        return asdict(self)


FULL_WIDTHS = astuple(Widths())

# Per width: the layers (BasicConv2d paths in the backbone) whose outputs it sets, each with the one layer
# that reads them. A layer can be both (mixed_6a.branch1.1 reads branch1.0 and feeds branch1.2).
WIDTH_CUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "conv2d_2b": (("conv2d_2b", "conv2d_3b"),),  # through maxpool_3a, which keeps channels
    "conv2d_3b": (("conv2d_3b", "conv2d_4a"),),
    "conv2d_4a": (("conv2d_4a", "conv2d_4b"),),
    "mixed_6a": (("mixed_6a.branch1.0", "mixed_6a.branch1.1"), ("mixed_6a.branch1.1", "mixed_6a.branch1.2")),
    "mixed_7a": (
        ("mixed_7a.branch0.0", "mixed_7a.branch0.1"),
        ("mixed_7a.branch1.0", "mixed_7a.branch1.1"),
        ("mixed_7a.branch2.0", "mixed_7a.branch2.1"),
        ("mixed_7a.branch2.1", "mixed_7a.branch2.2"),
    ),
}

# The webcam student's second step: half of every width above, about half the live graph's work again
# (874 -> 463 million multiply-adds per face at 160 px with LIVE_STUDENT_DEPTHS).
LIVE_STUDENT_SLIM_WIDTHS = Widths(32, 40, 96, 96, 128)


def narrow(backbone: nn.Module, widths: Widths) -> None:
    """Replaces the backbone's layers that ``widths`` narrows by layers of those channels (same kernels)."""
    channels: dict[str, dict[str, int]] = {}
    for name, cuts in WIDTH_CUTS.items():
        for producer, consumer in cuts:
            channels.setdefault(producer, {})["out"] = getattr(widths, name)
            channels.setdefault(consumer, {})["in"] = getattr(widths, name)
    for path, sizes in channels.items():
        layer = backbone.get_submodule(path)
        conv = layer.conv
        narrowed = BasicConv2d(
            sizes.get("in", conv.in_channels),
            sizes.get("out", conv.out_channels),
            conv.kernel_size,
            conv.stride,
            conv.padding,
        )
        parent, _, child = path.rpartition(".")
        setattr(backbone.get_submodule(parent) if parent else backbone, child, narrowed)


def state_for_widths(state: dict[str, torch.Tensor], widths: Widths) -> dict[str, torch.Tensor]:
    """A wider model's weights for a model of ``widths``: each narrowed layer keeps the output channels of
    largest batch-norm scale (|gamma|, in their order), and the layer reading it the same input channels."""
    state = dict(state)
    for name, cuts in WIDTH_CUTS.items():
        width = getattr(widths, name)
        for producer, consumer in cuts:
            head = f"backbone.{producer}"
            if state[f"{head}.bn.weight"].numel() == width:
                continue
            kept = state[f"{head}.bn.weight"].abs().topk(width).indices.sort().values
            state[f"{head}.conv.weight"] = state[f"{head}.conv.weight"][kept]
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"{head}.bn.{key}"] = state[f"{head}.bn.{key}"][kept]
            reader = f"backbone.{consumer}.conv.weight"
            state[reader] = state[reader][:, kept]
    return state


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
    def from_dict(cls, values: dict) -> Preprocessing:
        return cls(
            size=int(values["size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            interpolation=values.get("interpolation", "bilinear"),
        )


# facenet-pytorch's fixed_image_standardization, (255 x - 127.5) / 128, written as mean/std on [0, 1].
FACENET_NORMALIZATION = dict(mean=(0.5, 0.5, 0.5), std=(128 / 255, 128 / 255, 128 / 255))
# The paper only turns images into tensors.
IDENTITY_NORMALIZATION = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class MirrorPair(nn.Module):
    """Follows a trunk stage of a mirror-averaged model, whose batch is [images; mirror images]: joins each
    image's activations with its mirror's, flipped back into line, side by side in channels (``aligned``, an
    identity that Grad-CAM hooks), then parts them again; the values pass through unchanged.

    The mirror-averaged logits are the mean of the two halves' logits, so their gradient at ``aligned`` is
    half of each half's gradient, in line: Grad-CAM there is the mean of the two looks' Grad-CAM sums, the
    mirror's flipped back, before the ReLU. The exported graph computes the same (``export.classifier``).
    """

    def __init__(self):
        super().__init__()
        self.aligned = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels = x.shape[0] // 2, x.shape[1]
        joined = self.aligned(torch.cat([x[:n], x[n:].flip(-1)], 1))
        return torch.cat([joined[:, :channels], joined[:, channels:].flip(-1)])


class MaskClassifier(nn.Module):
    """Inception-ResNet-V1 trunk + 3-class head + incorrect-reason head.

    Outputs ``(logits [N, 3], reason_logits [N, 3])``. The reason head is trained only on incorrectly
    masked faces; it answers "what is uncovered" and never changes the 3-class answer.
    """

    def __init__(
        self, preprocessing: Preprocessing, dropout: float = 0.6, depths: Depths = Depths(), widths: Widths = Widths()
    ):
        super().__init__()
        self.preprocessing = preprocessing
        self.depths = depths
        self.widths = widths
        self.classes = CLASSES
        self.reasons = REASONS
        self.backbone = InceptionResnetV1(
            pretrained=None, classify=True, num_classes=len(CLASSES), dropout_prob=dropout
        )
        for name in REPEATS:
            setattr(self.backbone, name, getattr(self.backbone, name)[: getattr(depths, name)])
        if widths != Widths():
            narrow(self.backbone, widths)
        self.reason_head = nn.Linear(self.backbone.last_linear.out_features, len(REASONS))
        # Weightless, so checkpoints are the same with and without.
        self.mirror_average = False
        self.mirror_pairs = nn.ModuleDict({name: MirrorPair() for name in STAGES})

    def forward_until(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Runs the trunk up to and including ``stage``."""
        for name in STAGES:
            x = getattr(self.backbone, name)(x)
            if name == stage:
                return x
        raise KeyError(f"unknown stage {stage!r}; stages are {STAGES}")

    def forward_from(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Runs the trunk from just after ``stage`` to the end of ``block8``."""
        for name in STAGES[STAGES.index(stage) + 1 :]:
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
        if not self.mirror_average:
            return self.forward_head(self.forward_features(x))
        n = x.shape[0]
        features = torch.cat([x, x.flip(-1)])
        for name in STAGES:
            features = self.mirror_pairs[name](getattr(self.backbone, name)(features))
        logits, reason_logits = self.forward_head(features)
        return (logits[:n] + logits[n:]) / 2, (reason_logits[:n] + reason_logits[n:]) / 2

    def gradcam_layer(self, stage: str) -> nn.Module:
        """The module whose output and gradient Grad-CAM reads for the trunk stage ``stage``."""
        return self.mirror_pairs[stage].aligned if self.mirror_average else getattr(self.backbone, stage)


def build_model(
    preprocessing: Preprocessing, dropout: float = 0.6, depths: Depths = Depths(), widths: Widths = Widths()
) -> MaskClassifier:
    return MaskClassifier(preprocessing, dropout=dropout, depths=depths, widths=widths)


def state_for_depths(state: dict[str, torch.Tensor], depths: Depths) -> dict[str, torch.Tensor]:
    """A deeper model's weights for a model of ``depths``: the first blocks of each repeat, the rest dropped."""

    def kept(key: str) -> bool:
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "backbone" and parts[1] in REPEATS:
            return int(parts[2]) < getattr(depths, parts[1])
        return True

    return {key: value for key, value in state.items() if kept(key)}
