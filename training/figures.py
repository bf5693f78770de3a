"""Matplotlib figures for the write-up, drawn from metrics dicts and training histories."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# No timestamps in the PNG metadata, so re-running the evaluation rewrites identical files.
_SAVE = dict(dpi=120, bbox_inches="tight", metadata={"Software": None})


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def confusion_figure(matrix, row_names, column_names, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set_xticks(range(len(column_names)), column_names)
    ax.set_yticks(range(len(row_names)), row_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def reliability_figure(bins: list[dict], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    used = [b for b in bins if b["count"]]
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.bar(
        [(b["low"] + b["high"]) / 2 for b in used],
        [b["accuracy"] for b in used],
        width=used[0]["high"] - used[0]["low"] if used else 0.05,
        edgecolor="black",
        alpha=0.7,
    )
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    _save(fig, path)


def training_curves_figure(history: list[dict], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(8, 3.2))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    acc_ax.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    if all("val_loss" in h for h in history):
        loss_ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
        acc_ax.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="validation")
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_xticks(epochs)
        ax.legend()
    _save(fig, path)


def counts_figure(summaries: dict[str, dict], key: str, title: str, path: Path) -> None:
    """Grouped bars: one group per split, one bar per class (key='classes') or reason (key='reasons')."""
    names = list(next(iter(summaries.values()))[key])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        xs = [i + n * width for i in range(len(summaries))]
        counts = [summary[key][name] for summary in summaries.values()]
        bars = ax.bar(xs, counts, width=width, label=name.replace("_", " "))
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(summaries))], list(summaries))
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


def write_evaluation_figures(result: dict, history: list[dict], out_dir: Path, stem: str) -> None:
    if result["kind"] == "classes":
        confusion_figure(
            result["confusion_matrix"],
            result["classes"],
            result["classes"],
            f"{stem}: accuracy {result['accuracy']:.2%}",
            out_dir / f"confusion-{stem}.png",
        )
        reliability_figure(
            result["reliability"],
            f"{stem}: ECE {result['expected_calibration_error']:.3f}",
            out_dir / f"reliability-{stem}.png",
        )
    else:
        matrix = [[row["predicted"][c] for c in result["classes"]] for row in result["per_label"].values()]
        confusion_figure(
            matrix,
            list(result["per_label"]),
            result["classes"],
            f"{stem}: mask accuracy {result['mask_accuracy']:.2%}",
            out_dir / f"confusion-{stem}.png",
        )
    if history:  # a weight average (training.soup) was not trained: no curves
        training_curves_figure(history, out_dir / "training-curves.png")


def write_dataset_figures(split_summaries: dict[str, dict], out_dir: Path) -> None:
    counts_figure(split_summaries, "classes", "Images per class", out_dir / "dataset-classes.png")
    counts_figure(
        split_summaries, "reasons", "Incorrectly worn masks: what is uncovered", out_dir / "dataset-reasons.png"
    )
