"""A photo's answer through the predictor as the site runs it: the class of its largest face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from masklens.files import IMAGE_SUFFIXES
from masklens.framing import face_size
from masklens.predict import PhotoError, Predictor, open_photo


def list_images(folder: Path, limit: int = 0, recursive: bool = False) -> list[Path]:
    """The folder's images in name order (``recursive``: and its subfolders'); ``limit`` picks that many,
    evenly spaced."""
    files = sorted(
        p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if limit and len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


def answer(predictor: Predictor, path: Path, whole_image: bool = False, live: bool = False) -> dict:
    """The photo's answer: class of its largest face, faces found, or the reason it failed."""
    limits = predictor.manifest["input_limits"]
    try:
        rgb = open_photo(path, limits["max_side"], limits["max_pixels"])
    except PhotoError as error:
        return {"faces": 0, "class": None, "error": str(error)}
    faces = predictor.predict_photo(rgb, whole_image, live)
    if not faces:
        return {"faces": 0, "class": None}
    largest = max(faces, key=lambda face: face_size(face.box))
    return {"faces": len(faces), "class": predictor.classes[int(largest.probabilities.argmax())]}


def run_folder(
    predictor: Predictor, files: list[Path], label: str, whole_image: bool = False, live: bool = False
) -> list[dict]:
    return [
        answer(predictor, path, whole_image, live)
        for path in tqdm(files, desc=label, leave=False, dynamic_ncols=True, mininterval=5.0)
    ]


def found_summary(answers: list[dict]) -> dict:
    found = sum(a["faces"] > 0 for a in answers)
    return {
        "photos": len(answers),
        "found": found,
        "found_rate": rounded(found / max(len(answers), 1)),
        "not_found": len(answers) - found,
        "several_faces": sum(a["faces"] > 1 for a in answers),
    }


def rounded(value: float) -> float:
    return round(float(value), 4)
