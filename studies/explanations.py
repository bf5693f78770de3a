"""Can you trust the heatmap? ``masklens explain``: checks of the exported graphs' Grad-CAM maps.

    masklens explain                      the full holdout split, the shipped graphs and checkpoint

Every face goes through the ONNX predictor as an upload (the face finder, the crop the site makes, both
target layers' maps), so what is measured is what the browser draws. Four measures:

1. Pointing game per reason: from the face finder's five landmarks, the regions nose, mouth and chin
   (``face_regions``); the peak of the true class's map should fall where the reason says the face is
   uncovered (nose for ``_Mask_Mouth_Chin``, chin for ``_Mask_Nose_Mouth``, nose or mouth for
   ``_Mask_Chin``), on the mask (nose, mouth or chin) for a covered face, and on the part a mask would
   cover for an uncovered one. A hit rate with a 95% Wilson interval, and the energy share (the map's mass
   inside the region, stricter than one peak), against a Gaussian on the centre of the face and a random
   map of the layer's resolution.
2. Faithfulness: pytorch-grad-cam's ROAD (most-relevant-first, least-relevant-first, and ROADCombined's
   combination) and the confidence change when the input is multiplied by the map
   (``CamMultImageConfidenceChange``), for our maps against a random map and a centred Gaussian, scored
   by the shipped checkpoint in torch (the network the graphs were exported from, checked by its sha256).
3. The model-parameter randomisation test (Adebayo et al., 2018): the checkpoint's layers are randomised
   from the top down, cascading, and the maps of each step are compared with the trained model's
   (Spearman rank correlation and SSIM); a map that does not change explains the image, not the model.
4. The pointing game on the real ``real-wear/test/incorrect`` faces (no reason labelled there: where the
   peak falls). Only aggregates are written: those images are never published.

The torch measures (2, 3) run on ``probe_per_class`` faces per class, evenly spaced in name order: the
ROAD imputation solves a sparse system per image and percentile, too slow for the whole split on a CPU.

Writes ``results/explanations.json`` and ``results/figures/explanations-*.png`` (MaskedFace-Net faces only).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from tqdm import tqdm

from masklens.cli import parse_config
from masklens.files import write_json
from masklens.framing import face_size
from masklens.gradcam import upsample_cam
from masklens.labels import CLASSES
from masklens.predict import FaceResult, Predictor, normalize_crops, open_photo

from .answers import list_images, rounded
from .gallery import groups
from .heatmap_figures import pointing_figure, randomisation_figure, regions_figure, worst_cases, worst_figure
from .heatmap_scores import (
    ELSEWHERE,
    REGIONS,
    TARGETS,
    ScoredFace,
    centred_gaussian,
    energy_share,
    face_regions,
    mean_interval,
    peak_region,
    random_map,
    rate,
    score_face,
    union,
)
from .heatmap_torch import CASCADE, cascade_similarities, faithfulness, gradcam_maps, load_network, randomisation_report

FIGURES = {
    "regions": "explanations-regions.png",
    "pointing": "explanations-pointing.png",
    "randomisation": "explanations-randomisation.png",
    "worst": "explanations-worst.png",
}


@dataclass(frozen=True)
class ExplainConfig:
    models: str = field(default="models/onnx", metadata={"help": "folder with manifest.json and the ONNX files"})
    checkpoint: str = field(
        default="",
        metadata={
            "help": "the exported network's checkpoint for the torch measures; empty: the manifest's, in models/"
        },
    )
    data_root: str = "../shared/data/maskedface-net"
    split: str = "holdout"
    real_wear: str = field(
        default="../shared/data/real-wear/test/incorrect",
        metadata={"help": "real incorrectly worn faces (aggregates only are written); empty: skip"},
    )
    out: str = "results/explanations.json"
    figures_dir: str = "results/figures"
    per_group: int = field(default=0, metadata={"help": "faces per holdout group, evenly spaced; 0: all"})
    probe_per_class: int = field(
        default=12, metadata={"help": "faces per class, evenly spaced, for ROAD, confidence change, randomisation"}
    )
    road_percentiles: tuple[int, ...] = (20, 40, 60, 80)
    goal_hit_rate: float = field(default=0.9, metadata={"help": "the pointing-game goal for each incorrect reason"})
    worst_per_group: int = 2
    seed: int = 0
    threads: int = field(default=0, metadata={"help": "onnxruntime threads; 0 lets onnxruntime choose"})
    # torch's thread pool waits by spinning: on a busy 2-core machine, Grad-CAM of the checkpoint ran 2.5x
    # faster on one thread than on two.
    torch_threads: int = 1


# --- the faces -----------------------------------------------------------------------------------------


def largest_face(predictor: Predictor, path: Path) -> FaceResult | None:
    limits = predictor.manifest["input_limits"]
    faces = predictor.predict_photo(open_photo(path, limits["max_side"], limits["max_pixels"]))
    return max(faces, key=lambda face: face_size(face.box)) if faces else None


def landmarks_in_crop(face: FaceResult) -> np.ndarray:
    """The face's landmarks from photo pixels to pixels of its crop."""
    x1, y1, x2, _ = face.crop_box
    scale = face.crop.shape[0] / (x2 - x1)
    return (np.asarray(face.landmarks, dtype=np.float64) - [x1, y1]) * scale


