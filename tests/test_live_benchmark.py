"""The live benchmark's bookkeeping (the timed runs themselves need Chromium and minutes: a benchmark,
not a test)."""

import json

import pytest

from masklens.machine import VECTOR_EXTENSIONS, cpu_vector_extensions
from studies.live_benchmark import benchmark, live_graph, median_of_rounds, summarise

from .conftest import REPO


def test_rounds_merge_into_medians_of_their_numbers():
    rounds = [
        {"frame_ms": 180.0, "threads": 2, "chromium": "156.0", "isolated": True, "classify_ms_per_face": None},
        {"frame_ms": 205.1, "threads": 2, "chromium": "156.0", "isolated": True, "classify_ms_per_face": None},
        {"frame_ms": 190.33, "threads": 2, "chromium": "156.0", "isolated": True, "classify_ms_per_face": None},
    ]
    merged = median_of_rounds(rounds)
    assert merged == {
        "frame_ms": 190.3,
        "threads": 2,
        "chromium": "156.0",
        "isolated": True,
        "classify_ms_per_face": None,
    }


def test_a_scene_reports_median_parts_that_add_up_and_the_median_of_its_paired_ratios():
    def measured(detect, classify, native_detect, native_classify):
        browser = {
            "detect_ms": detect,
            "faces_tracked": 4,
            "classify_ms_per_face": classify,
            "frame_ms": detect + 4 * classify,
        }
        native = {
            "detect_ms": native_detect,
            "faces_found": 4,
            "classify_ms_per_face": native_classify,
            "frame_ms": native_detect + 4 * native_classify,
        }
        return {
            "browser": browser,
            "native": native,
            "browser_over_native": round(browser["frame_ms"] / native["frame_ms"], 2),
        }

    # A slow round (both sides slower) and two quick ones: the paired ratios stay close.
    scene = summarise([measured(150, 100, 90, 25), measured(100, 60, 60, 15), measured(110, 70, 65, 17)])
    assert scene["browser"]["frame_ms"] == 110 + 4 * 70 and scene["native"]["frame_ms"] == 65 + 4 * 17
    assert scene["browser_over_native"] == 2.89  # the rounds' ratios: 2.89, 2.83, 2.93


def test_vector_extensions_are_named_from_the_known_ones():
    found = cpu_vector_extensions()
    assert set(found) <= set(VECTOR_EXTENSIONS.values())
    assert found == [name for name in VECTOR_EXTENSIONS.values() if name in found]  # in the table's order


def test_the_result_names_the_live_graph_that_ran():
    manifest = json.loads((REPO / "models" / "onnx" / "manifest.json").read_text())
    graph = live_graph(manifest)
    live = manifest["classifier"]["webcam"]
    assert graph["file"] == live["file"] and graph["sha256"] == manifest["files"][live["file"]]["sha256"]
    # A webcam graph of its own network (one network for both modes) names none; a student's names it.
    assert graph["student"] == (
        None
        if "student" not in live
        else {key: live["student"][key] for key in ("file", "depths", "widths") if key in live["student"]}
    )
    live["student"] = {"file": "student.pt", "depths": {"repeat_1": 1}, "widths": {"conv2d_2b": 32}, "sha256": "0"}
    assert live_graph(manifest)["student"] == {
        key: live["student"][key] for key in ("file", "depths", "widths") if key in live["student"]
    }
    del live["student"]
    assert live_graph(manifest)["student"] is None


def test_a_site_built_with_other_models_is_refused(tmp_path):
    """The browser runs the site's models and Python the --models ones: they must be the same export."""
    manifest = json.loads((REPO / "models" / "onnx" / "manifest.json").read_text())
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "site" / "app" / "models").mkdir(parents=True)
    (tmp_path / "site" / "app" / "models" / "manifest.json").write_text(
        json.dumps({**manifest, "model_version": "other"})
    )
    with pytest.raises(SystemExit, match="other models"):
        benchmark(tmp_path / "site", tmp_path / "models", tmp_path / "data", 1, 0, 1, 1)
