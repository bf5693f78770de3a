"""Fits the "can't tell" rule on real faces held out of training and measures it: ``masklens calibrate``.

    masklens calibrate --models models/onnx --faces-index build/faces/index.json

1. The held-out faces: the real photos ``training.datasets.is_held_out`` kept out of the training run
   (``held_out_percent``, the run's ``real_validation_percent``, split by photo), those with a class label
   (real-wear's three classes, real photos without a mask); weak "masked" labels cannot score a verdict.
2. Temperature scaling (Guo et al., 2017): the temperature that minimises their negative log-likelihood.
3. The smallest top probability to answer: the one that gives the best balanced accuracy on the answered
   held-out faces while at most ``max_abstain`` of them get no verdict.
4. Written into the manifest's ``abstention`` (with ``min_face_size``), then measured on ``real-wear/test``
   end to end (crops through the face finder, as uploads): expected calibration error before and after,
   the share answered, the balanced accuracy of the answered faces, and accuracy against coverage.
   ``results/calibration.json`` and a reliability diagram in ``results/figures/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from masklens.abstention import AbstentionRule
from masklens.cli import parse_config
from masklens.files import write_json
from masklens.framing import face_size
from masklens.manifest import MANIFEST_NAME, validate
from masklens.predict import PhotoError, Predictor, normalize_crops, open_photo
from masklens.preprocess import load_rgb

from .answers import list_images, rounded

BINS = 10
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 701))


@dataclass(frozen=True)
class CalibrationConfig:
    models: str = field(default="models/onnx", metadata={"help": "folder with manifest.json, rewritten"})
    faces_index: str = field(
        default="", metadata={"help": "masklens faces' index; default: the one the shipped checkpoint trained with"}
    )
    held_out_percent: int = field(
        default=0, metadata={"help": "percent of its photos held out; default: the run's real_validation_percent"}
    )
    data: str = "../shared/data"
    max_abstain: float = field(default=0.08, metadata={"help": "largest share of held-out faces left unanswered"})
    min_face_size: float = field(
        default=20.0, metadata={"help": "faces smaller than this (mean box side, photo pixels) get no verdict"}
    )
    out: str = "results/calibration.json"
    figure: str = "results/figures/reliability.png"
    threads: int = 0


def held_out_faces(index_path: Path, percent: int, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    from training.datasets import is_held_out

    index = json.loads(index_path.read_text())
    kept = [e for e in index["faces"] if e["label"] in classes and is_held_out(e, percent)]
    if not kept:
        raise SystemExit(f"no labelled held-out faces in {index_path} at {percent}%")
    return [index_path.parent / e["file"] for e in kept], np.array([classes.index(e["label"]) for e in kept])


def logits_of(predictor: Predictor, paths: list[Path], batch: int = 64) -> np.ndarray:
    """The classifier's logits for face crops, each resized to the network's input as a whole image."""
    size = predictor.preprocessing["size"]
    chunks = []
    for start in range(0, len(paths), batch):
        crops = np.stack(
            [
                np.asarray(load_rgb(p).resize((size, size), Image.Resampling.BILINEAR))
                for p in paths[start : start + batch]
            ]
        )
        chunks.append(predictor.classify(normalize_crops(crops, predictor.preprocessing))["logits"])
    return np.concatenate(chunks)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of least negative log-likelihood on a fine grid (the loss is convex in 1/T)."""
    losses = [
        -np.log(AbstentionRule(t).probabilities(logits)[np.arange(len(labels)), labels] + 1e-12).mean()
        for t in TEMPERATURES
    ]
    return float(TEMPERATURES[int(np.argmin(losses))])


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray, classes: int) -> float:
    recalls = [float((predicted[labels == k] == k).mean()) for k in range(classes) if (labels == k).any()]
    return float(np.mean(recalls)) if recalls else 0.0


def choose_min_probability(probabilities: np.ndarray, labels: np.ndarray, max_abstain: float) -> float:
    """The top-probability threshold with the best balanced accuracy on the answered faces, at most
    ``max_abstain`` of them unanswered (the lowest such threshold on a tie)."""
    top = probabilities.max(1)
    predicted = probabilities.argmax(1)
    best, chosen = -1.0, 0.0
    for threshold in np.unique(np.concatenate([[0.0], top])):
        answered = top >= threshold
        if 1 - answered.mean() > max_abstain:
            break
        score = balanced_accuracy(predicted[answered], labels[answered], probabilities.shape[1])
        if score > best + 1e-12:
            best, chosen = score, float(threshold)
    return chosen


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, list[dict]]:
    """ECE over BINS equal-width bins of the top probability, and the bins (reliability diagram)."""
    top, predicted = probabilities.max(1), probabilities.argmax(1)
    bins, error = [], 0.0
    for low in np.linspace(0, 1, BINS, endpoint=False):
        inside = (top > low) & (top <= low + 1 / BINS)
        if inside.any():
            accuracy, confidence = float((predicted[inside] == labels[inside]).mean()), float(top[inside].mean())
            error += inside.mean() * abs(accuracy - confidence)
            bins.append(
                {
                    "low": rounded(low),
                    "faces": int(inside.sum()),
                    "accuracy": rounded(accuracy),
                    "confidence": rounded(confidence),
                }
            )
    return rounded(error), bins


