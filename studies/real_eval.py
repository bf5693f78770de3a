"""End-to-end evaluation on real photos, through the predictor exactly as the site runs it.

    masklens eval-real --models models/onnx --data ../shared/data --out results/real-end-to-end.json

Every photo goes through ``Predictor.predict_photo``: find faces (the manifest's rule), crop as
trained, classify. The largest face found is the photo's answer; photos where no face is found are
counted apart (``not_found``) and never scored as right. Sets (``SETS``):

- ``real-photos`` (``real-photos/test``): ``with_mask`` is right when the answer is covered or
  incorrect, ``without_mask`` when it is uncovered; per folder, ``accuracy_of_found`` is its recall over
  the faces found and ``classes`` its confusion row (the answers over the faces found, per class);
  ``mask_accuracy`` over the photos with a face, ``mask_accuracy_all`` counting a photo without a face as
  wrong.
- ``real-masks`` (``real-masks/test/<kind>``): per kind, the share of faces found called covered or
  incorrect (``masked_rate``) and the answers over the faces found, per class (``classes``).
- ``real-wear``: see ``studies.real_wear``.
- ``real-video-frames`` (64 px grayscale face crops, three classes; at most ``per_class`` frames of
  each class, evenly spaced): balanced 3-class accuracy, recall per class and confusion (rows: true
  class, columns: answer, both in the manifest's class order), through the face finder and, as these
  frames are already face crops, also in whole-image mode (no detector), and through the face finder and
  the webcam mode's graph (``detected_live``: the int8 graph on the CPU).

A ``<rate>_interval`` key is the 95% Wilson interval of ``<rate>`` (``studies.real_wear.wilson_interval``);
``recall_interval`` holds one per class.

Deterministic: the same models and data give byte-identical JSON.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from masklens.cli import parse_config
from masklens.files import write_json
from masklens.predict import Predictor

from .answers import found_summary, list_images, rounded, run_folder
from .real_wear import evaluate_real_wear, wilson_interval


@dataclass(frozen=True)
class RealEvalConfig:
    models: str = field(default="models/onnx", metadata={"help": "folder with manifest.json"})
    data: str = field(default="../shared/data", metadata={"help": "root holding real-photos, real-masks, ..."})
    out: str = field(default="results/real-end-to-end.json")
    per_class: int = field(default=400, metadata={"help": "video frames per class (evenly spaced)"})
    threads: int = 0


def hits_summary(answers: list[dict], hits: int, hits_key: str, rate_key: str, classes: list[str]) -> dict:
    """Faces found, ``hits`` of them right (as ``hits_key``, their share of the found as ``rate_key``, with
    its interval) and the answers over the faces found, per class."""
    summary = found_summary(answers)
    summary[hits_key] = hits
    summary[rate_key] = rounded(hits / max(summary["found"], 1))
    summary[f"{rate_key}_interval"] = wilson_interval(hits, summary["found"])
    summary["found_rate_interval"] = wilson_interval(summary["found"], summary["photos"])
    summary["classes"] = {c: sum(a["class"] == c for a in answers) for c in classes}
    return summary


def mask_folder(answers: list[dict], has_mask: bool, classes: list[str]) -> dict:
    """One real-photos folder: faces found, right answers among them and the answers per class."""
    right = sum(a["class"] is not None and (a["class"] != "uncovered") == has_mask for a in answers)
    return hits_summary(answers, right, "right", "accuracy_of_found", classes)


def mask_photos(predictor: Predictor, root: Path) -> dict:
    """real-photos/test: mask vs no mask."""
    result = {
        folder: mask_folder(run_folder(predictor, list_images(root / folder), folder), has_mask, predictor.classes)
        for folder, has_mask in (("with_mask", True), ("without_mask", False))
    }
    right, found, photos = (sum(summary[key] for summary in result.values()) for key in ("right", "found", "photos"))
    result["mask_accuracy"] = rounded(right / max(found, 1))
    result["mask_accuracy_interval"] = wilson_interval(right, found)
    result["mask_accuracy_all"] = rounded(right / max(photos, 1))
    result["found_rate"] = rounded(found / max(photos, 1))
    return result


def mask_kind(answers: list[dict], classes: list[str]) -> dict:
    """One real-masks kind: faces found, the share of them called covered or incorrect, answers per class."""
    masked = sum(a["class"] in ("covered", "incorrect") for a in answers)
    return hits_summary(answers, masked, "masked", "masked_rate", classes)


def mask_kinds(predictor: Predictor, root: Path) -> dict:
    """real-masks/test/<kind>: share of found faces called covered or incorrect."""
    return {
        kind: mask_kind(run_folder(predictor, list_images(root / kind), kind), predictor.classes)
        for kind in sorted(p.name for p in root.iterdir() if p.is_dir())
    }


def confusion_report(classes: list[str], confusion: np.ndarray) -> dict:
    """Balanced accuracy, recall per class (with its interval) and the confusion itself (rows: true class)."""
    found, right = confusion.sum(1), confusion.diagonal()
    recalls = right / np.maximum(found, 1)
    return {
        "balanced_accuracy": rounded(recalls.mean()),
        "recall": {c: rounded(r) for c, r in zip(classes, recalls)},
        "recall_interval": {c: wilson_interval(int(h), int(n)) for c, h, n in zip(classes, right, found)},
        "confusion": confusion.tolist(),
    }


def three_class(predictor: Predictor, root: Path, per_class: int, whole_image: bool, live: bool = False) -> dict:
    """``confusion_report`` over the frames with a face, and the frames found per class; ``live``:
    classified by the webcam mode's graph."""
    classes = predictor.classes
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    per_class_found = {}
    for row, name in enumerate(classes):
        answers = run_folder(
            predictor,
            list_images(root / name, per_class),
            f"{name} (whole image)" if whole_image else f"{name} (live)" if live else name,
            whole_image,
            live,
        )
        per_class_found[name] = found_summary(answers)
        for a in answers:
            if a["class"] is not None:
                confusion[row, classes.index(a["class"])] += 1
    return {**confusion_report(classes, confusion), "found": per_class_found}


