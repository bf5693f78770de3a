"""Fine-tunes the face finder's R-Net and O-Net (facenet-pytorch's MTCNN) on masked faces.

    masklens train-detector --data ../shared/data --out models/mtcnn-masked.pt

MTCNN was trained before masks were common, and its later stages reject many masked faces
(``studies.detector_finetune`` counts where). This follows MTCNN's own recipe from the wheel's weights:
square boxes jittered around each labelled face, cut out as the cascade cuts them
(``masklens.mtcnn.crop_patches`` on the padded photo), are positives (IoU >= ``POSITIVE_IOU``: face,
box offsets), part faces (``PART_IOU`` .. ``POSITIVE_IOU``: box offsets only) or negatives (IoU <
``NEGATIVE_IOU``: no face); P-Net's proposals away from the face, and the stock cascade's candidates on
no-face pictures, add hard negatives. The faces:
``real-wear/train`` crops (their labelled box is the central part), the ``masklens faces`` crops
(``build/faces``: real photos boxed by the stock finder, and bare faces given a synthetic mask by
``training.synth.fit_mask`` or left bare), and negatives from half of the no-face textures. The loss is
face / no face (cross-entropy) plus ``box_weight`` times the offsets' squared error, the offsets the stock
net gives (``box_targets`` stock: the boxes, and so the classifier's crop framing, stay) or the labelled
boxes' (which are drawn by hand and move the boxes); O-Net's landmarks are distilled from the stock O-Net
(``landmark_weight``), since crops are aligned and masks fitted by them.

``out`` holds the changed nets' state dicts and a header (what they were trained on, the config, the
stock weights' source, validation numbers); ``export/face_detector.py --weights`` exports them. The
resolved config and the header go beside it as JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch.models.mtcnn import ONet, RNet

from masklens.cli import parse_config
from masklens.face_finder import SHIPPED_RULE, pad_photo, whole_photo_boxes
from masklens.files import IMAGE_SUFFIXES
from masklens.framing import Framing
from masklens.mtcnn import FaceDetector, crop_bounds, crop_patches, normalize
from masklens.preprocess import load_rgb

from .placements import PLACEMENTS
from .synth import fit_mask, load_mask_library

POSITIVE_IOU = 0.65
PART_IOU = 0.4
NEGATIVE_IOU = 0.3
POSITIVE, PART, NEGATIVE = 1, -1, 0  # sample kinds; only positives and negatives train the face score
NET_SIZES = {"rnet": 24, "onet": 48}
FORMAT = "masklens-mtcnn-finetune-1"
STOCK_WEIGHTS = f"facenet-pytorch {version('facenet-pytorch')} wheel, facenet_pytorch/data/{{rnet,onet}}.pt"
WEAR_CLASSES = ("covered", "incorrect", "uncovered")
CROP_SPAN = 1.8  # real-wear crops: the face box plus 40% of it on each side
TEXTURES = "mask-templates/textures"  # no-face pictures (studies.detection_study counts false faces on them)


def image_files(folder: Path) -> list[Path]:
    """The folder's images and its subfolders', in name order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def central_box(height: int, width: int) -> list[float]:
    """The labelled face box of a real-wear crop: its central 1 / CROP_SPAN."""
    margin = (CROP_SPAN - 1) / 2 / CROP_SPAN
    return [width * margin, height * margin, width * (1 - margin), height * (1 - margin)]


def texture_halves(data: Path) -> tuple[list[Path], list[Path]]:
    """The no-face textures split in two, alternately: only the first half gives training negatives."""
    files = image_files(data / TEXTURES)
    return files[0::2], files[1::2]


def iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each of boxes [N, 4] with one box [4] (x1, y1, x2, y2)."""
    inter_w = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    inter_h = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = inter_w * inter_h
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (areas + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def box_targets(boxes: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The offsets that move each box [N, 4] onto the face box, as R-Net's and O-Net's regression is applied:
    ``box + offset * (width + 1)`` (``masklens.mtcnn.apply_offsets`` with inclusive sizes)."""
    sizes = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
    return ((face[None] - boxes) / np.tile(sizes, 2)).astype(np.float32)


