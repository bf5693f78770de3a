"""The heatmap checks of ``masklens explain`` (studies.explanations): regions from landmarks, the pointing
game and energy on hand-made maps, the randomisation check, and the command end to end."""

import json
import shutil

import numpy as np
import pytest

from studies.explanations import ExplainConfig, explain
from studies.heatmap_scores import energy_share, face_regions, peak_region, pointing_hit
from studies.heatmap_torch import CASCADE, cascade_similarities, gradcam_maps, randomisation_report

from .conftest import REPO, shared_data_or_skip

SIZE = 160
# An upright face: eyes 40 px apart, nose tip 25 px below the eye line, mouth line 45 px below it.
UPRIGHT = np.array([[60.0, 60.0], [100.0, 60.0], [80.0, 85.0], [65.0, 105.0], [95.0, 105.0]])


def test_regions_lie_where_the_landmarks_say_and_do_not_overlap():
    regions = face_regions(UPRIGHT, SIZE)
    inside = lambda name, x, y: bool(regions[name][int(y), int(x)])
    assert inside("nose", 80, 85) and inside("nose", 80, 75)
    assert inside("mouth", 80, 105) and inside("mouth", 62, 108)
    # The chin is estimated: it ends two nose-to-mouth distances (2 x 20 px) below the mouth line.
    assert inside("chin", 80, 125) and inside("chin", 80, 144) and not inside("chin", 80, 146)
    for x, y in UPRIGHT[:2]:  # the eyes are in no region
        assert not any(inside(name, x, y) for name in regions)
    assert not inside("nose", 80, 62)  # between the eyes is not the nose
    overlap = regions["nose"].astype(int) + regions["mouth"] + regions["chin"]
    assert overlap.max() == 1


def test_regions_turn_with_the_face():
    # The same face turned a quarter: each landmark (x, y) -> (y, SIZE - x) about the crop's centre.
    turned = np.stack([UPRIGHT[:, 1], SIZE - UPRIGHT[:, 0]], axis=1)
    upright, rotated = face_regions(UPRIGHT, SIZE), face_regions(turned, SIZE)
    for name in upright:
        # Pixel (row y, column x) of the upright crop lands on (row SIZE - 1 - x, column y).
        assert np.array_equal(rotated[name], np.rot90(upright[name])), name


def test_the_pointing_game_scores_a_hit_a_miss_and_ties():
    region = np.zeros((10, 10), dtype=bool)
    region[:, :5] = True  # the left half
    cam = np.zeros((10, 10))
    cam[4, 2] = 1.0
    assert pointing_hit(cam, region)
    cam[4, 2], cam[4, 8] = 0.5, 1.0
    assert not pointing_hit(cam, region)
    # Two equal maxima, one inside: half the peak is not most of it.
    cam[4, 2] = 1.0
    assert not pointing_hit(cam, region)
    # Three, two inside: most of the peak is.
    cam[7, 1] = 1.0
    assert pointing_hit(cam, region)
    # A flat map's peak is everywhere, so it points at nothing in particular.
    assert not pointing_hit(np.zeros((10, 10)), region)


def test_the_peak_is_named_by_the_region_that_holds_it():
    regions = face_regions(UPRIGHT, SIZE)
    cam = np.zeros((SIZE, SIZE))
    cam[85, 80] = 1.0
    assert peak_region(cam, regions) == "nose"
    cam[85, 80], cam[125, 80] = 0.0, 1.0
    assert peak_region(cam, regions) == "chin"
    cam[125, 80], cam[10, 10] = 0.0, 1.0
    assert peak_region(cam, regions) == "elsewhere"


def test_energy_is_the_share_of_the_maps_mass_in_the_region():
    region = np.zeros((10, 10), dtype=bool)
    region[:2] = True  # 20 pixels
    cam = np.ones((10, 10))
    cam[:2] = 2.0
    assert energy_share(cam, region) == pytest.approx(40 / 120)
    assert energy_share(np.zeros((10, 10)), region) == 0.0
    assert energy_share(cam * region, region) == pytest.approx(1.0)


