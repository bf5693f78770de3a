r"""Evaluation command: metrics JSON + figures for a checkpoint on a split, a class folder or real photos.

    masklens eval --checkpoint models/real-wear-neck.pt --split holdout --out-dir results/real-wear-neck
    masklens eval --checkpoint models/real-wear-neck.pt --name real-video-frames \
        --folder ../shared/data/real-video-frames
    masklens eval --checkpoint models/real-wear-neck.pt --mask-folder ../shared/data/real-photos/test --name real-photos

The same checkpoint evaluated twice gives byte-identical metrics JSON (fp32, fixed order, rounded floats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from masklens.cli import parse_config
from masklens.files import sha256_of, write_json
from masklens.labels import CLASSES, INCORRECT, NO_REASON, REASONS

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import SPLITS, Sample, index_folder, index_mask_folder, index_split
from .datasets import FaceDataset, Reframing, collate_skipping_unreadable, reframing_of
from .metrics import confusion_matrix, expected_calibration_error, per_class_scores, reliability_bins
from .scoring import predict_batches

MASK_LABELS = ("with_mask", "without_mask")
UNCOVERED = CLASSES.index("uncovered")


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str = field(metadata={"help": "a masklens checkpoint (model.pt or last.pt)"})
    data_root: str = "../shared/data/maskedface-net"
    split: str = field(default="holdout", metadata={"help": "train, validation or holdout (under data_root)"})
    folder: str = field(default="", metadata={"help": "a folder of covered/incorrect/uncovered/ instead of a split"})
    mask_folder: str = field(default="", metadata={"help": "a folder of with_mask/without_mask/ (real photos)"})
    name: str = field(default="", metadata={"help": "metrics file stem (default: the split or folder name)"})
    out_dir: str = "results/default"
    batch_size: int = 64
    figures: bool = True
    mistakes: int = field(default=20, metadata={"help": "how many most confident mistakes to list"})
    mirror_average: bool = field(
        default=False, metadata={"help": "answer with the mean over each image and its mirror image (export)"}
    )


def _round(value, digits: int = 6):
    """Rounds floats recursively so tiny run-to-run float noise cannot change the JSON bytes."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


