"""Recipe sweep: ``masklens sweep --variants augment=flip,epochs=8 augment=standard,epochs=3 ...``

Trains each variant of a preset at the same time, one process each (a GPU or a many-core machine
takes them side by side), into ``runs_dir/<variant>``, then writes ``out``: per variant its
overrides, its validation metrics after every epoch, seconds and where it ran, and the variant
chosen: the highest mean of the final values of the ``score`` metrics, then the lowest final
validation loss. Only validation data decides (MaskedFace-Net's validation split, and with
``real_validation_percent`` the held-out real faces); the holdout is evaluated once, on the chosen
model. ``--launch false`` summarises runs that already finished (on another machine, say).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from masklens.cli import parse_config
from masklens.files import write_json

from .config import PRESETS, TrainConfig


@dataclass(frozen=True)
class SweepConfig:
    preset: str = field(default="default", metadata={"help": "the recipe the variants change"})
    variants: tuple[str, ...] = field(
        default=(
            "augment=standard,epochs=3",
            "augment=flip,epochs=5",
            "augment=standard,epochs=6",
            "augment=flip,epochs=8",
            "augment=standard,epochs=10",
        ),
        metadata={"help": "each FIELD=VALUE[,FIELD=VALUE...] of TrainConfig"},
    )
    train_flags: str = field(default="", metadata={"help": "flags for every run, e.g. '--bf16 true'"})
    score: tuple[str, ...] = field(
        default=("val_accuracy",),
        metadata={"help": "validation metrics whose final values' mean decides (e.g. real_val_accuracy too)"},
    )
    runs_dir: str = "runs/sweep"
    out: str = "results/sweep.json"
    launch: bool = field(default=True, metadata={"help": "false: only summarise finished runs"})


def parse_variant(text: str) -> dict[str, str]:
    """'augment=flip,epochs=8' -> {'augment': 'flip', 'epochs': '8'}; fields must exist in TrainConfig."""
    overrides = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or name not in TrainConfig.__dataclass_fields__:
            raise ValueError(f"bad variant item {item!r} in {text!r}: expected FIELD=VALUE with a TrainConfig field")
        overrides[name] = value
    return overrides


def run_name(overrides: dict[str, str]) -> str:
    return "_".join(f"{name}-{value}" for name, value in overrides.items())


def launch(config: SweepConfig) -> None:
    processes = []
    for variant in config.variants:
        overrides = parse_variant(variant)
        out_dir = Path(config.runs_dir) / run_name(overrides)
        out_dir.mkdir(parents=True, exist_ok=True)
        flags = [arg for name, value in overrides.items() for arg in ("--" + name.replace("_", "-"), value)]
        command = [
            sys.executable,
            "-m",
            "masklens",
            "train",
            "--preset",
            config.preset,
            "--out-dir",
            str(out_dir),
            "--validate",
            "true",
            *flags,
            *shlex.split(config.train_flags),
        ]
        log = open(out_dir / "train.log", "w")  # noqa: SIM115 (open while its run goes on; closed below)
        processes.append((variant, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    failed = []
    for variant, process, log in processes:
        if process.wait() != 0:
            failed.append(variant)
        log.close()
    if failed:
        raise RuntimeError(f"variants failed (see train.log in {config.runs_dir}): {failed}")


def summarise(config: SweepConfig) -> dict:
    variants = []
    for variant in config.variants:
        overrides = parse_variant(variant)
        history_path = Path(config.runs_dir) / run_name(overrides) / "history.json"
        if not history_path.exists():
            raise FileNotFoundError(f"{history_path} missing: variant {variant!r} has not finished")
        history = json.loads(history_path.read_text())["history"]
        run_config = json.loads((history_path.parent / "config.json").read_text())
        missing = [name for name in (*config.score, "val_loss") if name not in history[-1]]
        if missing:
            raise ValueError(f"{history_path}: no {missing} in its history, so it cannot be compared")
        metrics = [name for name in history[-1] if name.startswith(("val_", "real_val_"))]
        variants.append(
            {
                "variant": variant,
                "overrides": overrides,
                "device": history[0].get("device"),
                "config": {name: value for name, value in run_config.items() if name not in ("out_dir", "num_workers")},
                "seconds": round(sum(record["seconds"] for record in history), 1),
                **{name: [record[name] for record in history] for name in metrics},
                "score": sum(history[-1][name] for name in config.score) / len(config.score),
            }
        )
    chosen = max(variants, key=lambda v: (v["score"], -v["val_loss"][-1]))
    return {
        "preset": config.preset,
        "train_flags": config.train_flags,
        "score": list(config.score),
        "rule": f"highest mean of the final {', '.join(config.score)}, then lowest final validation loss",
        "variants": variants,
        "chosen": chosen["variant"],
    }


def main(argv: list[str] | None = None) -> None:
    config = parse_config(SweepConfig, argv, description=__doc__.splitlines()[0])
    if config.preset not in PRESETS:
        raise SystemExit(f"--preset must be one of {sorted(PRESETS)}, got {config.preset!r}")
    if config.launch:
        launch(config)
    summary = summarise(config)
    write_json(config.out, summary)
    print(f"chosen: {summary['chosen']} -> {Path(config.runs_dir) / run_name(parse_variant(summary['chosen']))}")