def evenly_spaced(items: list, count: int) -> list:
    if not count or len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def collect_faces(predictor: Predictor, config: ExplainConfig) -> tuple[list[ScoredFace], dict]:
    """The holdout faces the face finder finds, with their maps, scored; and the counts per group."""
    from training.data import index_split

    index = index_split(config.data_root, config.split)
    size = predictor.preprocessing["size"]
    coarse_shapes = {layer: tuple(shape) for layer, shape in predictor.manifest["classifier"]["maps"].items()}
    rng = np.random.default_rng(config.seed)
    faces, counts = [], {}
    for group, samples in groups(index).items():
        class_name, targets = TARGETS[group]
        chosen = evenly_spaced(samples, config.per_group)
        found = 0
        for sample in tqdm(chosen, desc=group, leave=False, dynamic_ncols=True, mininterval=5.0):
            result = largest_face(predictor, sample.path)
            if result is None:
                continue
            found += 1
            k = CLASSES.index(class_name)
            face = ScoredFace(
                group=group,
                file=sample.path.name,
                target_class=k,
                crop=result.crop,
                landmarks=landmarks_in_crop(result),
                maps={layer: upsample_cam(maps[k][None], size)[0] for layer, maps in result.coarse_maps.items()},
            )
            score_face(face, targets, coarse_shapes, rng)
            faces.append(face)
        counts[group] = {"images": len(chosen), "found": found}
    return faces, counts


def pointing_report(faces: list[ScoredFace], layers: list[str]) -> dict:
    report = {}
    for group, (class_name, targets) in TARGETS.items():
        members = [f for f in faces if f.group == group]
        if not members:
            continue
        size = members[0].crop.shape[0]
        areas = [float(union(face_regions(f.landmarks, size), targets).mean()) for f in members]
        report[group] = {
            "class": class_name,
            "target": list(targets),
            "faces": len(members),
            "target_area": mean_interval(areas),  # a uniform map's energy share
            "layers": {
                layer: {
                    kind: {
                        "hit": rate([f.scores[layer][kind]["hit"] for f in members]),
                        "energy": mean_interval([f.scores[layer][kind]["energy"] for f in members]),
                        "peak_regions": {
                            name: rounded(np.mean([f.scores[layer][kind]["peak"] == name for f in members]))
                            for name in (*REGIONS, ELSEWHERE)
                        },
                    }
                    for kind in ("gradcam", "face_centre", "random")
                }
                for layer in layers
            },
        }
    return report


# --- torch: faithfulness and randomisation --------------------------------------------------------------


def probe_faces(faces: list[ScoredFace], per_class: int) -> list[ScoredFace]:
    chosen = []
    for k in range(len(CLASSES)):
        chosen.extend(evenly_spaced([f for f in faces if f.target_class == k], per_class))
    return chosen