def evaluate_real(config: RealEvalConfig) -> dict:
    return evaluate_predictor(Predictor(config.models, config.threads), config)


def evaluate_predictor(predictor: Predictor, config: RealEvalConfig) -> dict:
    """``evaluate_real`` with this predictor, whose face finder (``rule``, ``detector``) may not be the manifest's."""
    data = Path(config.data)
    frames = data / "real-video-frames"
    rule = predictor.rule
    return {
        "model_version": predictor.manifest["model_version"],
        "face_detector": {
            "thresholds": list(rule.thresholds),
            "padding": rule.padding,
            "fallback_threshold": rule.fallback_threshold,
            "min_face_size": rule.min_face_size,
            "factor": rule.factor,
            "second_look": None if rule.second_look is None else list(rule.second_look),
        },
        "config": {k: v for k, v in asdict(config).items() if k in ("data", "per_class")},
        "real-photos": mask_photos(predictor, data / "real-photos" / "test"),
        "real-masks": mask_kinds(predictor, data / "real-masks" / "test"),
        "real-video-frames": {
            "detected": three_class(predictor, frames, config.per_class, whole_image=False),
            "whole_image": three_class(predictor, frames, config.per_class, whole_image=True),
            "detected_live": three_class(predictor, frames, config.per_class, whole_image=False, live=True),
        },
        "real-wear": evaluate_real_wear(predictor, data),
    }


def main(argv: list[str] | None = None) -> None:
    config = parse_config(RealEvalConfig, argv, description=__doc__.splitlines()[0])
    result = evaluate_real(config)
    write_json(config.out, result)
    photos, frames = result["real-photos"], result["real-video-frames"]
    kinds = ", ".join(f"{kind} {summary['masked_rate']:.3f}" for kind, summary in result["real-masks"].items())
    print(
        f"real-photos: mask accuracy {photos['mask_accuracy']:.4f} of found ({photos['found_rate']:.4f} found); "
        f"real-masks masked rate {kinds}; "
        f"video frames balanced {frames['detected']['balanced_accuracy']:.4f} (whole image "
        f"{frames['whole_image']['balanced_accuracy']:.4f})",
        file=sys.stderr,
    )
