"""The checks of ``masklens explain`` that need the network in torch: pytorch-grad-cam's faithfulness metrics
(ROAD, confidence change) and the cascading model-parameter randomisation test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masklens.files import sha256_of

from .heatmap_scores import mean_interval, spearman, ssim, steps_without_fall, unchanged_steps

TIE_JITTER = 1e-6  # breaks ties in the maps given to ROAD, see faithfulness()

# Top-down order of the cascading randomisation: the heads, then the trunk's stages from block8 down.
CASCADE: tuple[str, ...] = (
    "head",
    "block8",
    "repeat_3",
    "mixed_7a",
    "repeat_2",
    "mixed_6a",
    "repeat_1",
    "conv2d_4b",
    "conv2d_4a",
    "conv2d_3b",
    "conv2d_2b",
    "conv2d_2a",
    "conv2d_1a",
)
HEAD_MODULES = ("last_linear", "last_bn", "logits")


def load_network(checkpoint: str, manifest: dict, models: Path):
    """The checkpoint the graphs were exported from (its sha256 must be the manifest's), in eval mode and
    mirror-averaged as the graphs are; ``checkpoint`` empty: the manifest's, in the folder above ``models``."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    shipped = manifest["checkpoint"]
    path = Path(checkpoint) if checkpoint else models.parent / shipped["file"]
    if sha256_of(path) != shipped["sha256"]:
        raise SystemExit(f"{path} is not the checkpoint {models}/manifest.json was exported from (sha256 differs)")
    model = model_from_checkpoint(load_checkpoint(path))
    model.mirror_average = manifest["classifier"]["mirror_average"]
    return model


def logits_only(model):
    """The classifier as pytorch-grad-cam calls it: one logits tensor (the reason head's output left out)."""
    from torch import nn

    class LogitsOnly(nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            return self.network(x)[0]

    return LogitsOnly(model).eval()


def faithfulness(
    model, inputs, classes: np.ndarray, maps: dict[str, np.ndarray], percentiles: tuple[int, ...], seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Per map kind (maps: kind -> [N, S, S]), per image: ROAD most-relevant-first and least-relevant-first
    averaged over ``percentiles`` (the two averagers ROADCombined holds), their combination as ROADCombined
    forms it ((LeRF - MoRF) / 2: higher is more faithful), and the confidence change when the input is
    multiplied by the map (higher: the map keeps what the class needs). Scores are the softmax of the
    target class. ROAD removes the pixels above a percentile of the map with a strict ``<``, so a map that is
    zero on more than p% of the image would lose every pixel at p: ties are broken by a TIE_JITTER of noise,
    the same for every kind. The imputation noise is reseeded per kind, so kinds are compared on equal draws.
    """
    import torch
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    network = logits_only(model)
    targets = [ClassifierOutputSoftmaxTarget(int(k)) for k in classes]
    jitter = np.random.default_rng(seed).uniform(0, TIE_JITTER, next(iter(maps.values())).shape).astype(np.float32)
    road = ROADCombined(percentiles=list(percentiles))
    results = {}
    for kind, kind_maps in maps.items():
        cams = (kind_maps + jitter).astype(np.float32)
        torch.manual_seed(seed)
        most = road.morf_averager(inputs, cams, targets, network)
        least = road.lerf_averager(inputs, cams, targets, network)
        change = CamMultImageConfidenceChange()(inputs, cams, targets, network)
        results[kind] = {
            "road_most_relevant_first": np.ravel(most),
            "road_least_relevant_first": np.ravel(least),
            "road_combined": np.ravel((least - most) / 2),
            "confidence_change": np.ravel(change),
        }
    return results


def gradcam_maps(model, inputs, classes: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """pytorch-grad-cam's Grad-CAM of the torch model at each target layer [N, S, S]: what the exported
    graphs compute, and what can be computed for a randomised copy of the network."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    network = logits_only(model)
    targets = [ClassifierOutputTarget(int(k)) for k in classes]
    maps = {}
    for layer in layers:
        with GradCAM(model=network, target_layers=[model.gradcam_layer(layer)]) as cam:
            maps[layer] = cam(input_tensor=inputs, targets=targets).astype(np.float32)
    return maps


def randomise(model, stage: str, generator_seed: int) -> None:
    """Re-initialises the stage's weights (the heads, or one trunk stage) in place, as at construction."""
    import torch

    torch.manual_seed(generator_seed)
    modules = (
        [getattr(model.backbone, name) for name in HEAD_MODULES] + [model.reason_head]
        if stage == "head"
        else [getattr(model.backbone, stage)]
    )
    for module in modules:
        for part in module.modules():
            if hasattr(part, "reset_parameters"):
                part.reset_parameters()


def cascade_similarities(model, inputs, classes: np.ndarray, map_function, layers: list[str], seed: int) -> dict:
    """Randomises ``model`` (a copy) stage by stage along CASCADE; after each step, every image's map
    (``map_function(model, inputs, classes, layers) -> {layer: [N, S, S]}``) is compared with the trained
    model's. Returns {layer: {"spearman": [per step: [per image]], "ssim": [...]}}."""
    import copy

    model = copy.deepcopy(model).eval()
    original = map_function(model, inputs, classes, layers)
    similarities = {layer: {"spearman": [], "ssim": []} for layer in layers}
    for step, stage in enumerate(CASCADE):
        randomise(model, stage, seed + step)
        maps = map_function(model, inputs, classes, layers)
        for layer in layers:
            pairs = list(zip(original[layer], maps[layer]))
            similarities[layer]["spearman"].append([spearman(a, b) for a, b in pairs])
            similarities[layer]["ssim"].append([ssim(a, b) for a, b in pairs])
    return similarities


def randomisation_report(similarities: dict) -> dict:
    report = {}
    for layer, measures in similarities.items():
        report[layer] = {}
        for measure, steps in measures.items():
            per_step = [mean_interval([v for v in values if not np.isnan(v)]) for values in steps]
            means = [s["mean"] if s["mean"] is not None else float("nan") for s in per_step]
            undefined = [int(np.isnan(values).sum()) for values in steps]
            report[layer][measure] = {
                "steps": per_step,
                "undefined": undefined,  # maps with no ranks (constant), left out of that step's mean
                "unchanged_steps": [CASCADE[i] for i in unchanged_steps(per_step)],
                "steps_without_further_fall": [CASCADE[i] for i in steps_without_fall(means)],
            }
    return report
