"""The bounds a compressed graph must hold against fp32 (export.fidelity), on hand-made outputs."""

import numpy as np
import pytest

from export.fidelity import FORMAT_BOUNDS, agreement, failures, spearman, top_iou, top_region

FACES = 40


def reference_outputs():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1, 1], FACES)
    # Smooth maps: one hot spot each, as upsampled Grad-CAM maps look.
    y, x = np.mgrid[0:32, 0:32]
    centres = rng.uniform(4, 28, (FACES, 2))
    maps = np.exp(-((y - centres[:, :1, None]) ** 2 + (x - centres[:, 1:, None]) ** 2) / 60).astype(np.float32)
    return probabilities, {"block8": maps, "repeat_2": maps[:, ::-1].copy()}


def measured(probabilities, maps):
    reference_probabilities, reference_maps = reference_outputs()
    return failures("holdout", agreement(reference_probabilities, probabilities, reference_maps, maps))


def test_spearman_and_iou_of_known_maps():
    ramp = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    assert spearman(ramp, ramp * 3 + 1)[0] == pytest.approx(1.0)
    assert spearman(ramp, -ramp)[0] == pytest.approx(-1.0)
    flat = np.zeros_like(ramp)
    assert spearman(flat, flat)[0] == 1.0 and spearman(flat, ramp)[0] == 0.0
    # The top 20% of 16 pixels: the 4 largest (quantile ties included).
    assert top_region(ramp).sum() == 4 and top_region(ramp)[0, 3].all()
    assert top_iou(ramp, ramp)[0] == 1.0 and top_iou(ramp, -ramp)[0] == 0.0


def test_a_graph_within_bounds_passes():
    probabilities, maps = reference_outputs()
    noise = np.random.default_rng(1)
    nudged = {layer: m + noise.normal(0, 1e-3, m.shape).astype(np.float32) for layer, m in maps.items()}
    assert measured(probabilities + 0.005, nudged) == []


def test_each_bound_is_named_when_broken():
    probabilities, maps = reference_outputs()
    swapped = probabilities.copy()
    swapped[:2] = np.roll(swapped[:2], 1, axis=1)  # two faces of forty: another class
    assert any("same class 0.9500 < 0.995" in f for f in measured(swapped, maps))
    assert measured(probabilities + 0.03, maps) == ["holdout: probability difference 0.0300 > 0.02"]

    # block8 reversed on every face: its ranking and its hot region break; repeat_2 is untouched.
    broken = measured(probabilities, {**maps, "block8": -maps["block8"]})
    assert [f.rsplit(" ", 3)[0] for f in broken] == [
        "holdout: block8 median spearman",
        "holdout: block8 p5 spearman",
        "holdout: block8 median top iou",
    ]
    # Reversed on 3 faces of 40 only: the median holds, the 5th percentile does not.
    few = maps["repeat_2"].copy()
    few[:3] = -few[:3]
    p5 = np.percentile([-1] * 3 + [1] * 37, 5)
    assert measured(probabilities, {**maps, "repeat_2": few}) == [
        f"holdout: repeat_2 p5 spearman {p5:.4f} < {FORMAT_BOUNDS['min_p5_spearman']}"
    ]


def test_hot_region_moved_but_ranking_kept_breaks_the_iou_bound():
    probabilities, maps = reference_outputs()
    # The same peak, a plateau wide enough that its top 20% is a different region: ranks keep most order.
    shifted = {layer: np.roll(m, 3, axis=2) for layer, m in maps.items()}
    broken = measured(probabilities, shifted)
    assert any("median top iou" in f for f in broken)
