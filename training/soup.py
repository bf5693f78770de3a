"""Weight averaging: ``masklens soup --checkpoints models/real.pt runs/real-webcam/model.pt --out models/real-soup.pt``.

A "model soup" (Wortsman et al., 2022; WiSE-FT when one ingredient is the other's starting point):
the element-wise mean of the weights of models fine-tuned from one another, batch-norm statistics
included. It works because such models sit in one basin of the loss, and the mean often does better
than either model on data unlike its training data. The ingredients must share their architecture,
classes and preprocessing.

The result is an ordinary checkpoint (weights in fp16, as ``model.pt``) with an empty training history.
It keeps the last ingredient's config and data summary, and records every ingredient (file, sha256,
weight) under ``data["soup"]``, so it says what it is made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from masklens.cli import parse_config
from masklens.files import sha256_of

from .checkpoint import load_checkpoint, storable


@dataclass(frozen=True)
class SoupConfig:
    checkpoints: tuple[str, ...] = field(default=(), metadata={"help": "the ingredients, model.pt checkpoints"})
    weights: tuple[float, ...] = field(
        default=(), metadata={"help": "one per ingredient, summing to 1 (default: equal)"}
    )
    out: str = field(default="models/real-soup.pt", metadata={"help": "the averaged checkpoint"})


def make_soup(config: SoupConfig) -> dict:
    if len(config.checkpoints) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    weights = config.weights or tuple(1 / len(config.checkpoints) for _ in config.checkpoints)
    if len(weights) != len(config.checkpoints) or abs(sum(weights) - 1) > 1e-6 or min(weights) < 0:
        raise ValueError(f"weights must be one non-negative number per checkpoint, summing to 1; got {weights}")
    checkpoints = [load_checkpoint(path) for path in config.checkpoints]
    last = checkpoints[-1]
    for path, checkpoint in zip(config.checkpoints, checkpoints):
        for key in ("classes", "reasons", "preprocessing"):
            if checkpoint[key] != last[key]:
                raise ValueError(f"{path} differs from {config.checkpoints[-1]} in {key}")
        if checkpoint["model"].keys() != last["model"].keys():
            raise ValueError(f"{path} has other layers than {config.checkpoints[-1]}")
    averaged = {}
    for name, tensor in last["model"].items():
        if not tensor.is_floating_point():  # counters (batch norm's num_batches_tracked): the last one's
            averaged[name] = tensor
            continue
        mean = sum(w * c["model"][name].double() for w, c in zip(weights, checkpoints))
        averaged[name] = storable(mean.float(), torch.float16)
    ingredients = [
        {"file": str(path), "sha256": sha256_of(path), "weight": weight}
        for path, weight in zip(config.checkpoints, weights)
    ]
    # Not trained itself: no history of its own (the ingredients' are in their checkpoints).
    return {**last, "model": averaged, "history": [], "data": {**last["data"], "soup": ingredients}}


def main(argv: list[str] | None = None) -> None:
    config = parse_config(SoupConfig, argv, description=__doc__.splitlines()[0])
    soup = make_soup(config)
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(soup, config.out)
    print(f"wrote {config.out}: the mean of {len(config.checkpoints)} checkpoints")
