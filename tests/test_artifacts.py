"""The committed artifacts: the checkpoint, its metrics, the shipped ONNX models and their manifest."""

import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.checks import TARGET_LAYERS, folder_inputs, heatmaps, run_split, split_inputs
from export.classifier import export_classifier
from export.face_detector import export_mtcnn
from masklens.files import sha256_of
from masklens.labels import CLASSES, REASONS
from masklens.predict import Predictor, rule_from_manifest, softmax
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.data import index_split
from training.evaluate import EvalConfig, evaluate

from .conftest import REPO, shared_data_or_skip

SHIPPED = json.loads((REPO / "results" / "shipped.json").read_text())["preset"]
CHECKPOINT = REPO / "models" / f"{SHIPPED}.pt"
MODELS = REPO / "models" / "onnx"
RESULTS = REPO / "results" / SHIPPED
# The face finder's second look: R-Net and O-Net fine-tuned on masked faces (masklens train-detector), when the
# export took them.
DETECTOR_WEIGHTS = json.loads((MODELS / "export-config.json").read_text()).get("second_look_weights", "")
# Every committed classifier checkpoint (git's, not whatever a release left in models/): only the shipped one; the
# others' recipes stay in training/config.py and scripts/release.sh rebuilds them.
COMMITTED = sorted(
    Path(name).stem
    for name in subprocess.run(
        ["git", "ls-files", "models/*.pt"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    if name != DETECTOR_WEIGHTS
)


def test_shipped_models_match_their_manifest():
    predictor = Predictor(MODELS, threads=1)  # refuses any file whose sha256 differs from the manifest
    manifest = predictor.manifest
    assert manifest["classes"] == list(CLASSES) and manifest["reasons"] == list(REASONS)
    assert manifest["model_version"] == sha256_of(CHECKPOINT)[:12]
    holdout = json.loads((RESULTS / "metrics-holdout.json").read_text())
    assert manifest["metrics"]["holdout"]["accuracy"] == holdout["accuracy"]
    assert holdout["checkpoint"]["sha256"] == sha256_of(CHECKPOINT)
    live = manifest["classifier"]["webcam"]
    assert live["against_full"]["within_bounds"] and live["against_full"]["images"] == holdout["images"]
    compression = json.loads((REPO / "results" / "compression.json").read_text())
    assert compression["chosen"] == manifest["classifier"]["weights"]
    assert compression["formats"][compression["chosen"]]["within_bounds"]
    assert compression["live_int8"] == {
        "quantization": live["quantization"],
        "against_full": live["against_full"],
        **({"student": {k: v for k, v in live["student"].items() if k != "config"}} if "student" in live else {}),
    }
    if "student" in live:  # the webcam mode's graphs from a student distilled from the shipped checkpoint
        student = live["student"]
        assert sha256_of(REPO / "models" / student["file"]) == student["sha256"]
        teacher = load_checkpoint(REPO / "models" / student["file"])["data"]["teacher"]
        assert teacher["sha256"] == sha256_of(CHECKPOINT)
        assert student["against_own_fp32"]["within_bounds"]


def test_the_shipped_files_fit_a_first_visit():
    """One compact network for both modes: every model file in the manifest together at most 40 MB, no
    tracked file over 50 MB (GitHub warns past it), and all tracked files together at most 150 MB (a clone)."""
    manifest = json.loads((MODELS / "manifest.json").read_text())
    assert sum(entry["bytes"] for entry in manifest["files"].values()) <= 40_000_000
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    sizes = {name: (REPO / name).stat().st_size for name in tracked.decode().split("\0") if (REPO / name).is_file()}
    assert max(sizes.values()) <= 50_000_000, max(sizes, key=sizes.get)
    assert sum(sizes.values()) <= 150_000_000, sorted(sizes, key=sizes.get)[-5:]


def test_the_shipped_face_finder_is_the_committed_detector_weights(tmp_path):
    """pnet/rnet/onet.onnx are the export of the wheel's weights, and rnet_masked/onet_masked.onnx (the second
    look) of the committed fine-tuning: a fresh export of the same weights gives the same outputs, and the
    manifest names the file."""
    weights = REPO / DETECTOR_WEIGHTS if DETECTOR_WEIGHTS else None
    description = export_mtcnn(tmp_path, second_look=weights)
    manifest = json.loads((MODELS / "manifest.json").read_text())
    assert manifest["face_detector"]["source"] == description["source"]
    assert manifest["face_detector"].get("second_look") == description.get("second_look")
    assert manifest["face_detector"]["nets"] == description["nets"]
    if weights is not None:
        assert (
            DETECTOR_WEIGHTS
            in subprocess.run(
                ["git", "ls-files", DETECTOR_WEIGHTS], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout
        )
    shapes = {"pnet": (1, 3, 40, 52), "rnet": (4, 3, 24, 24), "onet": (4, 3, 48, 48)}
    for net in description["nets"]:
        shape = shapes[net.removesuffix("_masked")]
        image = np.random.default_rng(len(net)).uniform(-1, 1, shape).astype(np.float32)
        outputs = list(description["nets"][net]["outputs"])
        fresh, shipped = (
            ort.InferenceSession(str(folder / f"{net}.onnx"), providers=["CPUExecutionProvider"]).run(
                outputs, {"image": image}
            )
            for folder in (tmp_path, MODELS)
        )
        for a, b, name in zip(fresh, shipped, outputs):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"{net}.{name}")


@pytest.mark.slow
@pytest.mark.parametrize("preset", COMMITTED)
def test_evaluation_reproduces_the_committed_holdout_metrics(tmp_path, preset):
    shared_data_or_skip("maskedface-net", "holdout")
    results = REPO / "results" / preset
    committed = json.loads((results / "metrics-holdout.json").read_text())
    config = EvalConfig(
        **{**committed["evaluation"], "checkpoint": str(REPO / "models" / f"{preset}.pt")},
        out_dir=str(tmp_path),
        figures=False,
    )
    evaluate(config)
    # Byte for byte on the machine that wrote them (tests/test_train.py evaluates twice); on another CPU,
    # oneDNN may pick other kernels (AVX2 vs AVX-512/AMX), which moves the last printed digit of a float.
    assert_same_json(json.loads((tmp_path / "metrics-holdout.json").read_text()), committed, atol=2e-6)


def assert_same_json(actual, expected, atol: float, where: str = "") -> None:
    """Equal JSON, except that floats may differ by atol; every count, name and order must match."""
    assert type(actual) is type(expected), where
    if isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_same_json(actual[key], expected[key], atol, f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_json(a, e, atol, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert abs(actual - expected) <= atol, (where, actual, expected)
    else:
        assert actual == expected, (where, actual, expected)


@pytest.mark.slow
def test_shipped_classifier_stays_within_bounds_of_fp32(tmp_path):
    """A sample of the holdout split and of real-wear/test here, against a fresh fp32 export of the shipped
    checkpoint, with export.fidelity's bounds; results/compression.json has every set, from masklens export."""
    from export.fidelity import agreement, failures

    model = model_from_checkpoint(load_checkpoint(CHECKPOINT))
    model.mirror_average = json.loads((MODELS / "manifest.json").read_text())["classifier"]["mirror_average"]
    p = model.preprocessing
    samples = index_split(shared_data_or_skip("maskedface-net"), "holdout").samples[::12]
    sets = {
        "holdout": split_inputs(samples, p),
        "real-wear/test": folder_inputs(shared_data_or_skip("real-wear", "test"), p, 120),
    }
    export_classifier(model, tmp_path / "fp32.onnx", TARGET_LAYERS, weights="fp32")
    for name, inputs in sets.items():
        reference = run_split(tmp_path / "fp32.onnx", inputs, threads=0)
        shipped = run_split(MODELS / "classifier.onnx", inputs, threads=0)
        classes = softmax(reference["logits"]).argmax(1)
        measured = agreement(
            softmax(reference["logits"]),
            softmax(shipped["logits"]),
            heatmaps(reference, classes, p.size),
            heatmaps(shipped, classes, p.size),
        )
        assert failures(name, measured) == []


def test_results_page_shows_the_committed_numbers(tmp_path):
    from studies.report import ReportConfig, render

    holdout = json.loads((RESULTS / "metrics-holdout.json").read_text())
    real = json.loads((RESULTS / "metrics-real-photos.json").read_text())
    text = render(
        ReportConfig(
            results_dir=str(REPO / "results"),
            template=str(REPO / "docs/templates/results.md.j2"),
            out=str(tmp_path / "results.md"),
        )
    )
    row = next(line for line in text.splitlines() if line.startswith(f"| `{SHIPPED}` | 160 px"))
    assert f"| {100 * holdout['accuracy']:.2f}% |" in row
    assert f"| {100 * holdout['reason_head']['accuracy']:.2f}% |" in row
    assert f"| {100 * real['mask_accuracy']:.2f}% |" in text
    assert f"{json.loads((REPO / 'results' / 'benchmark.json').read_text())['machine']['cpu']}" in text


def test_end_to_end_results_come_from_the_evaluated_checkpoints():
    """Each preset's end-to-end numbers come from the checkpoint its holdout metrics name (most checkpoints
    are no longer committed: their sha256 in the metrics is what ties the numbers together)."""
    for folder in sorted((REPO / "results").iterdir()):
        path, holdout = folder / "metrics-end-to-end.json", folder / "metrics-holdout.json"
        if path.exists() and holdout.exists():
            result = json.loads(path.read_text())
            assert result["model_version"] == json.loads(holdout.read_text())["checkpoint"]["sha256"][:12], folder.name
    assert COMMITTED == [SHIPPED]
    shipped = json.loads((RESULTS / "metrics-end-to-end.json").read_text())
    manifest = json.loads((MODELS / "manifest.json").read_text())
    # The face finder evaluated is the manifest's rule (its second look included).
    rule = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(rule_from_manifest(manifest)).items()}
    assert shipped["face_detector"] == {k: rule[k] for k in shipped["face_detector"]}
