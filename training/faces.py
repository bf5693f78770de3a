"""Face crops of real photos, framed the way the site and the predictor frame them.

    masklens faces --data ../shared/data --models models/onnx --out build/faces

Runs the shipped face finder (``masklens.mtcnn.find_faces`` with the rule ``SHIPPED_RULE``) on the
training photos of each source in ``SOURCES``, keeps the largest face of each photo, cuts it out
with the framing of ``results/framing.json`` (``masklens.framing.crop_face``) at ``crop_size`` pixels
and writes it as PNG, with its five landmarks in crop pixels. ``index.json`` lists the crops:
``{"file", "source", "label", "landmarks", "score"}``; ``label`` is a class name, or ``masked`` for
a weak label (covered or incorrect, unknown which); sources marked ``synth_source`` are unmasked
faces onto which ``training.synth`` fits masks. Photos without a face are listed under ``no_face``.
Only train folders are read: never a validation, holdout or test photo.
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from masklens.cli import parse_config
from masklens.face_finder import SHIPPED_RULE, DetectionRule
from masklens.files import IMAGE_SUFFIXES
from masklens.framing import Framing, crop_box_for_face, crop_face, face_size
from masklens.predict import session_options
from masklens.preprocess import load_rgb

from .data import MASKED


@dataclass(frozen=True)
class FaceSource:
    folder: str  # relative to the data root
    label: str  # a class name or MASKED
    synth_source: bool = False  # unmasked faces to fit masks onto
    # Several faces of one photo share its name before "_<n>" (real-wear): a held-out part is split by photo.
    faces_per_photo: bool = False


def photo_of(path: Path, source: FaceSource) -> str:
    """The photo a face comes from: faces of one photo are held out together (``training.datasets``)."""
    return path.stem.rsplit("_", 1)[0] if source.faces_per_photo else path.stem


SOURCES: dict[str, FaceSource] = {
    "mfn-uncovered": FaceSource("maskedface-net/train/uncovered", "uncovered", synth_source=True),
    "real-without-mask": FaceSource("real-photos/train/without_mask", "uncovered", synth_source=True),
    "real-with-mask": FaceSource("real-photos/train/with_mask", MASKED),
    "real-masks-cloth": FaceSource("real-masks/train/cloth", MASKED),
    "real-masks-n95": FaceSource("real-masks/train/n95", MASKED),
    "real-masks-n95-valve": FaceSource("real-masks/train/n95-valve", MASKED),
    "real-masks-surgical": FaceSource("real-masks/train/surgical", MASKED),
    # Real faces labelled per face, real incorrect wear among them (crops with 40% margin, as an upload).
    "real-wear-covered": FaceSource("real-wear/train/covered", "covered", faces_per_photo=True),
    "real-wear-incorrect": FaceSource("real-wear/train/incorrect", "incorrect", faces_per_photo=True),
    "real-wear-uncovered": FaceSource(
        "real-wear/train/uncovered", "uncovered", synth_source=True, faces_per_photo=True
    ),
}


def largest_face_crop(rgb: np.ndarray, faces, framing: Framing, size: int):
    """(crop uint8 [size, size, 3], landmarks [5, 2] in crop pixels, score) of the largest face."""
    face = max(faces, key=lambda f: face_size(f.box))
    x1, y1, x2, _ = crop_box_for_face(face.box, framing)
    side = max(1, round(x2 - x1))
    scale = size / side
    landmarks = (np.asarray(face.landmarks, np.float64) - [round(x1), round(y1)]) * scale
    return crop_face(rgb, face.box, framing, size), landmarks, float(face.score)


def prepare_source(
    data: Path,
    models: Path,
    out: Path,
    framing: Framing,
    rule: DetectionRule,
    size: int,
    name: str,
    source: FaceSource,
    threads: int = 1,
) -> tuple[list[dict], list[str]]:
    """Crops of one source: (index entries, photos without a face)."""
    detector = rule.detector(models, session_options(threads))
    folder = data / source.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"missing source folder {folder}")
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    entries, no_face = [], []
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in files:
        try:
            rgb = np.asarray(load_rgb(path))
        except OSError:
            no_face.append(str(path))
            continue
        faces = rule.find(detector, rgb)
        if not faces:
            no_face.append(str(path))
            continue
        crop, landmarks, score = largest_face_crop(rgb, faces, framing, size)
        file = target / f"{path.stem}.png"
        Image.fromarray(crop).save(file)
        entries.append(
            {
                "file": str(file.relative_to(out)),
                "source": name,
                "photo": photo_of(path, source),
                "label": source.label,
                "synth_source": source.synth_source,
                "landmarks": np.round(landmarks, 2).tolist(),
                "score": round(score, 4),
            }
        )
    print(f"{name}: {len(entries)} of {len(files)} photos with a face", flush=True)
    return entries, no_face


def prepare(
    data: Path,
    models: Path,
    out: Path,
    framing: Framing,
    rule: DetectionRule,
    size: int,
    sources: dict[str, FaceSource],
    jobs: int = 1,
) -> dict:
    """Every source's crops, ``jobs`` sources at a time (one process each); the index in source order."""
    tasks = [(data, models, out, framing, rule, size, name, source) for name, source in sources.items()]
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            parts = pool.starmap(prepare_source, tasks)
    else:
        parts = [prepare_source(*task) for task in tasks]
    return {
        "faces": [e for entries, _ in parts for e in entries],
        "no_face": [p for _, missed in parts for p in missed],
        "crop_size": size,
        "rule": {
            "thresholds": list(rule.thresholds),
            "padding": rule.padding,
            "fallback_threshold": rule.fallback_threshold,
        },
        "sources": {name: source.folder for name, source in sources.items()},
    }


@dataclass(frozen=True)
class FacesConfig:
    data: str = "../shared/data"
    models: str = field(default="models/onnx", metadata={"help": "folder with pnet/rnet/onet.onnx"})
    framing: str = "results/framing.json"
    out: str = "build/faces"
    size: int = field(default=192, metadata={"help": "crop side in pixels"})
    sources: tuple[str, ...] = field(default=tuple(SOURCES), metadata={"help": "names of SOURCES"})
    jobs: int = field(default=2, metadata={"help": "sources processed at once, one process each"})


def main(argv: list[str] | None = None) -> None:
    config = parse_config(FacesConfig, argv, description=__doc__.splitlines()[0])
    framing = Framing(**json.loads(Path(config.framing).read_text())["all"]["framing"])
    sources = {name: SOURCES[name] for name in config.sources}
    out = Path(config.out)
    payload = prepare(
        Path(config.data), Path(config.models), out, framing, SHIPPED_RULE, config.size, sources, config.jobs
    )
    (out / "index.json").write_text(json.dumps(payload, indent=1) + "\n")
