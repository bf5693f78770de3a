"""Crop a detected face the way the classifier's training images are framed ("crop as trained").

The classifier was trained on MaskedFace-Net / FFHQ aligned crops: square images in which the face
sits at a fixed place and size. ``python -m export.framing --data ../shared/data/maskedface-net
--out build/framing.json`` runs the shipped face finder (``export/mtcnn.py``'s ``SHIPPED_RULE``;
``--models`` holds the ONNX files of ``export/face_detector.py``) on training images of each class and
writes, as JSON with sorted keys:

- ``classes.<class>``: ``images``, ``detected`` (images with at least one face), ``detection_rate``,
  ``multiple_faces`` (images with more than one), and over the detected images the ``mean``, ``std``
  and ``median`` of ``cx``, ``cy``, ``w``, ``h``: the box centre and size as fractions of the image
  width (cx, w) and height (cy, h), and ``framing``: the rule below derived from that class alone.
- ``all``: the same over all measured images; ``framing``: the rule to use, derived from them.
- ``settings``: the data, split, sample and detector settings measured with.

The rule (``Framing``) is in units of the face size ``s = (box width + box height) / 2``: the crop
is a square of side ``side * s`` centred ``(center_dx * s, center_dy * s)`` from the box centre. It
is the median over the measured images of where the whole training image lies relative to the
largest detected face. ``crop_box_for_face`` applies it to a box; ``crop_face`` cuts and resizes the
crop. Where the crop reaches past the photo, the photo's edge pixels are repeated: FFHQ filled such
areas with blurred reflections, which repeated edges resemble more than black does.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from training.data import CLASSES
from training.preprocess import load_rgb

from .mtcnn import SHIPPED_RULE, DetectionRule, FaceDetector

BOX_KEYS = ("cx", "cy", "w", "h")


@dataclass(frozen=True)
class Framing:
    """Square crop relative to a face box, in face sizes ((box width + box height) / 2)."""
    center_dx: float  # crop centre minus box centre, x
    center_dy: float  # crop centre minus box centre, y (positive: the crop reaches further down)
    side: float  # crop side


@dataclass(frozen=True)
class FaceMeasurement:
    """The largest detected face of one square training image, in that image's pixels."""
    box: tuple[float, float, float, float]
    image_size: int
    faces: int  # how many faces the detector found


def face_size(box) -> float:
    x1, y1, x2, y2 = box
    return ((x2 - x1) + (y2 - y1)) / 2


def crop_box_for_face(box, framing: Framing) -> tuple[float, float, float, float]:
    """Face box (x1, y1, x2, y2) -> the square crop (x1, y1, x2, y2); may extend past the image."""
    x1, y1, x2, y2 = box
    size = face_size(box)
    cx = (x1 + x2) / 2 + framing.center_dx * size
    cy = (y1 + y2) / 2 + framing.center_dy * size
    half = framing.side * size / 2
    return cx - half, cy - half, cx + half, cy + half


def crop_face(rgb: np.ndarray, box, framing: Framing, out_size: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] photo and face box -> the framed crop, uint8 [out_size, out_size, 3].

    The crop box is rounded to whole pixels, cut out with the photo's edge pixels repeated beyond
    its borders (by clamping the indices), and resized with Pillow's bilinear filter, the filter
    the classifier's preprocessing uses.
    """
    x1, y1, x2, y2 = crop_box_for_face(box, framing)
    side = max(1, round(x2 - x1))
    left, top = round(x1), round(y1)
    rows = np.clip(np.arange(top, top + side), 0, rgb.shape[0] - 1)
    cols = np.clip(np.arange(left, left + side), 0, rgb.shape[1] - 1)
    crop = Image.fromarray(np.ascontiguousarray(rgb[rows][:, cols]))
    return np.asarray(crop.resize((out_size, out_size), Image.Resampling.BILINEAR))


def measure_image(detector: FaceDetector, rgb: np.ndarray,
                  rule: DetectionRule = SHIPPED_RULE) -> FaceMeasurement | None:
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
    return Framing(center_dx=float(np.median(dx)), center_dy=float(np.median(dy)),
                   side=float(np.median(side)))


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure where MTCNN boxes faces in the training images.")
    parser.add_argument("--data", default="../shared/data/maskedface-net", help="MaskedFace-Net-style root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--classes", default=",".join(CLASSES), help="comma-separated class folders")
    parser.add_argument("--per-class", type=int, default=200, help="images measured per class")
    parser.add_argument("--models", default="build/models", help="folder with pnet/rnet/onet.onnx")
    parser.add_argument("--out", default="build/framing.json")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads; 0: its default")
    args = parser.parse_args(argv)

    models = Path(args.models)
    if not (models / "pnet.onnx").exists():
        parser.error(f"no ONNX detector in {models}: run python -m export.face_detector --out-dir {models}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    detector = SHIPPED_RULE.detector(models, options)
    classes = [c for c in args.classes.split(",") if c]
    payload = measure(detector, Path(args.data), args.split, classes, args.per_class)
    payload["settings"] = {
        "data": str(args.data), "split": args.split, "per_class": args.per_class,
        "sample": "evenly spaced over the sorted file names",
        "face": "largest detected face; size = (box width + box height) / 2",
        "detector": {"min_face_size": detector.min_face_size, "thresholds": list(detector.thresholds),
                     "factor": detector.factor, "padding": SHIPPED_RULE.padding,
                     "fallback_threshold": SHIPPED_RULE.fallback_threshold,
                     "retry_min_face_size": SHIPPED_RULE.retry_min_face_size},
        "padding": "edge pixels repeated",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(json.dumps(payload["all"], indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