def predict_samples(
    model, samples: tuple[Sample, ...], batch_size: int, reframing: Reframing | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Class and reason probabilities for every sample, in order (fp32, eval mode)."""
    loader = DataLoader(
        FaceDataset(samples, model.preprocessing, "none", reframing=reframing),
        batch_size=batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=collate_skipping_unreadable,
    )
    probs, reason_probs = [], []
    for p, rp, _, _ in predict_batches(model, loader, torch.device("cpu")):
        probs.append(p.numpy().astype(np.float64))
        reason_probs.append(rp.numpy().astype(np.float64))
    return np.concatenate(probs), np.concatenate(reason_probs)


def confident_mistakes(
    names: list[str], true_names: list[str], probs: np.ndarray, wrong: np.ndarray, limit: int
) -> list[dict]:
    order = sorted(np.flatnonzero(wrong), key=lambda i: (-probs[i].max(), names[i]))[:limit]
    return [
        {
            "file": names[i],
            "true": true_names[i],
            "predicted": CLASSES[int(probs[i].argmax())],
            "confidence": float(probs[i].max()),
        }
        for i in order
    ]


def class_metrics(
    samples: tuple[Sample, ...],
    probs: np.ndarray,
    reason_probs: np.ndarray,
    names: list[str],
    reason_head_trained: bool,
    mistakes: int,
) -> dict:
    """Three-class metrics, with per-reason results for the incorrectly masked images."""
    labels = np.array([s.label for s in samples])
    reasons = np.array([s.reason for s in samples])
    predictions = probs.argmax(1)
    matrix = confusion_matrix(labels, predictions, len(CLASSES))
    per_reason = {}
    for r, reason in enumerate(REASONS):
        subset = reasons == r
        if not subset.any():
            continue
        entry = {"images": int(subset.sum()), "class_accuracy": float((predictions[subset] == INCORRECT).mean())}
        if reason_head_trained:
            entry["reason_accuracy"] = float((reason_probs[subset].argmax(1) == r).mean())
        per_reason[reason] = entry
    has_reason = reasons != NO_REASON
    reason_summary = None
    if reason_head_trained and has_reason.any():
        reason_predictions = reason_probs[has_reason].argmax(1)
        reason_summary = {
            "accuracy": float((reason_predictions == reasons[has_reason]).mean()),
            "confusion_matrix": confusion_matrix(reasons[has_reason], reason_predictions, len(REASONS)).tolist(),
        }
    return {
        "images": len(labels),
        "accuracy": float((predictions == labels).mean()),
        "per_class": per_class_scores(matrix, CLASSES),
        "confusion_matrix": matrix.tolist(),
        "per_reason": per_reason,
        "reason_head": reason_summary,
        "expected_calibration_error": expected_calibration_error(probs, labels),
        "reliability": reliability_bins(probs, labels),
        "most_confident_mistakes": confident_mistakes(
            names, [CLASSES[i] for i in labels], probs, predictions != labels, mistakes
        ),
    }


def mask_metrics(has_mask: np.ndarray, probs: np.ndarray, names: list[str], mistakes: int) -> dict:
    """Mask vs no mask: a masked face is right when called covered or incorrect (the label doesn't say which)."""
    predictions = probs.argmax(1)
    said_mask = predictions != UNCOVERED
    right = said_mask == has_mask
    by_true = {}
    for label, mask_value in zip(MASK_LABELS, (True, False)):
        subset = has_mask == mask_value
        by_true[label] = {
            "images": int(subset.sum()),
            "recall": float(right[subset].mean()) if subset.any() else 0.0,
            "predicted": {c: int((predictions[subset] == i).sum()) for i, c in enumerate(CLASSES)},
        }
    return {
        "images": len(has_mask),
        "mask_accuracy": float(right.mean()),
        "balanced_accuracy": float(np.mean([v["recall"] for v in by_true.values()])),
        "per_label": by_true,
        "most_confident_mistakes": confident_mistakes(
            names, [MASK_LABELS[0] if m else MASK_LABELS[1] for m in has_mask], probs, ~right, mistakes
        ),
    }


def evaluate(config: EvalConfig) -> dict:
    checkpoint = load_checkpoint(config.checkpoint)
    model = model_from_checkpoint(checkpoint)
    model.mirror_average = config.mirror_average
    torch.manual_seed(0)
    reason_head_trained = checkpoint["config"].get("reason_weight", 0) > 0
    header = {
        "checkpoint": {
            "file": Path(config.checkpoint).name,
            "sha256": sha256_of(config.checkpoint),
            "config": checkpoint["config"],
            "epochs": len(checkpoint["history"]),
            "train_images": checkpoint["data"]["train"]["images"],
            "git_commit": checkpoint["git_commit"],
            "init_from": checkpoint["data"].get("init_from"),
            # Only where there was one, so that older checkpoints' metrics keep their keys.
            **{key: checkpoint["data"][key] for key in ("teacher", "soup") if key in checkpoint["data"]},
        },
        "classes": list(CLASSES),
        "reasons": list(REASONS),
    }
    if config.mask_folder:
        index = index_mask_folder(config.mask_folder)
        samples = tuple(Sample(path=p, label=UNCOVERED if not m else 0, reason=NO_REASON) for p, m in index.samples)
        probs, _ = predict_samples(model, samples, config.batch_size)
        names = [p.relative_to(index.root).as_posix() for p, _ in index.samples]
        result = {
            **header,
            "kind": "mask",
            "data": {
                "folder": Path(config.mask_folder).as_posix(),
                "unreadable": [p.relative_to(index.root).as_posix() for p in index.unreadable],
            },
            **mask_metrics(np.array([m for _, m in index.samples]), probs, names, config.mistakes),
        }
        stem = config.name or Path(config.mask_folder).name
    else:
        index = index_folder(config.folder) if config.folder else index_split(config.data_root, config.split)
        # MaskedFace-Net's splits are re-cut to the framing the model was trained for, as in training.
        reframing = None if config.folder else reframing_of(checkpoint)
        probs, reason_probs = predict_samples(model, index.samples, config.batch_size, reframing)
        names = [s.path.relative_to(index.root).as_posix() for s in index.samples]
        result = {
            **header,
            "kind": "classes",
            "data": index.summary(),
            **class_metrics(index.samples, probs, reason_probs, names, reason_head_trained, config.mistakes),
        }
        stem = config.name or (Path(config.folder).name if config.folder else config.split)
        if not config.folder:
            split_summaries = {s: index_split(config.data_root, s, check_images=False).summary() for s in SPLITS}
            result["splits"] = {
                s: {k: v[k] for k in ("images", "classes", "reasons")} for s, v in split_summaries.items()
            }
    # Only what determines the numbers: the same evaluation written elsewhere gives the same bytes.
    result["evaluation"] = {k: v for k, v in asdict(config).items() if k not in ("out_dir", "figures")}
    result["evaluation"]["checkpoint"] = Path(config.checkpoint).name
    result = _round(result)
    out_dir = Path(config.out_dir)
    write_json(out_dir / f"metrics-{stem}.json", result)
    if config.figures:
        from . import figures

        figures.write_evaluation_figures(result, checkpoint["history"], out_dir / "figures", stem)
        if "splits" in result:
            figures.write_dataset_figures(result["splits"], out_dir / "figures")
    return result


def main(argv: list[str] | None = None) -> None:
    config = parse_config(EvalConfig, argv, description=__doc__.splitlines()[0])
    result = evaluate(config)
    headline = result.get("accuracy", result.get("mask_accuracy"))
    print(f"{result['kind']} accuracy {headline:.4f} on {result['images']} images -> {config.out_dir}")
