import json
import math
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from export.build import ExportConfig
from export.quantize import INT8_BOUNDS, STUDENT_BOUNDS, compare_with_full
from export.student import load_student
from masklens.labels import CLASSES, REASONS
from masklens.predict import ModelIntegrityError, PhotoError, Predictor, open_photo
from training.checkpoint import load_checkpoint

from .conftest import REPO, export_random_model, shared_data_or_skip


@pytest.fixture(scope="module")
def model_dir(exported_models):
    return exported_models


def test_manifest_describes_the_models(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["reasons"] == list(REASONS)
    classifier = manifest["classifier"]
    assert classifier["maps"] == {"block8": [3, 3], "repeat_2": [8, 8]}
    assert classifier["weights"] == "int8"
    assert classifier["preprocessing"]["size"] == 160
    session = ort.InferenceSession(str(model_dir / classifier["file"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [classifier["input"]["name"]]
    assert {o.name for o in session.get_outputs()} == set(classifier["outputs"])
    assert set(manifest["files"]) == {
        "classifier.onnx",
        "classifier-live-int8.onnx",
        "classifier-live.onnx",
        "classifier-gpu.onnx",
        "pnet.onnx",
        "rnet.onnx",
        "onet.onnx",
        "rnet_masked.onnx",
        "onet_masked.onnx",
    }
    second_look = manifest["face_detector"]["second_look"]
    assert second_look["nets"] == {"rnet": "rnet_masked", "onet": "onet_masked"}
    assert "mtcnn-masked.pt" in second_look["weights"]
    live = classifier["webcam"]
    assert live["file"] == "classifier-live-int8.onnx" and "weights_file" not in live
    assert live["target_layers"] == ["block8"] and live["maps"] == {"block8": [3, 3]}
    assert live["quantization"]["calibration_images"] == 12 and live["quantization"]["calibration_split"] == "train"
    assert live["against_full"]["split"] == "holdout" and live["against_full"]["images"] == 12
    assert live["gpu"]["file"] == "classifier-live.onnx" and live["gpu"]["weights_file"] == "classifier.onnx"
    assert live["gpu"]["max_difference_from_full"] <= 1e-4
    gpu = classifier["gpu"]
    assert gpu["file"] == "classifier-gpu.onnx" and gpu["weights_file"] == "classifier.onnx"
    assert gpu["max_difference_from_full"] <= 1e-4
    assert len(manifest["drawing"]["colormap"]) == 256
    assert manifest["drawing"]["colormap"][0] == "#000080" and manifest["drawing"]["colormap"][255] == "#800000"
    assert manifest["face_crop"]["framing"]["side"] > 1


def test_live_gpu_classifier_reads_the_full_graphs_weights_and_gives_its_outputs(model_dir):
    """The webcam mode's fp32 graph (WebGPU's) stores no weights of its own (they are read from
    classifier.onnx), and its outputs are the full graph's, faster."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    live = manifest["classifier"]["webcam"]["gpu"]
    assert manifest["files"][live["file"]]["bytes"] < manifest["files"]["classifier.onnx"]["bytes"] / 20
    proto = onnx.load(str(model_dir / live["file"]), load_external_data=False)
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and {e.value for t in external for e in t.external_data if e.key == "location"} == {
        "classifier.onnx"
    }
    full, other = (
        ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])
        for name in ("classifier.onnx", live["file"])
    )
    images = np.random.default_rng(1).normal(0, 1, (2, 3, 160, 160)).astype(np.float32)
    expected = dict(zip([o.name for o in full.get_outputs()], full.run(None, {"image": images})))
    for output, value in zip(other.get_outputs(), other.run(None, {"image": images})):
        np.testing.assert_allclose(value, expected[output.name], atol=1e-4, err_msg=output.name)


def test_live_classifier_is_int8_and_close_to_the_full_graph(model_dir):
    """The webcam mode's CPU graph has uint8 weights and inputs for its convolutions, no weights read from
    elsewhere, and on random crops gives the full graph's probabilities within the bound the export checks
    (its heatmaps are held to theirs by the export, on a trained model: tests/test_artifacts.py)."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    live = manifest["classifier"]["webcam"]
    proto = onnx.load(str(model_dir / live["file"]))
    assert not [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    stored = {t.name: t for t in proto.graph.initializer}
    decoded_from = {n.output[0]: n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    convolutions = [node for node in proto.graph.node if node.op_type == "Conv"]
    # Input and weights of every convolution are decoded from uint8 (the input by a QuantizeLinear before it).
    assert convolutions and all(
        node.input[0] in decoded_from and node.input[1] in decoded_from for node in convolutions
    )
    assert all(stored[decoded_from[node.input[1]]].data_type == onnx.TensorProto.UINT8 for node in convolutions)
    predictor = Predictor(model_dir, threads=1)
    crops = np.random.default_rng(1).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    for (p, rp, maps), (live_p, live_rp, live_maps) in zip(
        predictor.predict_crops(crops), predictor.predict_crops(crops, live=True)
    ):
        np.testing.assert_allclose(live_p, p, atol=INT8_BOUNDS["max_probability_difference"])
        np.testing.assert_allclose(live_rp, rp, atol=INT8_BOUNDS["max_probability_difference"])
        assert list(live_maps) == ["block8"] and live_maps["block8"].shape == maps["block8"].shape


def test_the_int8_check_holds_the_live_graph_to_its_bounds():
    """compare_with_full: equal outputs are within bounds; other classes for 1% of the images, or heatmaps
    changed by more than 0.05 on more than 1% of them, are not."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (200, 3)).astype(np.float32)
    full = {
        "logits": logits,
        "block8_activations": rng.uniform(0, 1, (200, 8, 3, 3)).astype(np.float32),
        "block8_weights": rng.normal(0, 1, (200, 3, 8)).astype(np.float32),
    }
    labels = logits.argmax(1)
    same = compare_with_full(full, {k: v.copy() for k, v in full.items()}, labels, 16)
    assert same["within_bounds"] and same["same_class"] == 1.0 and same["accuracy"] == same["accuracy_full"] == 1.0
    assert same["max_probability_difference"] == 0 and same["max_heatmap_difference"] == {"block8": 0.0}
    flipped = {**full, "logits": logits.copy()}
    flipped["logits"][:2] = -flipped["logits"][:2]
    report = compare_with_full(full, flipped, labels, 16)
    assert report["same_class"] == 0.99 and not report["within_bounds"]
    moved = {**full, "block8_activations": full["block8_activations"].copy()}
    moved["block8_activations"][:3] = full["block8_activations"][:3, :, ::-1, ::-1]  # the map turned upside down
    report = compare_with_full(full, moved, labels, 16)
    assert report["same_class"] == 1.0 and report["p99_heatmap_difference"]["block8"] > 0.05
    assert not report["within_bounds"]


def test_a_students_check_bounds_agreement_and_accuracy_only():
    """STUDENT_BOUNDS: another network's probabilities may differ widely, its class on 1 image in 100 and its
    accuracy by half a point may not."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (200, 3)).astype(np.float32)
    full = {
        "logits": logits,
        "block8_activations": rng.uniform(0, 1, (200, 8, 3, 3)).astype(np.float32),
        "block8_weights": rng.normal(0, 1, (200, 3, 8)).astype(np.float32),
    }
    labels = logits.argmax(1)
    softer = {**full, "logits": logits / 4, "block8_activations": full["block8_activations"][:, :, ::-1]}
    report = compare_with_full(full, softer, labels, 16, STUDENT_BOUNDS)
    assert report["max_probability_difference"] > 0.1 and report["within_bounds"]
    flipped = {**full, "logits": logits.copy()}
    flipped["logits"][:2] = -flipped["logits"][:2]
    report = compare_with_full(full, flipped, labels, 16, STUDENT_BOUNDS)
    assert report["same_class"] == 0.99 and report["accuracy_full"] - report["accuracy"] == pytest.approx(0.01)
    assert not report["within_bounds"]


@pytest.mark.slow
def test_export_with_a_distilled_student_for_the_webcam_mode(tmp_path):
    """With live_checkpoint, the webcam mode's graphs are the student's: its int8 graph for the CPU and an
    fp16-weight graph of its own for the GPU (no weights read from classifier.onnx), both giving the
    student's outputs; the manifest names the student, and the predictor's live step runs it."""
    out = export_random_model(tmp_path, student_depths=(1, 1, 1), student_widths=(32, 40, 96, 96, 128))
    manifest = json.loads((out / "manifest.json").read_text())
    live = manifest["classifier"]["webcam"]
    student = live["student"]
    assert student["depths"] == {"repeat_1": 1, "repeat_2": 1, "repeat_3": 1}
    assert student["config"]["depths"] == [1, 1, 1]
    assert student["widths"] == {"conv2d_2b": 32, "conv2d_3b": 40, "conv2d_4a": 96, "mixed_6a": 96, "mixed_7a": 128}
    assert student["against_own_fp32"]["images"] == live["against_full"]["images"] == 12
    assert live["against_full"]["bounds"] == STUDENT_BOUNDS
    gpu = live["gpu"]
    assert gpu["file"] == "classifier-live.onnx" and "weights_file" not in gpu and gpu["weights"] == "fp16"
    assert gpu["max_difference_from_fp32"] < 0.05
    proto = onnx.load(str(out / gpu["file"]), load_external_data=False)
    assert not [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert len([n for n in proto.graph.node if n.op_type == "Conv"]) < 60  # the full trunk has over 100
    predictor = Predictor(out, threads=1)
    crops = np.random.default_rng(1).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    for probabilities, _, maps in predictor.predict_crops(crops, live=True):
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5) and list(maps) == ["block8"]
    student_file = str(tmp_path / "student.pt")  # its own teacher it is not
    with pytest.raises(SystemExit, match="not distilled from"):
        load_student(ExportConfig(checkpoint=student_file, live_checkpoint=student_file), load_checkpoint(student_file))


def test_gpu_classifier_needs_no_max_pool_indices_and_gives_the_full_graphs_outputs(model_dir):
    """classifier-gpu.onnx, for onnxruntime's WebGPU backend (no MaxPool indices there): every MaxPool has one
    output, the weights are read from classifier.onnx, and onnxruntime gives the full graph's outputs."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    gpu = manifest["classifier"]["gpu"]
    proto = onnx.load(str(model_dir / gpu["file"]), load_external_data=False)
    pools = [node for node in proto.graph.node if node.op_type == "MaxPool"]
    assert pools and all(len([name for name in node.output if name]) == 1 for node in pools)
    assert manifest["files"][gpu["file"]]["bytes"] < manifest["files"]["classifier.onnx"]["bytes"] / 20
    images = np.random.default_rng(2).normal(0, 1, (2, 3, 160, 160)).astype(np.float32)
    full, other = (
        ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])
        for name in ("classifier.onnx", gpu["file"])
    )
    expected = dict(zip([o.name for o in full.get_outputs()], full.run(None, {"image": images})))
    for output, value in zip(other.get_outputs(), other.run(None, {"image": images})):
        np.testing.assert_allclose(value, expected[output.name], atol=1e-4, err_msg=output.name)


def test_predicts_faces_in_a_real_photo(model_dir, tmp_path):
    photo = next(iter(sorted(shared_data_or_skip("real-photos", "test", "without_mask").iterdir())))
    predictor = Predictor(model_dir, threads=1)
    faces = predictor.predict_photo(open_photo(photo, 1280, 100_000_000))
    assert faces
    for face in faces:
        record = predictor.describe(face)
        assert record["class"] in CLASSES
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert np.asarray(record["heatmaps"]["repeat_2"]).shape == (3, 8, 8)
        assert np.asarray(record["heatmaps"]["block8"]).shape == (3, 3, 3)
        x1, y1, x2, y2 = record["box"]
        assert x2 > x1 and y2 > y1 and len(record["landmarks"]) == 5
        for overlay in predictor.overlays(face).values():
            assert overlay.shape == (160, 160, 3) and overlay.dtype == np.uint8


def test_whole_image_mode_skips_the_detector(model_dir):
    predictor = Predictor(model_dir, threads=1)
    grey = np.full((90, 70, 3), 128, np.uint8)
    assert predictor.predict_photo(grey) == []
    (face,) = predictor.predict_photo(grey, whole_image=True)
    assert face.box == [0.0, 0.0, 70.0, 90.0]


def _bad_files(folder, good_jpeg: bytes):
    (folder / "renamed.jpg").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (folder / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (8000, 6250), (120, 120, 120)).save(folder / "huge.jpg", quality=50)
    Image.new("RGB", (300, 200), (90, 90, 90)).save(folder / "no_face.png")


def test_cli_over_a_folder_of_good_and_bad_files(model_dir, tmp_path):
    photo = next(iter(sorted(shared_data_or_skip("real-photos", "test", "without_mask").iterdir())))
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo, folder / "good.jpg")
    _bad_files(folder, photo.read_bytes())
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "masklens",
        "predict",
        str(folder),
        "--models",
        str(model_dir),
        "--out",
        str(out),
        "--overlays",
        str(tmp_path / "overlays"),
        "--threads",
        "1",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    records = {json.loads(line)["file"].rsplit("/", 1)[-1]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(records) == {"good.jpg", "renamed.jpg", "truncated.jpg", "empty.jpg", "huge.jpg", "no_face.png"}
    assert records["good.jpg"]["ok"] and records["good.jpg"]["faces"]
    assert "not an image" in records["renamed.jpg"]["error"]
    assert "truncated or corrupt" in records["truncated.jpg"]["error"]
    assert "empty file" in records["empty.jpg"]["error"]
    # 50 megapixels are decoded at a reduced scale, then searched: a blank photo has no face.
    assert "no face found" in records["huge.jpg"]["error"]
    assert "no face found" in records["no_face.png"]["error"]
    assert list((tmp_path / "overlays").glob("good-face0-*.png"))
    assert "renamed.jpg: not an image" in result.stderr


def test_huge_photo_is_scaled_down_on_decode(tmp_path):
    Image.new("RGB", (8000, 6250), (10, 200, 30)).save(tmp_path / "huge.jpg", quality=50)
    rgb = open_photo(tmp_path / "huge.jpg", 1280, 100_000_000)
    assert max(rgb.shape[:2]) == 1280
    with pytest.raises(PhotoError, match="too large"):
        open_photo(tmp_path / "huge.jpg", 1280, 10_000_000)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]  # a download or copy cut off half way


def altered(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])  # same size, one byte changed: only the sha256 tells


@pytest.mark.parametrize("damage", [truncated, altered])
def test_a_model_file_that_differs_from_the_manifest_is_refused(model_dir, tmp_path, damage):
    broken = tmp_path / "models"
    shutil.copytree(model_dir, broken)
    data = (broken / "classifier.onnx").read_bytes()
    (broken / "classifier.onnx").write_bytes(damage(data))
    with pytest.raises(ModelIntegrityError, match=r"classifier\.onnx"):
        Predictor(broken)
    result = subprocess.run(
        [sys.executable, "-m", "masklens", "predict", str(tmp_path), "--models", str(broken)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "classifier.onnx does not match the manifest" in result.stderr


def measured_numbers(tree, path=""):
    """(path, number) for every number in a benchmark report (booleans aside)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from measured_numbers(value, f"{path}/{key}")
    elif isinstance(tree, list):
        for k, value in enumerate(tree):
            yield from measured_numbers(value, f"{path}/{k}")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


def assert_positive_and_finite(report: dict) -> None:
    bad = [(path, n) for path, n in measured_numbers(report) if not (math.isfinite(n) and n > 0)]
    assert not bad, bad


def test_benchmark_writes_its_report(model_dir, tmp_path):
    from studies.benchmark import GOALS, BenchmarkConfig, benchmark

    photos = shared_data_or_skip("real-photos", "test", "without_mask")
    result = benchmark(
        BenchmarkConfig(
            models=str(model_dir),
            photos=str(photos),
            photo_count=1,
            repeats=1,
            checkpoint=str(model_dir.parent / "model.pt"),  # the export's own checkpoint (conftest)
            folder_sizes=(2, 3),
            video_minutes=0.05,  # 3 frames
            train_steps=0,  # tests/test_browser.py's benchmark run trains
            out=str(tmp_path / "benchmark.json"),
            site="",  # tests/test_browser.py measures the visits of a built site
        )
    )
    assert json.loads((tmp_path / "benchmark.json").read_text()) == result
    for timings in result["threads"].values():
        assert timings["photos"] == 1 and timings["classifier_per_face"]["median_ms"] > 0
    assert result["classifier_weights"] == "int8" and result["files"]["classifier.onnx"] > 0
    assert result["goals"] == GOALS
    classifier = result["classifier"]
    assert classifier["graph"] == "classifier.onnx" and set(classifier["threads"]) == {"1", "2"}
    for measured in classifier["threads"].values():
        assert set(measured) == {"torch_eager", "onnxruntime", "peak_gflops", "floor_ms", "onnxruntime_over_floor"}
        assert measured["onnxruntime_over_floor"] == pytest.approx(
            measured["onnxruntime"]["median_ms"] / measured["floor_ms"]
        )
    memory = result["memory"]
    assert {k: v["photos"] for k, v in memory["cli_photos"].items()} == {"2": 2, "3": 3}
    assert memory["cli_video"]["frames"] == 3
    assert "training" not in result and "browser_classifier" not in result
    assert_positive_and_finite(result)


def test_gallery_figures_and_description(model_dir, tmp_path):
    from studies.gallery import GalleryConfig, gallery

    root = shared_data_or_skip("maskedface-net")
    mistake = sorted((root / "holdout" / "covered").iterdir())[0]
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "most_confident_mistakes": [
                    {
                        "file": f"holdout/covered/{mistake.name}",
                        "true": "covered",
                        "predicted": "uncovered",
                        "confidence": 0.9,
                    }
                ]
            }
        )
    )
    payload = gallery(
        GalleryConfig(
            models=str(model_dir),
            data_root=str(root),
            metrics=str(metrics),
            out_dir=str(tmp_path / "out"),
            per_group=1,
            mistakes=1,
        )
    )
    assert list(payload["groups"]) == [
        "covered",
        "incorrect-nose",
        "incorrect-chin",
        "incorrect-nose_and_mouth",
        "uncovered",
    ]
    entries = [e for group in payload["groups"].values() for e in group] + payload["mistakes"]
    assert len(entries) == 6 and payload["mistakes"][0]["file"] == mistake.name
    for entry in entries:
        assert (tmp_path / "out" / "figures" / entry["image"]).stat().st_size > 5000
    assert json.loads((tmp_path / "out" / "gallery.json").read_text()) == payload


def test_face_finder_padding_and_fallback_find_a_face_that_fills_the_photo(model_dir):
    from masklens.face_finder import SHIPPED_RULE, DetectionRule

    photo = open_photo(sorted(shared_data_or_skip("real-photos", "test", "without_mask").iterdir())[0], 1280, 10**8)
    predictor = Predictor(model_dir, threads=1)
    box = predictor.predict_photo(photo)[0].box
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    tight = np.ascontiguousarray(photo[max(y1, 0) : y2, max(x1, 0) : x2])  # nothing but the face
    detector = SHIPPED_RULE.detector(model_dir)
    padded = DetectionRule(padding=SHIPPED_RULE.padding).find(detector, tight)
    fallback = DetectionRule(fallback_threshold=0.0).find(detector, tight)
    assert padded or fallback
    for face in padded + fallback:  # boxes are in the tight photo's pixels, around its middle
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        assert abs(cx - tight.shape[1] / 2) < tight.shape[1] / 4 and abs(cy - tight.shape[0] / 2) < tight.shape[0] / 4
    assert DetectionRule(fallback_threshold=1.0).find(detector, np.full((90, 70, 3), 128, np.uint8)) == []


def test_end_to_end_evaluation_counts_what_the_predictor_says(model_dir, tmp_path):
    from masklens.framing import face_size
    from studies.real_eval import RealEvalConfig, evaluate_real
    from studies.real_wear import wilson_interval

    from .conftest import make_real_tree

    data = make_real_tree(tmp_path / "data")
    sources = shared_data_or_skip("real-photos", "test")
    for folder in ("with_mask", "without_mask"):  # real faces beside the generated (faceless) pictures
        for photo in sorted((sources / folder).iterdir())[:2]:
            shutil.copy(photo, data / "real-photos" / "test" / folder / photo.name)
    result = evaluate_real(RealEvalConfig(models=str(model_dir), data=str(data), per_class=2, threads=1))
    predictor = Predictor(model_dir, threads=1)
    for folder, has_mask in (("with_mask", True), ("without_mask", False)):
        files = sorted((data / "real-photos" / "test" / folder).iterdir())
        answers = [predictor.predict_photo(open_photo(f, 1280, 10**8)) for f in files]
        found = [max(a, key=lambda face: face_size(face.box)) for a in answers if a]
        right = sum((CLASSES[int(face.probabilities.argmax())] != "uncovered") == has_mask for face in found)
        summary = result["real-photos"][folder]
        assert (summary["photos"], summary["found"], summary["right"]) == (len(files), len(found), right)
        assert summary["accuracy_of_found_interval"] == wilson_interval(right, len(found))
        assert sum(summary["classes"].values()) == summary["found"]  # the folder's confusion row
    assert set(result["real-masks"]) == {"cloth", "n95"}
    for kind in result["real-masks"].values():
        assert kind["masked_rate_interval"] == wilson_interval(kind["masked"], kind["found"])
        assert sum(kind["classes"].values()) == kind["found"]
    frames = result["real-video-frames"]["whole_image"]
    assert sum(map(sum, frames["confusion"])) == 6  # whole-image mode answers for every frame
    for c, (lo, hi) in frames["recall_interval"].items():
        assert lo <= frames["recall"][c] <= hi