def torch_measures(config: ExplainConfig, predictor: Predictor, probes: list[ScoredFace]) -> tuple[dict, dict, dict]:
    """Faithfulness per class and layer, the randomisation test, and how far the torch model's Grad-CAM
    lies from the exported graphs' maps (the check that both are one network)."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.torch_threads)
    model = load_network(config.checkpoint, predictor.manifest, Path(config.models))
    inputs = torch.from_numpy(normalize_crops(np.stack([f.crop for f in probes]), predictor.preprocessing))
    classes = np.array([f.target_class for f in probes])
    size = inputs.shape[-1]
    layers = predictor.layers
    coarse_shapes = {layer: tuple(shape) for layer, shape in predictor.manifest["classifier"]["maps"].items()}
    rng = np.random.default_rng(config.seed + 1)

    kinds = {"centred_gaussian": np.repeat(centred_gaussian(size)[None], len(probes), axis=0)}
    for layer in layers:
        kinds[f"gradcam/{layer}"] = np.stack([f.maps[layer] for f in probes])
        kinds[f"random/{layer}"] = np.stack([random_map(rng, coarse_shapes[layer], size) for _ in probes])
    scores = faithfulness(model, inputs, classes, kinds, config.road_percentiles, config.seed)
    per_class = {}
    for k, class_name in enumerate(CLASSES):
        rows = classes == k
        per_class[class_name] = {
            layer: {
                kind: {metric: mean_interval(values[rows]) for metric, values in scores[key].items()}
                for kind, key in (
                    ("gradcam", f"gradcam/{layer}"),
                    ("random", f"random/{layer}"),
                    ("centred_gaussian", "centred_gaussian"),
                )
            }
            for layer in layers
        }
    for face, combined in zip(probes, scores[f"gradcam/{layers[-1]}"]["road_combined"]):
        face.scores["road_combined"] = float(combined)

    torch_maps = gradcam_maps(model, inputs, classes, layers)
    agreement = {layer: rounded(np.abs(torch_maps[layer] - kinds[f"gradcam/{layer}"]).max()) for layer in layers}
    similarities = cascade_similarities(model, inputs, classes, gradcam_maps, layers, config.seed)
    return per_class, randomisation_report(similarities), agreement


# --- real faces ------------------------------------------------------------------------------------------


def real_wear_report(predictor: Predictor, folder: Path) -> dict:
    """Where the incorrect class's peak falls on real incorrectly worn faces (aggregates only)."""
    size = predictor.preprocessing["size"]
    k = CLASSES.index("incorrect")
    files = list_images(folder)
    peaks = {layer: [] for layer in predictor.layers}
    energies = {layer: {name: [] for name in REGIONS} for layer in predictor.layers}
    answered_incorrect = 0
    for path in tqdm(files, desc="real-wear incorrect", leave=False, dynamic_ncols=True, mininterval=5.0):
        result = largest_face(predictor, path)
        if result is None:
            continue
        answered_incorrect += int(result.probabilities.argmax()) == k
        regions = face_regions(landmarks_in_crop(result), size)
        for layer, maps in result.coarse_maps.items():
            cam = upsample_cam(maps[k][None], size)[0]
            peaks[layer].append(peak_region(cam, regions))
            for name in REGIONS:
                energies[layer][name].append(energy_share(cam, regions[name]))
    found = len(next(iter(peaks.values())))
    return {
        "faces": len(files),
        "found": found,
        "answered_incorrect": answered_incorrect,
        "layers": {
            layer: {
                "peak_regions": {name: rate([peak == name for peak in peaks[layer]]) for name in (*REGIONS, ELSEWHERE)},
                "energy": {name: mean_interval(energies[layer][name]) for name in REGIONS},
            }
            for layer in predictor.layers
        },
    }


# --- the command -----------------------------------------------------------------------------------------


def explain(config: ExplainConfig) -> dict:
    started = time.perf_counter()
    predictor = Predictor(config.models, config.threads)
    layers = predictor.layers
    faces, counts = collect_faces(predictor, config)
    pointing = pointing_report(faces, layers)
    probes = probe_faces(faces, config.probe_per_class)
    faithful, randomisation, agreement = torch_measures(config, predictor, probes)
    real = real_wear_report(predictor, Path(config.real_wear)) if config.real_wear else None

    figures_dir = Path(config.figures_dir)
    regions_figure(faces, figures_dir / FIGURES["regions"])
    pointing_figure(pointing, layers, figures_dir / FIGURES["pointing"])
    randomisation_figure(randomisation, figures_dir / FIGURES["randomisation"])
    cases = worst_cases(faces, layers, config.worst_per_group)
    worst_figure(
        cases, predictor.colormap, predictor.manifest["drawing"]["image_weight"], figures_dir / FIGURES["worst"]
    )

    classifier = predictor.manifest["classifier"]
    payload = {
        "config": asdict(config),
        "models": {
            "classifier": classifier["file"],
            "checkpoint": predictor.manifest["checkpoint"]["file"],
            "sha256": predictor.manifest["checkpoint"]["sha256"],
        },
        "split": config.split,
        "layers": layers,
        "maps": classifier["maps"],
        "goal_hit_rate": config.goal_hit_rate,
        "faces": counts,
        "pointing": pointing,
        "faithfulness": {
            "images_per_class": {c: int(sum(f.target_class == k for f in probes)) for k, c in enumerate(CLASSES)},
            "percentiles": list(config.road_percentiles),
            "per_class": faithful,
        },
        "randomisation": {
            "images": len(probes),
            "cascade": list(CASCADE),
            "layers": randomisation,
            "torch_vs_exported_max_difference": agreement,
        },
        "real_wear": real,
        "worst": [
            {
                "file": face.file,
                "group": face.group,
                "layer": layer,
                "why": why,
                "energy": rounded(face.scores[layer]["gradcam"]["energy"]),
            }
            for face, layer, why in cases
        ],
        "figures": FIGURES,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(config.out, payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ExplainConfig, argv, description=__doc__.splitlines()[0])
    payload = explain(config)
    for group, report in payload["pointing"].items():
        rates = ", ".join(
            f"{layer} {report['layers'][layer]['gradcam']['hit']['rate']:.1%}" for layer in payload["layers"]
        )
        print(f"{group}: pointing-game hit rate {rates} ({report['faces']} faces)")
    print(f"wrote {config.out} in {payload['seconds']:.0f} s")
