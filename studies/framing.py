"""Where the face finder boxes faces in the training images: the crop rule the site and the predictor use.

``masklens framing --data ../shared/data/maskedface-net --out results/framing.json`` runs the shipped face
finder (``masklens.mtcnn.SHIPPED_RULE``; ``--models`` holds the exported MTCNN nets) on training images of
each class and writes, as JSON with sorted keys:

- ``classes.<class>``: ``images``, ``detected`` (images with at least one face), ``detection_rate``,
  ``multiple_faces`` (images with more than one), and over the detected images the ``mean``, ``std``
  and ``median`` of ``cx``, ``cy``, ``w``, ``h``: the box centre and size as fractions of the image
  width (cx, w) and height (cy, h), and ``framing``: the rule derived from that class alone.
- ``all``: the same over all measured images; ``framing``: the rule to use, derived from them
  (``masklens.framing.Framing``: the median over the measured images of where the whole training image
  lies relative to the largest detected face).
- ``settings``: the data, split, sample and detector settings measured with.

With ``--side S`` the rule is grown downwards to a crop of side S (``masklens.framing.grown_downwards``:
same top edge, the neck shown); ``all.framing`` is then that rule and ``all.measured_framing`` the
measured one, which a model trained for it re-cuts MaskedFace-Net's images from (``training.datasets``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from masklens.cli import parse_config
from masklens.face_finder import SHIPPED_RULE, DetectionRule
from masklens.framing import Framing, face_size, grown_downwards
from masklens.labels import CLASSES
from masklens.mtcnn import FaceDetector
from masklens.preprocess import load_rgb

BOX_KEYS = ("cx", "cy", "w", "h")


@dataclass(frozen=True)
class FaceMeasurement:
    """The largest detected face of one square training image, in that image's pixels."""

    box: tuple[float, float, float, float]
    image_size: int
    faces: int  # how many faces the detector found


def measure_image(
    detector: FaceDetector, rgb: np.ndarray, rule: DetectionRule = SHIPPED_RULE
) -> FaceMeasurement | None:
    """Finds faces in a square training image with the shipped rule; None if there is none."""
    height, width = rgb.shape[:2]
    if height != width:
        raise ValueError(f"training images are square, got {width} x {height}")
    faces = rule.find(detector, rgb)
    if not faces:
        return None
    # FFHQ crops are centred on one person; a second, smaller face is a bystander.
    largest = max(faces, key=lambda face: face_size(face.box))
    return FaceMeasurement(box=tuple(float(v) for v in largest.box), image_size=width, faces=len(faces))


def framing_from_measurements(measurements: list[FaceMeasurement]) -> Framing:
    """The median placement of the whole training image relative to its face, in face sizes.

    The median, not the mean, because the detector sometimes boxes only part of a masked face.
    """
    if not measurements:
        raise ValueError("no measurements: the detector found no face")
    dx, dy, side = [], [], []
    for m in measurements:
        x1, y1, x2, y2 = m.box
        size = face_size(m.box)
        dx.append((m.image_size / 2 - (x1 + x2) / 2) / size)
        dy.append((m.image_size / 2 - (y1 + y2) / 2) / size)
        side.append(m.image_size / size)
    return Framing(center_dx=float(np.median(dx)), center_dy=float(np.median(dy)), side=float(np.median(side)))


def relative_boxes(measurements: list[FaceMeasurement]) -> np.ndarray:
    """[N, 4] box centre x, centre y, width, height as fractions of the image side."""
    boxes = np.array([m.box for m in measurements], dtype=np.float64).reshape(-1, 4)
    sizes = np.array([m.image_size for m in measurements], dtype=np.float64)[:, None]
    x1, y1, x2, y2 = boxes.T
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1) / sizes


def summarize(images: int, measurements: list[FaceMeasurement]) -> dict:
    """The statistics written for one class (or all): rates, box statistics and framing."""
    summary = {
        "images": images,
        "detected": len(measurements),
        "detection_rate": _round(len(measurements) / images if images else 0.0),
        "multiple_faces": sum(m.faces > 1 for m in measurements),
    }
    if measurements:
        rel = relative_boxes(measurements)
        for stat, values in (("mean", rel.mean(0)), ("std", rel.std(0)), ("median", np.median(rel, 0))):
            summary[stat] = {key: _round(v) for key, v in zip(BOX_KEYS, values)}
        framing = framing_from_measurements(measurements)
        summary["framing"] = {key: _round(v) for key, v in asdict(framing).items()}
    return summary


def sample_images(folder: Path, count: int) -> list[Path]:
    """count images spread evenly over the folder's sorted listing (deterministic)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) <= count:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


def measure(detector: FaceDetector, data_root: Path, split: str, classes, per_class: int) -> dict:
    """Measures per_class images of each class; returns the JSON payload."""
    payload = {"classes": {}}
    pooled, pooled_images = [], 0
    for name in classes:
        files = sample_images(data_root / split / name, per_class)
        found = [m for m in (measure_image(detector, np.asarray(load_rgb(f))) for f in files) if m]
        payload["classes"][name] = summarize(len(files), found)
        pooled += found
        pooled_images += len(files)
    payload["all"] = summarize(pooled_images, pooled)
    return payload


def _round(value: float) -> float:
    return round(float(value), 4)


@dataclass(frozen=True)
class FramingConfig:
    data: str = field(default="../shared/data/maskedface-net", metadata={"help": "MaskedFace-Net-style root"})
    split: str = "train"
    classes: tuple[str, ...] = field(default=CLASSES, metadata={"help": "class folders measured"})
    per_class: int = field(default=200, metadata={"help": "images measured per class"})
    models: str = field(default="models/onnx", metadata={"help": "folder with pnet/rnet/onet.onnx"})
    out: str = "results/framing.json"
    threads: int = field(default=0, metadata={"help": "onnxruntime threads; 0: its default"})
    side: float = field(
        default=0.0, metadata={"help": "0: the measured rule; S > 0: the rule grown downwards to a side of S"}
    )


def run(config: FramingConfig) -> dict:
    models = Path(config.models)
    if not (models / "pnet.onnx").exists():
        raise SystemExit(f"no ONNX detector in {models}: run masklens export first")
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    detector = SHIPPED_RULE.detector(models, options)
    payload = measure(detector, Path(config.data), config.split, config.classes, config.per_class)
    if config.side:
        measured = payload["all"]["framing"]
        grown = grown_downwards(Framing(**measured), config.side)
        payload["all"]["measured_framing"] = measured
        payload["all"]["framing"] = {key: _round(v) for key, v in asdict(grown).items()}
    payload["settings"] = {
        "data": str(config.data),
        "split": config.split,
        "per_class": config.per_class,
        "sample": "evenly spaced over the sorted file names",
        "face": "largest detected face; size = (box width + box height) / 2",
        "detector": {
            "min_face_size": detector.min_face_size,
            "thresholds": list(detector.thresholds),
            "factor": detector.factor,
            "padding": SHIPPED_RULE.padding,
            "fallback_threshold": SHIPPED_RULE.fallback_threshold,
            "retry_min_face_size": SHIPPED_RULE.retry_min_face_size,
        },
        "padding": "edge pixels repeated",
    }
    if config.side:
        payload["settings"]["grown_downwards_to_side"] = config.side
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return payload


def main(argv: list[str] | None = None) -> None:
    config = parse_config(FramingConfig, argv, description=__doc__.splitlines()[0])
    print(json.dumps(run(config)["all"], indent=2, sort_keys=True))
