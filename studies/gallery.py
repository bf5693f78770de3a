"""Grad-CAM gallery for the write-up: ``masklens gallery``, through the ONNX predictor.

As the paper's Figures 4-9: for each class and each reason of an incorrectly worn mask, the first
holdout images (sorted by name: not picked by result), and the model's most confident mistakes on the
holdout split (from the metrics JSON). Each figure shows the face, then per target layer the coarse
Grad-CAM map of the predicted class and its overlay. Writes ``<out_dir>/figures/gallery-*.png`` and
``<out_dir>/gallery.json`` (what each figure shows), which the write-up renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from masklens.cli import parse_config
from masklens.files import write_json
from masklens.labels import CLASSES, INCORRECT, REASONS
from masklens.predict import Predictor
from masklens.preprocess import load_rgb
from training.data import index_split

LAYER_TITLES = {"block8": "block8 (last block, 3 x 3)", "repeat_2": "repeat_2 (finer, 8 x 8)"}


@dataclass(frozen=True)
class GalleryConfig:
    models: str = "models/onnx"
    data_root: str = "../shared/data/maskedface-net"
    metrics: str = "results/default/metrics-holdout.json"
    out_dir: str = "results/default"
    per_group: int = 2
    mistakes: int = 3


def groups(index) -> dict[str, list]:
    """The holdout samples by class, with the incorrect class split by reason, in name order."""
    grouped: dict[str, list] = {}
    for sample in index.samples:
        key = CLASSES[sample.label] if sample.label != INCORRECT else f"incorrect-{REASONS[sample.reason]}"
        grouped.setdefault(key, []).append(sample)
    order = ["covered", *[f"incorrect-{r}" for r in REASONS], "uncovered"]
    return {key: grouped[key] for key in order if key in grouped}


def figure(predictor: Predictor, path: Path, out: Path) -> dict:
    (face,) = predictor.predict_photo(np.asarray(load_rgb(path)), whole_image=True)
    described = predictor.describe(face)
    predicted = CLASSES.index(described["class"])
    overlays = predictor.overlays(face)
    layers = list(face.coarse_maps)
    fig, axes = plt.subplots(1, 1 + 2 * len(layers), figsize=(2.2 * (1 + 2 * len(layers)), 2.5))
    axes[0].imshow(face.crop)
    axes[0].set_title("face", fontsize=8)
    for i, layer in enumerate(layers):
        axes[1 + 2 * i].imshow(face.coarse_maps[layer][predicted], cmap="jet", vmin=0, vmax=1)
        axes[1 + 2 * i].set_title(f"{LAYER_TITLES.get(layer, layer)}\ncoarse map", fontsize=8)
        axes[2 + 2 * i].imshow(overlays[layer])
        axes[2 + 2 * i].set_title(f"{layer} overlay", fontsize=8)
    for ax in axes:
        ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return {
        "image": out.name,
        "file": path.name,
        "predicted": described["class"],
        "confidence": described["probabilities"][described["class"]],
        "reason": described["reason"],
    }


def gallery(config: GalleryConfig) -> dict:
    predictor = Predictor(config.models)
    root = Path(config.data_root)
    index = index_split(root, "holdout")
    figures_dir = Path(config.out_dir) / "figures"
    entries = {}
    for key, samples in groups(index).items():
        entries[key] = []
        for sample in samples[: config.per_group]:
            entry = figure(predictor, sample.path, figures_dir / f"gallery-{sample.path.stem}.png")
            entries[key].append(
                {
                    **entry,
                    "true": CLASSES[sample.label],
                    "true_reason": REASONS[sample.reason] if sample.reason >= 0 else None,
                }
            )
    metrics = json.loads(Path(config.metrics).read_text())
    mistakes = []
    for mistake in metrics["most_confident_mistakes"][: config.mistakes]:
        path = index.root / mistake["file"]
        entry = figure(predictor, path, figures_dir / f"gallery-{path.stem}.png")
        mistakes.append({**entry, "true": mistake["true"]})
    payload = {"groups": entries, "mistakes": mistakes, "split": "holdout", "layers": predictor.layers}
    write_json(Path(config.out_dir) / "gallery.json", payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    config = parse_config(GalleryConfig, argv, description=__doc__.splitlines()[0])
    payload = gallery(config)
    print(f"wrote {sum(map(len, payload['groups'].values())) + len(payload['mistakes'])} figures to {config.out_dir}")
