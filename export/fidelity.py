"""Whether a compressed graph (fp16 or int8 weights) shows a visitor what the fp32 graph shows.

A heatmap's largest pixel difference is a poor bound: rounding moves a fine map by a few tenths somewhere
even where a person sees the same picture. What a person sees is where the map is hot and in what order,
so the bounds compare the verdict, the probabilities, the ranking of the map's pixels (Spearman) and the
hot region (the top ``TOP_AREA`` of the map's area, by intersection over union), per image and layer.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

# Same class as fp32 on 99.5% of faces, probabilities within 0.02; per layer, the maps' Spearman rank
# correlation at least 0.95 at the median and 0.8 at the 5th percentile, and the IoU of their hot regions
# at least 0.7 at the median.
FORMAT_BOUNDS = {
    "min_same_class": 0.995,
    "max_probability_difference": 0.02,
    "min_median_spearman": 0.95,
    "min_p5_spearman": 0.8,
    "min_median_top_iou": 0.7,
}
TOP_AREA = 0.2
# Maps are compared on every STRIDE-th pixel of each axis of the upsampled map: bilinear upsampling of an
# 8 x 8 or 3 x 3 map leaves nothing finer in between, and ranking 25,600 pixels per face is slow.
STRIDE = 4


def spearman(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per image, Spearman's rank correlation of two maps [N, H, W] (ties ranked by their mean). A flat map
    carries no order: two flat maps agree (1), a flat map against one that is not does not (0)."""
    a = rankdata(reference.reshape(len(reference), -1), axis=1)
    b = rankdata(other.reshape(len(other), -1), axis=1)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    spread_a, spread_b = (a * a).sum(1), (b * b).sum(1)
    rho = (a * b).sum(1) / np.sqrt(np.maximum(spread_a * spread_b, 1e-30))
    flat_a, flat_b = spread_a == 0, spread_b == 0
    return np.where(flat_a | flat_b, (flat_a & flat_b).astype(np.float64), rho)


def top_region(maps: np.ndarray, area: float = TOP_AREA) -> np.ndarray:
    """Per image, the pixels at or above the map's (1 - area) quantile: the part a person sees as hot."""
    flat = maps.reshape(len(maps), -1)
    threshold = np.quantile(flat, 1 - area, axis=1, keepdims=True)
    return (flat >= threshold).reshape(maps.shape)


def top_iou(reference: np.ndarray, other: np.ndarray, area: float = TOP_AREA) -> np.ndarray:
    a, b = top_region(reference, area), top_region(other, area)
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return inter / np.maximum(union, 1)


def agreement(
    reference_probabilities: np.ndarray,
    probabilities: np.ndarray,
    reference_maps: dict[str, np.ndarray],
    maps: dict[str, np.ndarray],
) -> dict:
    """What a compressed graph's outputs share with the reference's on one set of faces (maps of the
    reference's class, as the page draws them)."""
    result = {
        "faces": len(probabilities),
        "same_class": float((probabilities.argmax(1) == reference_probabilities.argmax(1)).mean()),
        "max_probability_difference": float(np.abs(probabilities - reference_probabilities).max()),
        "layers": {},
    }
    for layer, reference in reference_maps.items():
        rho = spearman(reference[:, ::STRIDE, ::STRIDE], maps[layer][:, ::STRIDE, ::STRIDE])
        iou = top_iou(reference[:, ::STRIDE, ::STRIDE], maps[layer][:, ::STRIDE, ::STRIDE])
        result["layers"][layer] = {
            "median_spearman": float(np.median(rho)),
            "p5_spearman": float(np.percentile(rho, 5)),
            "median_top_iou": float(np.median(iou)),
            "p5_top_iou": float(np.percentile(iou, 5)),
        }
    return result


def failures(set_name: str, measured: dict, bounds: dict = FORMAT_BOUNDS) -> list[str]:
    """Each bound that ``agreement``'s result breaks, naming the set, the layer, the measure and the value."""
    broken = []
    if measured["same_class"] < bounds["min_same_class"]:
        broken.append(f"{set_name}: same class {measured['same_class']:.4f} < {bounds['min_same_class']}")
    if measured["max_probability_difference"] > bounds["max_probability_difference"]:
        broken.append(
            f"{set_name}: probability difference {measured['max_probability_difference']:.4f} > "
            f"{bounds['max_probability_difference']}"
        )
    for layer, values in measured["layers"].items():
        for measure in ("median_spearman", "p5_spearman", "median_top_iou"):
            floor = bounds[f"min_{measure}"]
            if values[measure] < floor:
                broken.append(f"{set_name}: {layer} {measure.replace('_', ' ')} {values[measure]:.4f} < {floor}")
    return broken