def sample_kinds(overlaps: np.ndarray) -> np.ndarray:
    """POSITIVE, PART, NEGATIVE per IoU with the face; 2 where it is none of them (between 0.3 and 0.4)."""
    kinds = np.full(len(overlaps), 2, dtype=np.int64)  # 2: unused
    kinds[overlaps >= POSITIVE_IOU] = POSITIVE
    kinds[(overlaps >= PART_IOU) & (overlaps < POSITIVE_IOU)] = PART
    kinds[overlaps < NEGATIVE_IOU] = NEGATIVE
    return kinds


def jittered_boxes(face: np.ndarray, count: int, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Squares around a face box: side its mean side times 0.8..1.25, centre moved up to ``shift`` sides;
    whole-pixel coordinates, as the cascade's crops truncate them anyway."""
    side = ((face[2] - face[0]) + (face[3] - face[1])) / 2
    sides = side * np.exp(rng.uniform(np.log(0.8), np.log(1.25), count))
    cx = (face[0] + face[2]) / 2 + rng.uniform(-shift, shift, count) * side
    cy = (face[1] + face[3]) / 2 + rng.uniform(-shift, shift, count) * side
    return _squares(cx - sides / 2, cy - sides / 2, sides)


def _squares(x1: np.ndarray, y1: np.ndarray, sides: np.ndarray) -> np.ndarray:
    x1, y1, sides = np.round(x1), np.round(y1), np.maximum(np.round(sides), 1)
    return np.stack([x1, y1, x1 + sides, y1 + sides], axis=1).astype(np.float32)


def random_squares(height: int, width: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Squares anywhere in an image, of side 12 px up to half its shorter side."""
    sides = rng.uniform(12, max(13, min(height, width) / 2), count)
    sides = np.floor(sides)
    return _squares(
        np.floor(rng.uniform(0, 1, count) * (width - sides)),
        np.floor(rng.uniform(0, 1, count) * (height - sides)),
        sides,
    )


@dataclass
class Samples:
    patches: dict[str, list[np.ndarray]] = field(default_factory=lambda: {net: [] for net in NET_SIZES})
    kinds: list[np.ndarray] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)

    def add(self, rgb: np.ndarray, boxes: np.ndarray, kinds: np.ndarray, offsets: np.ndarray) -> None:
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        bounds = crop_bounds(boxes, rgb.shape[1], rgb.shape[0])
        keep = (bounds[:, 2] > bounds[:, 0]) & (bounds[:, 3] > bounds[:, 1]) & (kinds != 2)
        for net, size in NET_SIZES.items():
            self.patches[net].append(normalize(crop_patches(image, bounds[keep], size)).astype(np.float16))
        self.kinds.append(kinds[keep])
        self.offsets.append(offsets[keep])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"patches_{net}": np.concatenate(p) for net, p in self.patches.items()}
        return {**out, "kinds": np.concatenate(self.kinds), "offsets": np.concatenate(self.offsets)}


def add_face(
    samples: Samples, rgb: np.ndarray, face: np.ndarray, config: DetectorTrainConfig, rng, detector: FaceDetector
) -> None:
    """Positives, part faces and negatives of one labelled face, on the photo padded as the rule pads it."""
    padded, margin = pad_photo(rgb, SHIPPED_RULE.padding)
    face = face + np.float32(margin)
    boxes = [
        jittered_boxes(face, config.per_face * 3, 0.12, rng),  # mostly positives
        jittered_boxes(face, config.per_face * 3, 0.3, rng),  # mostly part faces
        random_squares(*padded.shape[:2], config.per_face * 3, rng),
    ]
    proposals = detector.propose(np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), 20.0)
    away = proposals[iou(proposals, face) < NEGATIVE_IOU] if len(proposals) else proposals
    boxes.append(np.round(away[rng.permutation(len(away))[: config.hard_negatives]]).astype(np.float32))
    boxes = np.concatenate(boxes)
    kinds = sample_kinds(iou(boxes, face))
    quotas = {POSITIVE: config.per_face, PART: config.per_face, NEGATIVE: 3 * config.per_face + config.hard_negatives}
    chosen = np.concatenate([np.flatnonzero(kinds == kind)[:quota] for kind, quota in quotas.items()])
    samples.add(padded, boxes[chosen], kinds[chosen], box_targets(boxes[chosen], face))


def add_textures(
    samples: Samples, paths: list[Path], config: DetectorTrainConfig, rng: np.random.Generator, detector: FaceDetector
) -> None:
    """Negatives from no-face pictures, padded as the rule pads them: random squares, and the boxes the stock
    cascade would hand to R-Net and O-Net there (its P-Net and R-Net candidates, smallest faces included, and
    the whole-photo fallback's squares): the false faces the fine-tuning must not learn to accept."""
    for path in paths:
        rgb = np.asarray(load_rgb(path))
        padded, margin = pad_photo(rgb, SHIPPED_RULE.padding)
        image = np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)
        proposals = np.concatenate([detector.propose(image, size) for size in (20.0, 12.0)])
        hard = np.concatenate([proposals, detector.refine(image, proposals)])
        hard = np.round(hard[rng.permutation(len(hard))[: config.texture_negatives]])
        boxes = np.concatenate(
            [
                random_squares(*padded.shape[:2], config.texture_negatives, rng),
                hard.astype(np.float32),
                whole_photo_boxes(*rgb.shape[:2]) + np.float32(margin),
            ]
        )
        samples.add(padded, boxes, np.zeros(len(boxes), np.int64), np.zeros((len(boxes), 4), np.float32))


def faces_crop_box(size: int, framing: Framing) -> np.ndarray:
    """The face box a ``masklens faces`` crop was cut around (square: its mean side), in crop pixels."""
    side = size / framing.side
    cx, cy = size / 2 - framing.center_dx * side, size / 2 - framing.center_dy * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def training_faces(config: DetectorTrainConfig, rng: np.random.Generator):
    """(rgb, face box, source name) of every training face, in a fixed order."""
    data = Path(config.data)
    for name in WEAR_CLASSES:
        for path in image_files(data / "real-wear/train" / name):
            rgb = np.asarray(load_rgb(path))
            yield rgb, np.array(central_box(*rgb.shape[:2]), np.float32), f"real-wear/train/{name}"
    index = json.loads((Path(config.faces) / "index.json").read_text())
    framing = Framing(**json.loads(Path(config.framing).read_text())["all"]["framing"])
    box = faces_crop_box(index["crop_size"], framing)
    library = load_mask_library(data / "mask-templates")
    taken: dict[str, int] = {}
    for entry in index["faces"]:
        source = entry["source"]
        if source.startswith("real-wear-") and not entry.get("synth_source"):
            continue  # the labelled real-wear crops above stand for them
        if taken.get(source, 0) >= config.faces_per_source:
            continue
        taken[source] = taken.get(source, 0) + 1
        rgb = np.asarray(load_rgb(Path(config.faces) / entry["file"]))
        if entry.get("synth_source") and rng.random() < config.synth_share:
            placement = PLACEMENTS[rng.integers(len(PLACEMENTS))]
            try:
                rgb = fit_mask(rgb, np.asarray(entry["landmarks"], np.float32), placement, library, rng)
                source = f"{source}+synthetic-mask"
            except ValueError:
                pass  # no homography for these landmarks: the face stays bare
        yield rgb, box, source


def build_samples(config: DetectorTrainConfig) -> tuple[dict, dict, dict]:
    """Training and validation samples (every ``validation_every``-th face, and the last texture, held
    out) and the faces per source."""
    rng = np.random.default_rng(config.seed)
    detector = FaceDetector(config.models, thresholds=SHIPPED_RULE.thresholds)
    train, validation, sources = Samples(), Samples(), {}
    for k, (rgb, box, source) in enumerate(training_faces(config, rng)):
        sources[source] = sources.get(source, 0) + 1
        add_face(validation if k % config.validation_every == 0 else train, rgb, box, config, rng, detector)
    textures, _ = texture_halves(Path(config.data))
    add_textures(train, textures[:-1], config, rng, detector)
    add_textures(validation, textures[-1:], config, rng, detector)
    return train.arrays(), validation.arrays(), dict(sorted(sources.items()))


def stock_net(name: str) -> torch.nn.Module:
    return {"rnet": RNet, "onet": ONet}[name](pretrained=True).eval()


def outputs(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(box offsets, landmarks or None, face probabilities) of R-Net or O-Net."""
    out = net(x)
    return (out[0], None, out[1]) if len(out) == 2 else out


def predict(net: torch.nn.Module, x: torch.Tensor, batch: int = 1024) -> tuple:
    with torch.no_grad():
        parts = [outputs(net, x[i : i + batch]) for i in range(0, len(x), batch)]
    return tuple(None if p[0] is None else torch.cat(p) for p in zip(*parts))


def loss_terms(net, x, kinds, offsets, stock_landmarks) -> dict[str, torch.Tensor]:
    boxes, landmarks, probabilities = outputs(net, x)
    scored = kinds != PART
    labelled = kinds != NEGATIVE
    terms = {
        "face": torch.nn.functional.nll_loss(
            probabilities[scored].clamp_min(1e-7).log(), (kinds[scored] == POSITIVE).long()
        ),
        "box": torch.nn.functional.mse_loss(boxes[labelled], offsets[labelled]) if labelled.any() else x.new_zeros(()),
    }
    if landmarks is not None and labelled.any():
        terms["landmarks"] = torch.nn.functional.mse_loss(landmarks[labelled], stock_landmarks[labelled])
    return terms


def scores(net, arrays: dict, name: str, threshold: float, stock_landmarks) -> dict:
    """Validation: faces kept and non-faces let through at the rule's threshold, box error, landmark drift."""
    x = torch.from_numpy(arrays[f"patches_{name}"]).float()
    kinds, offsets = torch.from_numpy(arrays["kinds"]), torch.from_numpy(arrays["offsets"])
    boxes, landmarks, probabilities = predict(net, x)
    face = probabilities[:, 1]
    labelled = kinds != NEGATIVE
    result = {
        "positives_kept": round(float((face[kinds == POSITIVE] > threshold).float().mean()), 4),
        "negatives_passed": round(float((face[kinds == NEGATIVE] > threshold).float().mean()), 4),
        "box_mse": round(float(((boxes[labelled] - offsets[labelled]) ** 2).mean()), 5),
    }
    if landmarks is not None:
        drift = (landmarks[labelled] - stock_landmarks[labelled]).abs().mean()
        result["landmark_drift"] = round(float(drift), 5)  # mean |tuned - stock|, fractions of the box
    return result


def fine_tune(name: str, train: dict, validation: dict, config: DetectorTrainConfig) -> tuple[dict, dict]:
    """Fine-tunes one net from the wheel's weights; returns its state dict and validation numbers."""
    torch.manual_seed(config.seed)
    stock, net = stock_net(name), stock_net(name)
    x = torch.from_numpy(train[f"patches_{name}"]).float()
    kinds, offsets = torch.from_numpy(train["kinds"]), torch.from_numpy(train["offsets"])
    stock_boxes, stock_landmarks, _ = predict(stock, x)
    if config.box_targets == "stock":  # the boxes stay where the classifier's framing was measured
        offsets = stock_boxes
    val_landmarks = predict(stock, torch.from_numpy(validation[f"patches_{name}"]).float())[1]
    threshold = SHIPPED_RULE.thresholds[1 if name == "rnet" else 2]
    before = scores(stock, validation, name, threshold, val_landmarks)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    weights = {"face": 1.0, "box": config.box_weight, "landmarks": config.landmark_weight}
    net.train()
    for epoch in range(config.epochs[name]):
        order = torch.randperm(len(x), generator=generator)
        totals: dict[str, float] = {}
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            lm = None if stock_landmarks is None else stock_landmarks[batch]
            terms = loss_terms(net, x[batch], kinds[batch], offsets[batch], lm)
            loss = sum(weights[k] * v for k, v in terms.items())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) * len(batch) / len(x)
        print(name, "epoch", epoch, {k: round(v, 5) for k, v in totals.items()}, flush=True)
    net.eval()
    after = scores(net, validation, name, threshold, val_landmarks)
    print(name, "validation stock", before, "fine-tuned", after, flush=True)
    return net.state_dict(), {"threshold": threshold, "stock": before, "fine_tuned": after}


@dataclass(frozen=True)
class DetectorTrainConfig:
    data: str = "../shared/data"
    faces: str = field(default="build/faces", metadata={"help": "masklens faces output (index.json and crops)"})
    framing: str = "results/framing.json"
    models: str = field(default="models/onnx", metadata={"help": "the stock ONNX nets (P-Net's hard negatives)"})
    out: str = "models/mtcnn-masked.pt"
    nets: tuple[str, ...] = field(default=("rnet", "onet"), metadata={"help": "the nets to fine-tune"})
    seed: int = 0
    faces_per_source: int = field(default=150, metadata={"help": "at most this many build/faces crops per source"})
    per_face: int = field(default=1, metadata={"help": "positives per face; as many part faces, 3x negatives"})
    hard_negatives: int = field(default=2, metadata={"help": "stock P-Net proposals away from the face, per face"})
    synth_share: float = field(default=0.7, metadata={"help": "share of bare build/faces crops given a mask"})
    texture_negatives: int = field(
        default=150, metadata={"help": "random squares, and as many stock cascade candidates, per texture image"}
    )
    validation_every: int = 10
    rnet_epochs: int = 4
    onet_epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-4
    box_targets: str = field(
        default="stock",
        metadata={"help": "stock: distil the stock net's box offsets (the crop framing stays); labelled: the boxes'"},
    )
    box_weight: float = field(default=50.0, metadata={"help": "weight of the box offsets' loss"})
    landmark_weight: float = field(default=50.0, metadata={"help": "weight of O-Net's landmark distillation"})
    threads: int = field(default=1, metadata={"help": "torch threads (1: the same result on every machine)"})

    @property
    def epochs(self) -> dict[str, int]:
        return {"rnet": self.rnet_epochs, "onet": self.onet_epochs}


def main(argv: list[str] | None = None) -> None:
    config = parse_config(DetectorTrainConfig, argv, description=__doc__.splitlines()[0])
    if config.box_targets not in ("stock", "labelled"):
        raise SystemExit(f"--box-targets must be stock or labelled, not {config.box_targets!r}")
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    train, validation, sources = build_samples(config)
    counts = {kind: int((train["kinds"] == k).sum()) for kind, k in (("positive", 1), ("part", -1), ("negative", 0))}
    print("faces", sources, "training samples", counts, flush=True)
    state_dicts, results = {}, {}
    for name in config.nets:
        state_dicts[name], results[name] = fine_tune(name, train, validation, config)
    header = {
        "format": FORMAT,
        "stock_weights": STOCK_WEIGHTS,
        "trained_on": {"faces_per_source": sources, "training_samples": counts},
        "config": asdict(config),
        "validation": results,
    }
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"header": header, "nets": state_dicts}, out)
    out.with_suffix(".json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
