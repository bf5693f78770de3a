"""The figures of ``masklens explain``: face regions, pointing-game hit rates, the randomisation test and the
worst cases (MaskedFace-Net faces only: real-wear images are never drawn).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from masklens.gradcam import overlay_heatmap

from .heatmap_scores import TARGETS, ScoredFace, face_regions
from .heatmap_torch import CASCADE

REGION_COLOURS = {"nose": "#ffd400", "mouth": "#00e5ff", "chin": "#ff4fd8"}


def draw_regions(ax, face: ScoredFace) -> None:
    regions = face_regions(face.landmarks, face.crop.shape[0])
    for name, mask in regions.items():
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[REGION_COLOURS[name]], linewidths=1.2)
    ax.scatter(
        face.landmarks[:, 0] - 0.5, face.landmarks[:, 1] - 0.5, s=6, c="white", edgecolors="black", linewidths=0.4
    )


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def regions_figure(faces: list[ScoredFace], path: Path) -> None:
    """The first face of each group with its regions, so a reader can judge the region rule."""
    firsts = [next(f for f in faces if f.group == group) for group in TARGETS if any(f.group == group for f in faces)]
    fig, axes = plt.subplots(1, len(firsts), figsize=(2.3 * len(firsts), 2.6), squeeze=False)
    for ax, face in zip(axes[0], firsts):
        ax.imshow(face.crop)
        draw_regions(ax, face)
        ax.set_title(face.group, fontsize=8)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, label=n) for n, c in REGION_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.05))
    save(fig, path)


def pointing_figure(report: dict, layers: list[str], path: Path) -> None:
    """Hit rate with its interval per group: our maps per layer beside both baselines."""
    groups_ = list(report)
    bars = [(f"Grad-CAM {layer}", layer, "gradcam") for layer in layers] + [
        ("face centre", layers[0], "face_centre"),
        (f"random ({layers[-1]} grid)", layers[-1], "random"),
    ]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for i, (label, layer, kind) in enumerate(bars):
        hits = [report[g]["layers"][layer][kind]["hit"] for g in groups_]
        centres = np.arange(len(groups_)) + (i - (len(bars) - 1) / 2) * width
        values = [h["rate"] for h in hits]
        errors = np.array([[h["rate"] - h["interval"][0], h["interval"][1] - h["rate"]] for h in hits]).T
        ax.bar(centres, values, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(np.arange(len(groups_)), groups_, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pointing-game hit rate")
    ax.legend(fontsize=7, ncol=len(bars), loc="upper center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    save(fig, path)


def randomisation_figure(report: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, measure in zip(axes, ("spearman", "ssim")):
        for layer, measures in report.items():
            steps = measures[measure]["steps"]
            means = [1.0] + [s["mean"] if s["mean"] is not None else np.nan for s in steps]
            ax.plot(range(len(means)), means, marker="o", markersize=3, label=layer)
        ax.set_xticks(range(len(CASCADE) + 1), ["trained", *CASCADE], rotation=60, fontsize=7)
        ax.set_ylabel(f"{measure} to the trained map")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.legend(fontsize=8)
    fig.suptitle("cascading randomisation, from the top down", fontsize=9)
    save(fig, path)


def worst_cases(faces: list[ScoredFace], layers: list[str], per_group: int) -> list[tuple[ScoredFace, str, str]]:
    """Per incorrect reason, the misses whose map puts least mass on the uncovered part (on the finer
    layer), then the probed faces whose finer map ROAD judges least faithful."""
    layer = layers[-1]
    chosen = []
    for group in TARGETS:
        if not group.startswith("incorrect"):
            continue
        misses = [f for f in faces if f.group == group and not f.scores[layer]["gradcam"]["hit"]]
        misses.sort(key=lambda f: f.scores[layer]["gradcam"]["energy"])
        chosen += [(f, layer, "pointing-game miss") for f in misses[:per_group]]
    probed = sorted((f for f in faces if "road_combined" in f.scores), key=lambda f: f.scores["road_combined"])
    chosen += [(f, layer, "least faithful (ROAD)") for f in probed[:per_group]]
    return chosen


def worst_figure(cases, colormap: np.ndarray, image_weight: float, path: Path) -> None:
    columns = max(1, min(4, len(cases)))
    rows = max(1, -(-len(cases) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (face, layer, why) in zip(axes.ravel(), cases):
        ax.imshow(overlay_heatmap(face.crop, face.maps[layer], colormap, image_weight))
        draw_regions(ax, face)
        ax.set_title(f"{why}\n{face.group}, {layer}\n{face.file}", fontsize=6)
    save(fig, path)