def real_wear_test_faces(predictor: Predictor, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """real-wear/test crops through the face finder as uploads: the largest face's log-probabilities (its
    logits up to a constant, with the predictor's rule set to none), its size and its label. Crops where no
    face is found are left out (the real-wear report counts them)."""
    limits = predictor.manifest["input_limits"]
    logits, sizes, labels = [], [], []
    for k, name in enumerate(predictor.classes):
        for path in list_images(root / name):
            try:
                rgb = open_photo(path, limits["max_side"], limits["max_pixels"])
            except PhotoError:
                continue
            faces = predictor.predict_photo(rgb)
            if faces:
                largest = max(faces, key=lambda f: face_size(f.box))
                logits.append(np.log(np.maximum(largest.probabilities, 1e-30)))
                sizes.append(face_size(largest.box))
                labels.append(k)
    return np.array(logits, np.float32), np.array(sizes), np.array(labels)


def measure(rule: AbstentionRule, logits: np.ndarray, sizes: np.ndarray, labels: np.ndarray) -> dict:
    raw, calibrated = AbstentionRule().probabilities(logits), rule.probabilities(logits)
    reasons = [rule.reason(p, s) for p, s in zip(calibrated, sizes)]
    answered = np.array([r is None for r in reasons])
    predicted = calibrated.argmax(1)
    coverage = []
    for share in (1.0, 0.95, 0.9, 0.85, 0.8, 0.7):
        threshold = np.quantile(calibrated.max(1), 1 - share)
        kept = calibrated.max(1) >= threshold
        coverage.append(
            {
                "answered": rounded(kept.mean()),
                "balanced_accuracy": rounded(balanced_accuracy(predicted[kept], labels[kept], 3)),
            }
        )
    ece_before, _ = expected_calibration_error(raw, labels)
    ece_after, bins = expected_calibration_error(calibrated, labels)
    return {
        "faces": len(labels),
        "ece_before": ece_before,
        "ece_after": ece_after,
        "reliability": bins,
        "answered": rounded(answered.mean()),
        "too_small": int(sum(r == "too_small" for r in reasons)),
        "unsure": int(sum(r == "unsure" for r in reasons)),
        "balanced_accuracy_all": rounded(balanced_accuracy(predicted, labels, 3)),
        "balanced_accuracy_answered": rounded(balanced_accuracy(predicted[answered], labels[answered], 3)),
        "coverage": coverage,
    }


def reliability_figure(path: Path, before: list[dict], after: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True)
    for ax, bins, title in ((axes[0], before, "as trained"), (axes[1], after, "temperature-scaled")):
        ax.bar([b["low"] + 0.05 for b in bins], [b["accuracy"] for b in bins], width=0.09, color="#3b6fb6")
        ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1)
        ax.set(title=title, xlabel="top probability", xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("share right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def calibrate(config: CalibrationConfig) -> dict:
    predictor = Predictor(config.models, config.threads)
    predictor.abstention = AbstentionRule()  # the graph's own probabilities: the rule is what this fits
    # The faces the run held out, cut with the framing it trained for.
    trained = predictor.manifest["checkpoint"]["config"]
    faces_index = config.faces_index or trained["faces_index"]
    held_out_percent = config.held_out_percent or trained["real_validation_percent"]
    if not faces_index or not held_out_percent:
        raise SystemExit("the checkpoint held no real faces out: pass --faces-index and --held-out-percent")
    paths, labels = held_out_faces(Path(faces_index), held_out_percent, predictor.classes)
    logits = logits_of(predictor, paths)
    temperature = fit_temperature(logits, labels)
    threshold = choose_min_probability(AbstentionRule(temperature).probabilities(logits), labels, config.max_abstain)
    rule = AbstentionRule(rounded(temperature), rounded(threshold), config.min_face_size)
    test_logits, sizes, test_labels = real_wear_test_faces(predictor, Path(config.data) / "real-wear" / "test")
    if not len(test_labels):
        raise SystemExit(f"no face found in {Path(config.data) / 'real-wear' / 'test'}: nothing to measure the rule on")
    held_out = measure(rule, logits, np.full(len(labels), np.inf), labels)
    tested = measure(rule, test_logits, sizes, test_labels)
    result = {
        "model_version": predictor.manifest["model_version"],
        "config": {"held_out_percent": held_out_percent, "max_abstain": config.max_abstain},
        "rule": asdict(rule),
        "held_out": {"faces_per_class": np.bincount(labels, minlength=3).tolist(), **held_out},
        "real-wear/test": tested,
    }
    manifest_path = Path(config.models) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["abstention"] = asdict(rule)
    validate(manifest)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    write_json(config.out, result)
    _, before = expected_calibration_error(AbstentionRule().probabilities(test_logits), test_labels)
    reliability_figure(Path(config.figure), before, tested["reliability"])
    return result


def main(argv: list[str] | None = None) -> None:
    config = parse_config(CalibrationConfig, argv, description=__doc__.splitlines()[0])
    result = calibrate(config)
    tested = result["real-wear/test"]
    print(
        f"temperature {result['rule']['temperature']}, min probability {result['rule']['min_probability']}: "
        f"real-wear/test ECE {tested['ece_before']} -> {tested['ece_after']}, answered {tested['answered']}, "
        f"balanced {tested['balanced_accuracy_all']} -> {tested['balanced_accuracy_answered']} on the answered"
    )