def test_the_randomisation_check_flags_a_map_that_ignores_the_weights(one_thread):
    import torch

    from training.model import FACENET_NORMALIZATION, Depths, Preprocessing, Widths, build_model

    torch.manual_seed(0)
    # The shipped network's size (one block per repeat, narrow), untrained: its maps still depend on its weights.
    model = build_model(
        Preprocessing(SIZE, **FACENET_NORMALIZATION), depths=Depths(1, 1, 1), widths=Widths(32, 40, 96, 96, 128)
    )
    model.eval()
    inputs = torch.randn(2, 3, SIZE, SIZE)
    classes = np.array([0, 1])
    layers = ["block8", "repeat_2"]

    def edges(model, inputs, classes, layers):
        """A 'heatmap' of the image's own gradients: the same whatever the weights."""
        brightness = inputs.mean(dim=1).numpy()
        strength = np.abs(np.gradient(brightness, axis=1)) + np.abs(np.gradient(brightness, axis=2))
        return {layer: strength for layer in layers}

    ignoring = randomisation_report(cascade_similarities(model, inputs, classes, edges, layers, seed=0))
    for layer in layers:
        for measure in ("spearman", "ssim"):
            assert ignoring[layer][measure]["unchanged_steps"] == list(CASCADE)
            assert ignoring[layer][measure]["steps_without_further_fall"] == list(CASCADE)

    gradcam = randomisation_report(cascade_similarities(model, inputs, classes, gradcam_maps, layers, seed=0))
    # Grad-CAM depends on the heads' weights: randomising them alone already changes both layers' maps.
    for layer in layers:
        assert CASCADE[0] not in gradcam[layer]["ssim"]["unchanged_steps"]
        assert gradcam[layer]["ssim"]["steps"][0]["mean"] < 1


@pytest.mark.slow
def test_explain_runs_end_to_end_on_a_few_holdout_faces(tmp_path, one_thread):
    data = shared_data_or_skip("maskedface-net")
    real = tmp_path / "real-wear"
    real.mkdir()
    for path in sorted((shared_data_or_skip("real-wear", "test", "incorrect")).iterdir())[:3]:
        shutil.copy(path, real / path.name)
    out = tmp_path / "explanations.json"
    config = ExplainConfig(
        models=str(REPO / "models" / "onnx"),
        data_root=str(data),
        real_wear=str(real),
        out=str(out),
        figures_dir=str(tmp_path / "figures"),
        per_group=2,
        probe_per_class=1,
        road_percentiles=(50,),
        threads=1,
    )
    payload = explain(config)
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    assert sorted(payload["pointing"]) == sorted(
        ["covered", "incorrect-nose", "incorrect-chin", "incorrect-nose_and_mouth", "uncovered"]
    )
    for group in payload["pointing"].values():
        for layer in payload["layers"]:
            hit = group["layers"][layer]["gradcam"]["hit"]
            assert hit["faces"] == group["faces"] and 0 <= hit["hits"] <= hit["faces"]
            assert sum(group["layers"][layer]["gradcam"]["peak_regions"].values()) == pytest.approx(1, abs=1e-3)
    # The torch checkpoint is the network the graphs were exported from: the same maps up to the rounding of
    # the graphs' int8 weights, which export.fidelity bounds by rank correlation and top-area overlap (the
    # largest pixel difference on these faces: 0.049 with one look, 0.056 with the mirror image's two).
    assert max(payload["randomisation"]["torch_vs_exported_max_difference"].values()) < 0.1
    assert payload["faithfulness"]["images_per_class"] == {"covered": 1, "incorrect": 1, "uncovered": 1}
    assert len(payload["randomisation"]["layers"]["block8"]["spearman"]["steps"]) == len(CASCADE)
    assert payload["real_wear"]["faces"] == 3 and "file" not in json.dumps(payload["real_wear"])
    for name in payload["figures"].values():
        assert (tmp_path / "figures" / name).stat().st_size > 0
