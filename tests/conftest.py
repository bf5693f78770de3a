import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Distinct colour layouts per class, so a network can really learn them from a dozen images.
_CLASS_COLOURS = {"covered": (40, 90, 200), "incorrect": (200, 60, 40), "uncovered": (60, 180, 70)}
_INCORRECT_SUFFIXES = ("_Mask_Mouth_Chin", "_Mask_Nose_Mouth", "_Mask_Chin")


def shared_data_or_skip(*parts: str) -> Path:
    """The path under ../shared/data; skips when absent, fails under CI=true (CI must have the data)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared data is missing: {path}")
        pytest.skip(f"shared data not available: {path}")
    return path


def skip_or_fail(reason: str):
    """Skips for a missing tool or package, except under CI=true (CI installs everything), where it fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def site_builder():
    """scripts/build_site.py as a module (build, build_app); skips (fails under CI=true) without
    site/node_modules."""
    if not (REPO / "site" / "node_modules" / "onnxruntime-web").exists():
        skip_or_fail("site/node_modules is missing (run npm ci in site/)")
    spec = importlib.util.spec_from_file_location("build_site", REPO / "scripts" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright, one per test module; skips (fails under CI=true) without them."""
    from studies.chromium import CHROMIUM, CHROMIUM_ARGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed")
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: keeps the suite light beside other jobs and makes torch's
    float sums reproducible."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory):
    """One full export for the session, through masklens export's build(): an int8 classifier on
    random weights, its int8 live graph calibrated and measured on a generated tree (not held to the
    export's bounds: an untrained model's heatmaps are flat), MTCNN with the committed second look
    (models/mtcnn-masked.pt) and the manifest."""
    return export_random_model(tmp_path_factory.mktemp("export"))


def export_random_model(
    work: Path, student_depths: tuple[int, int, int] | None = None, student_widths: tuple[int, ...] | None = None
) -> Path:
    """``exported_models``' export into ``work``/models; with ``student_depths``, the webcam mode's graphs
    come from a student of those depths (and ``student_widths``) that starts from the model's first blocks
    and channels of largest scale (``live_checkpoint``)."""
    import json

    import torch

    from export.build import ExportConfig, build
    from masklens.files import sha256_of
    from masklens.labels import CLASSES
    from training.checkpoint import checkpoint_payload
    from training.config import TrainConfig
    from training.model import (
        FACENET_NORMALIZATION,
        Depths,
        Preprocessing,
        Widths,
        build_model,
        state_for_depths,
        state_for_widths,
    )

    torch.manual_seed(0)
    model = build_model(Preprocessing(160, **FACENET_NORMALIZATION)).eval()
    checkpoint = work / "model.pt"
    torch.save(checkpoint_payload(model, TrainConfig(), {"train": {"images": 0}}, [], 0, torch.float16), checkpoint)
    student = ""
    if student_depths is not None:
        shallow = build_model(
            model.preprocessing, depths=Depths(*student_depths), widths=Widths(*(student_widths or ()))
        ).eval()
        shallow.load_state_dict(state_for_widths(state_for_depths(model.state_dict(), shallow.depths), shallow.widths))
        student = str(work / "student.pt")
        data = {"train": {"images": 0}, "teacher": {"file": str(checkpoint), "sha256": sha256_of(checkpoint)}}
        torch.save(
            checkpoint_payload(
                shallow,
                TrainConfig(depths=student_depths, widths=dataclasses.astuple(shallow.widths)),
                data,
                [],
                0,
                torch.float16,
            ),
            student,
        )
    metrics = work / "metrics.json"
    metrics.write_text(
        json.dumps(
            {"images": 3, "accuracy": 1 / 3, "reason_head": None, "per_class": {c: {"recall": 1.0} for c in CLASSES}}
        )
    )
    out = work / "models"
    build(
        ExportConfig(
            checkpoint=str(checkpoint),
            out_dir=str(out),
            weights="int8",
            data_root=str(make_tree(work / "data")),
            check_live_int8=False,
            check_weights=False,
            real_sets=(),
            compression_report=str(work / "compression.json"),
            framing=str(REPO / "results" / "framing.json"),
            metrics=str(metrics),
            threads=1,
            live_checkpoint=student,
            second_look_weights=str(REPO / "models" / "mtcnn-masked.pt"),
        )
    )
    return out


def make_real_tree(root: Path) -> Path:
    """Tiny generated stand-ins for the real sets under one root, laid out as ../shared/data."""
    for folder, look in (
        ("real-photos/test/with_mask", "covered"),
        ("real-photos/test/without_mask", "uncovered"),
        ("real-masks/test/cloth", "covered"),
        ("real-masks/test/n95", "incorrect"),
        ("real-video-frames/covered", "covered"),
        ("real-video-frames/incorrect", "incorrect"),
        ("real-video-frames/uncovered", "uncovered"),
        ("real-wear/test/covered", "covered"),
        ("real-wear/test/incorrect", "incorrect"),
        ("real-wear/test/uncovered", "uncovered"),
        ("real-wear/test-scenes", "uncovered"),
        ("mask-templates/textures/check", "covered"),
    ):
        for i in range(2):
            make_image(root / folder / f"{i}.jpg", look, 100 + i, size=64)
    scenes = [{"image": f"{i}.jpg", "faces": [{"box": [8.0, 8.0, 56.0, 56.0], "label": "uncovered"}]} for i in range(2)]
    (root / "real-wear" / "test-scenes" / "boxes.json").write_text(json.dumps(scenes))
    return root


@pytest.fixture(scope="session")
def results(tmp_path_factory, exported_models) -> Path:
    """A tiny but real results folder for the write-up: a one-epoch run on a generated tree, evaluated like
    the real ones (holdout with figures, a real-photos-style mask folder, end to end through an export on
    generated real-set stand-ins, the face finder study), plus results/framing.json."""
    import shutil

    from masklens.files import write_json
    from studies.detection_study import RULES, study
    from studies.real_eval import RealEvalConfig, evaluate_real
    from training.config import TrainConfig
    from training.evaluate import EvalConfig, evaluate
    from training.train import train

    root = tmp_path_factory.mktemp("docs-results")
    data = make_tree(root / "data", per_class=3)
    for label, look in (("with_mask", "covered"), ("without_mask", "uncovered")):
        for i in range(3):
            make_image(root / "photos" / label / f"{i}.jpg", look, 100 + i)
    real = make_real_tree(root / "real")
    model = train(
        TrainConfig(
            data_root=str(data),
            out_dir=str(root / "run"),
            epochs=1,
            image_size=80,
            batch_size=9,
            num_workers=0,
            validate=False,
            channels_last=False,
        )
    )
    out = root / "results"
    evaluate(EvalConfig(checkpoint=str(model), data_root=str(data), split="holdout", out_dir=str(out / "default")))
    evaluate(
        EvalConfig(
            checkpoint=str(model), mask_folder=str(root / "photos"), name="real-photos", out_dir=str(out / "default")
        )
    )
    shutil.copy(root / "run" / "history.json", out / "default" / "history.json")
    write_json(
        out / "default" / "metrics-end-to-end.json",
        evaluate_real(RealEvalConfig(models=str(exported_models), data=str(real), per_class=2, threads=1)),
    )
    write_json(out / "detection.json", study(real, exported_models, {k: RULES[k] for k in list(RULES)[:2]}, threads=1))
    shutil.copy(REPO / "results" / "framing.json", out / "framing.json")
    return out


@pytest.fixture
def shared_data():
    return shared_data_or_skip()


def make_image(path: Path, class_name: str, seed: int, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, size=(size, size, 3)).astype(np.int16)
    colour = np.array(_CLASS_COLOURS[class_name], dtype=np.int16)
    if class_name == "covered":
        pixels[size // 2 :] += colour
    elif class_name == "incorrect":
        pixels[: size // 3] += colour
    else:
        pixels[:, : size // 2] += colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)


def make_tree(root: Path, per_class: int = 4, splits=("train", "validation", "holdout")) -> Path:
    """A tiny MaskedFace-Net-style tree with reason suffixes on the incorrect images."""
    seed = 0
    for split in splits:
        for class_name in _CLASS_COLOURS:
            for i in range(per_class):
                seed += 1
                stem = f"{seed:05d}"
                if class_name == "covered":
                    stem += "_Mask"
                elif class_name == "incorrect":
                    stem += _INCORRECT_SUFFIXES[i % 3]
                make_image(root / split / class_name / f"{stem}.jpg", class_name, seed)
    return root


@pytest.fixture
def tiny_tree(tmp_path):
    return make_tree(tmp_path / "data")


def iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_same_faces(js_faces: list[dict], faces, predictor) -> None:
    """The browser modules' faces against the Python predictor's: same boxes, classes and reasons,
    probabilities within 1e-3, coarse heatmaps within 0.02. Heatmaps come as nested lists or as
    ``{"dims", "data"}``."""
    assert faces and len(js_faces) == len(faces)
    for face, js in zip(faces, js_faces):
        record = predictor.describe(face)
        assert iou(js["box"], face.box) >= 0.99
        assert js["class"] == record["class"] and js["reason"] == record["reason"]
        assert js["cant_tell"] == record["cant_tell"]
        for name, p in zip(predictor.classes, face.probabilities):
            assert js["probabilities"][name] == pytest.approx(float(p), abs=1e-3)
        for name, p in zip(predictor.reasons, face.reason_probabilities):
            assert js["reason_probabilities"][name] == pytest.approx(float(p), abs=1e-3)
        for layer, maps in face.coarse_maps.items():
            heat = js["heatmaps"][layer]
            if isinstance(heat, dict):
                assert heat["dims"] == list(maps.shape)
                heat = heat["data"]
            assert np.abs(np.asarray(heat).reshape(maps.shape) - maps).max() <= 0.02, layer
