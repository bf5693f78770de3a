"""The checkpoint format (``masklens-checkpoint/1``): a plain dict, loadable with ``torch.load(...,
weights_only=True)``, that carries the weights with everything needed to rebuild and run the model: config,
class and reason names, preprocessing, data-split fingerprints, history and git commit."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import torch

from masklens.labels import CLASSES, REASONS

from .config import TrainConfig
from .model import FULL_DEPTHS, FULL_WIDTHS, Depths, MaskClassifier, Preprocessing, Widths, build_model

CHECKPOINT_FORMAT = "masklens-checkpoint/1"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def storable(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor in ``dtype`` if every value fits its range, else unchanged.

    Batch norm's running variances can outgrow fp16 (over 1e5 in the paper recipe, whose inputs are
    not standardised), and an infinite variance would break the model.
    """
    if not tensor.is_floating_point() or dtype == tensor.dtype:
        return tensor
    if tensor.abs().max() > torch.finfo(dtype).max:
        return tensor
    return tensor.to(dtype)


def checkpoint_payload(
    model: MaskClassifier,
    config: TrainConfig,
    data_summary: dict,
    history: list,
    epoch: int,
    weights_dtype: torch.dtype = torch.float32,
) -> dict:
    state = {k: storable(v, weights_dtype) for k, v in model.state_dict().items()}
    return {
        "format": CHECKPOINT_FORMAT,
        "model": state,
        "config": dataclasses.asdict(config),
        "classes": list(CLASSES),
        "reasons": list(REASONS),
        "preprocessing": model.preprocessing.to_dict(),
        "data": data_summary,
        "history": history,
        "epoch": epoch,
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),
    }


def load_checkpoint(path: str | Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    return checkpoint


def load_checkpoint_for(path: str | Path, preprocessing: Preprocessing) -> dict:
    """``load_checkpoint``, refusing a model trained with other preprocessing than this run's."""
    checkpoint = load_checkpoint(path)
    if checkpoint["preprocessing"] != preprocessing.to_dict():
        raise ValueError(
            f"{path} was trained with preprocessing {checkpoint['preprocessing']}, "
            f"this run uses {preprocessing.to_dict()}"
        )
    return checkpoint


def depths_of(checkpoint: dict) -> Depths:
    """The checkpoint's ``Depths`` (checkpoints from before depths were configurable are full models)."""
    return Depths(*checkpoint["config"].get("depths", FULL_DEPTHS))


def widths_of(checkpoint: dict) -> Widths:
    """The checkpoint's ``Widths`` (checkpoints from before widths were configurable are full width)."""
    return Widths(*checkpoint["config"].get("widths", FULL_WIDTHS))


def model_from_checkpoint(checkpoint: dict) -> MaskClassifier:
    """Rebuilds the model in fp32 eval mode from a checkpoint dict (fp16-stored weights are upcast)."""
    if tuple(checkpoint["classes"]) != CLASSES or tuple(checkpoint["reasons"]) != REASONS:
        raise ValueError(
            f"checkpoint classes {checkpoint['classes']} / reasons {checkpoint['reasons']} "
            f"differ from this code's {CLASSES} / {REASONS}"
        )
    model = build_model(
        Preprocessing.from_dict(checkpoint["preprocessing"]),
        dropout=checkpoint["config"]["dropout"],
        depths=depths_of(checkpoint),
        widths=widths_of(checkpoint),
    )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()})
    return model.eval()
