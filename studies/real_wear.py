"""The real-wear set (real faces, real incorrect wear, labelled per face), end to end through the predictor.

- ``crops``: ``real-wear/test/<class>/`` face crops with 40% margin, run as uploads (the face finder, then
  the largest face's answer) and, as they are already face crops, as whole images (no detector).
- ``scenes``: ``real-wear/test-scenes/`` whole photos; each labelled face is matched to the detected face
  that overlaps it most (IoU >= ``MATCH_IOU``, each detection used once), so that found rates and answers
  are per labelled face.

Per class: recall with a 95% Wilson interval, the confusion matrix (rows: true class, columns: answer)
over the faces found, and the share of faces not found. ``balanced_accuracy`` is over found faces,
``balanced_accuracy_all`` counts a face not found as wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masklens.predict import Predictor
from masklens.tracking import match_boxes

from .answers import list_images, rounded, run_folder

MATCH_IOU = 0.3


def wilson_interval(hits: int, total: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion: sound at 0 or total hits, unlike the normal one."""
    if total == 0:
        return [0.0, 1.0]
    share = hits / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [rounded(max(0.0, centre - half)), rounded(min(1.0, centre + half))]


def class_report(classes: list[str], truths: list[str], answers: list[str | None]) -> dict:
    """Recall (with its interval), confusion over the answered faces, and the faces not found, per class."""
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    missed = dict.fromkeys(classes, 0)
    totals = dict.fromkeys(classes, 0)
    for truth, answer in zip(truths, answers):
        totals[truth] += 1
        if answer is None:
            missed[truth] += 1
        else:
            confusion[classes.index(truth), classes.index(answer)] += 1
    per_class = {}
    for row, name in enumerate(classes):
        found, right = int(confusion[row].sum()), int(confusion[row, row])
        per_class[name] = {
            "faces": totals[name],
            "found": found,
            "not_found_rate": rounded(missed[name] / max(totals[name], 1)),
            "recall": rounded(right / max(found, 1)),
            "recall_interval": wilson_interval(right, found),
            "recall_all": rounded(right / max(totals[name], 1)),
        }
    report = {
        "balanced_accuracy": rounded(np.mean([c["recall"] for c in per_class.values()])),
        "balanced_accuracy_all": rounded(np.mean([c["recall_all"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
    if {"covered", "incorrect"} <= set(classes):
        covered = classes.index("covered")
        report["covered_called_incorrect"] = rounded(
            confusion[covered, classes.index("incorrect")] / max(confusion[covered].sum(), 1)
        )
    return report


def wear_crops(predictor: Predictor, root: Path, whole_image: bool) -> dict:
    truths, answers = [], []
    for name in predictor.classes:
        label = f"real-wear {name}" + (" (whole image)" if whole_image else "")
        for result in run_folder(predictor, list_images(root / name), label, whole_image):
            truths.append(name)
            answers.append(result["class"])
    return class_report(predictor.classes, truths, answers)


def match_faces(labelled: list[list[float]], detected: list[list[float]]) -> list[int | None]:
    """For each labelled box, the index of its detected box (greedy by IoU, each used once: the webcam
    tracker's matching), or None."""
    matched: list[int | None] = [None] * len(labelled)
    for label, detection in match_boxes(labelled, detected, MATCH_IOU):
        matched[label] = detection
    return matched


def wear_scenes(predictor: Predictor, root: Path) -> dict:
    from masklens.predict import PhotoError, open_photo

    limits = predictor.manifest["input_limits"]
    truths, answers, extra = [], [], 0
    scenes = json.loads((root / "boxes.json").read_text())
    for scene in tqdm(scenes, desc="real-wear scenes", leave=False, dynamic_ncols=True, mininterval=5.0):
        labelled = [face["box"] for face in scene["faces"]]
        try:
            rgb = open_photo(root / scene["image"], limits["max_side"], limits["max_pixels"])
        except PhotoError:
            rgb = None
        faces = [] if rgb is None else predictor.predict_photo(rgb)
        # open_photo scales a photo down past max_side; labelled boxes are in the photo's own pixels.
        scale = 1.0 if rgb is None else rgb.shape[1] / _original_width(root / scene["image"])
        detected = [[v / scale for v in face.box] for face in faces]
        matched = match_faces(labelled, detected)
        extra += len(faces) - sum(m is not None for m in matched)
        for face, j in zip(scene["faces"], matched):
            truths.append(face["label"])
            answers.append(None if j is None else predictor.classes[int(faces[j].probabilities.argmax())])
    report = class_report(predictor.classes, truths, answers)
    report["photos"] = len(scenes)
    report["unlabelled_detections"] = extra
    return report


def _original_width(path: Path) -> int:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).size[0]


def evaluate_real_wear(predictor: Predictor, data: Path) -> dict:
    root = data / "real-wear"
    return {
        "crops": wear_crops(predictor, root / "test", whole_image=False),
        "crops_whole_image": wear_crops(predictor, root / "test", whole_image=True),
        "scenes": wear_scenes(predictor, root / "test-scenes"),
        "match_iou": MATCH_IOU,
    }
