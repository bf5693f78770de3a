"""The browser's modules (site/js) against the Python reference, on the same inputs.

Each test writes a request, runs ``node site/tests/driver.mjs`` on it and compares the answer with
what export/ computes: Pillow-bilinear resizes, thumbnails and face crops; Grad-CAM maths and the
rest of the pure functions; the MTCNN cascade and the whole photo analysis with onnxruntime-web
(wasm, in Node) running the exported ONNX files.

Skipped when ``node`` or ``site/node_modules`` (``npm ci`` in site/) is missing, except under
CI=true, where that fails. The models are the session's one export (``exported_models`` in conftest).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masklens.face_finder import SHIPPED_RULE, DetectionRule
from masklens.framing import Framing, crop_box_for_face, crop_face
from masklens.gradcam import gradcam_from_outputs, overlay_heatmap, upsample_cam
from masklens.predict import Predictor, normalize_crops, open_photo, rule_from_manifest, softmax
from masklens.tracking import Tracker, TrackingRule
from masklens.y4m import compose

from .conftest import REPO, assert_same_faces, iou, shared_data_or_skip


@pytest.fixture(scope="module")
def model_dir(exported_models):
    _node()
    shared_data_or_skip("real-photos", "test")
    return exported_models


SITE = REPO / "site"
DRIVER = SITE / "tests" / "driver.mjs"


def _node() -> str:
    """The node executable; skips (fails under CI=true) without it or without site/node_modules."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH"
    elif not (SITE / "node_modules" / "onnxruntime-web").exists():
        missing = "site/node_modules is missing (run npm ci in site/)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    return node


def run_driver(request: dict, folder: Path, timeout: int = 120):
    node = _node()
    folder.mkdir(parents=True, exist_ok=True)
    request_path, response_path = folder / "request.json", folder / "response.json"
    request_path.write_text(json.dumps(request))
    result = subprocess.run(
        [node, str(DRIVER), str(request_path), str(response_path)],
        cwd=SITE,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(response_path.read_text())["result"]


def encode_image(rgb: np.ndarray) -> dict:
    return {
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "data": base64.b64encode(np.ascontiguousarray(rgb, np.uint8).tobytes()).decode(),
    }


def decode_image(image: dict) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(image["data"]), np.uint8)
    return data.reshape(image["height"], image["width"], -1)


def encode_floats(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()


def decode_floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4")


def real_photos(count_per_class: dict[str, int]) -> list[np.ndarray]:
    """The first photos of each class in the real-photos test split, decoded as the predictor does."""
    photos = []
    for name, count in count_per_class.items():
        folder = shared_data_or_skip("real-photos", "test", name)
        for path in sorted(folder.iterdir())[:count]:
            photos.append(open_photo(path, 1280, 100_000_000))
    return photos


# --- (a) Pillow resampling and face crops ----------------------------------------------------------


def test_resize_thumbnail_and_crops_match_pillow(tmp_path):
    rng = np.random.default_rng(0)
    framing = Framing(center_dx=-0.0005, center_dy=-0.0658, side=1.5864)
    calls, expected = [], []
    # Up, down, mixed; a height shrinking more than twice the width's (Pillow then runs the vertical
    # pass first); an unchanged size; degenerate 1-pixel sides.
    for (w, h), (ow, oh) in [
        ((37, 23), (160, 160)),
        ((300, 200), (160, 160)),
        ((161, 97), (80, 120)),
        ((64, 300), (60, 40)),
        ((5, 7), (3, 2)),
        ((50, 50), (50, 50)),
        ((1, 9), (4, 1)),
    ]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        calls.append({"fn": "resize", "args": {"image": encode_image(rgb), "width": ow, "height": oh}})
        expected.append(np.asarray(Image.fromarray(rgb).resize((ow, oh), Image.Resampling.BILINEAR)))
    # Pillow's thumbnail reduces by whole factors first when shrinking 4x or more (reducing_gap 2).
    for (w, h), side in [((900, 500), 100), ((333, 777), 50), ((1000, 300), 90), ((120, 80), 100), ((70, 40), 160)]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        calls.append({"fn": "thumbnail", "args": {"image": encode_image(rgb), "max_side": side}})
        image = Image.fromarray(rgb)
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
        expected.append(np.asarray(image))
    crop_boxes = []
    for w, h, box in [
        (120, 90, (30.3, 20.7, 70.2, 66.1)),
        (64, 64, (-10.5, 40.25, 30.0, 90.0)),
        (300, 200, (100.0, 50.0, 260.0, 190.0)),
        (40, 50, (12.0, 15.0, 14.0, 17.5)),
    ]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        box = np.asarray(box, np.float32)  # detector boxes are float32
        calls.append(
            {
                "fn": "crop_face",
                "args": {"image": encode_image(rgb), "box": box.tolist(), "framing": asdict(framing), "size": 160},
            }
        )
        expected.append(crop_face(rgb, box, framing, 160))
        crop_boxes.append([float(v) for v in crop_box_for_face(box, framing)])
    results = run_driver({"op": "calls", "calls": calls}, tmp_path)
    differences = []
    for call, result, reference in zip(calls, results, expected):
        image = decode_image(result["crop"] if call["fn"] == "crop_face" else result)
        assert image.shape == reference.shape, call["fn"]
        differences.append(int(np.abs(image.astype(int) - reference).max()))
    assert max(differences) <= 1, differences
    js_boxes = [r["crop_box"] for c, r in zip(calls, results) if c["fn"] == "crop_face"]
    np.testing.assert_array_equal(np.asarray(js_boxes), np.asarray(crop_boxes))


# --- (b) Grad-CAM and the other pure maths ----------------------------------------------------------


def test_gradcam_softmax_normalisation_and_overlay_match_python(tmp_path):
    rng = np.random.default_rng(1)
    calls, expected = [], []
    for n, c, h, w, size in [(2, 64, 5, 5, (160, 160)), (1, 300, 3, 3, (37, 23)), (3, 16, 8, 8, (8, 8))]:
        activations = np.maximum(rng.normal(size=(n, c, h, w)), 0).astype(np.float32)
        weights = rng.normal(size=(n, 3, c)).astype(np.float32)
        for k in range(3):
            coarse = gradcam_from_outputs(activations, weights, k)
            calls.append(
                {
                    "fn": "gradcam",
                    "args": {
                        "activations": encode_floats(activations),
                        "weights": encode_floats(weights),
                        "dims": [n, c, h, w],
                        "class_index": k,
                        "size": list(size),
                    },
                }
            )
            expected.append((coarse, upsample_cam(coarse, size)))
    results = run_driver({"op": "calls", "calls": calls}, tmp_path / "gradcam")
    worst = 0.0
    for (coarse, fine), result in zip(expected, results):
        worst = max(
            worst,
            np.abs(decode_floats(result["coarse"]) - coarse.ravel()).max(),
            np.abs(decode_floats(result["upsampled"]) - fine.ravel()).max(),
        )
    assert worst <= 1e-5, worst

    logits = rng.normal(scale=4, size=(5, 3)).astype(np.float32)
    crops = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    preprocessing = {"size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.5019607843137255] * 3}
    colormap = [f"#{i:02x}{255 - i:02x}{(7 * i) % 256:02x}" for i in range(256)]
    cam = upsample_cam(
        gradcam_from_outputs(rng.random((1, 4, 4, 4), np.float32), rng.normal(size=(1, 3, 4)).astype(np.float32), 0), 16
    )[0]
    table = np.array([[int(e[i : i + 2], 16) for i in (1, 3, 5)] for e in colormap], np.uint8)
    probabilities, inputs, overlay = run_driver(
        {
            "op": "calls",
            "calls": [
                {"fn": "softmax", "args": {"logits": encode_floats(logits), "dims": [5, 3]}},
                {
                    "fn": "normalize",
                    "args": {"crops": [encode_image(c) for c in crops], "preprocessing": preprocessing},
                },
                {
                    "fn": "overlay",
                    "args": {
                        "crop": encode_image(crops[0]),
                        "cam": encode_floats(cam),
                        "colormap": colormap,
                        "image_weight": 0.5,
                    },
                },
            ],
        },
        tmp_path / "maths",
    )
    np.testing.assert_allclose(decode_floats(probabilities), softmax(logits).ravel(), atol=1e-6)
    np.testing.assert_array_equal(decode_floats(inputs), normalize_crops(crops, preprocessing).ravel())
    reference = overlay_heatmap(crops[0], cam, table, 0.5)
    assert np.abs(decode_image(overlay).astype(int) - reference).max() <= 1


def test_tracking_matches_python(tmp_path):
    """The webcam mode's tracks and labels (site/js/tracking.js) equal the video predictor's
    (masklens/tracking.py) over faces that drift, appear, vanish and come back, with noisy classes."""
    rng = np.random.default_rng(3)
    rule = TrackingRule(window=4, max_missed=2)
    classes, reasons = ["covered", "incorrect", "uncovered"], ["nose", "chin", "nose_and_mouth"]
    starts = np.array([[10, 10, 60, 60], [100, 20, 160, 80], [200, 40, 240, 80]], float)
    rounds = []
    for step in range(40):
        present = [i for i in range(3) if not (i == 1 and 12 <= step < 16) and not (i == 2 and step < 5)]
        boxes = [(starts[i] + step * 1.5 + rng.normal(scale=2, size=4)).round(3).tolist() for i in present]
        if step % 7 == 3:
            boxes.append([300.0, 300.0, 320.0, 320.0])  # a one-off false face
        order = rng.permutation(len(boxes))
        boxes = [boxes[k] for k in order]
        rounds.append(
            {
                "boxes": boxes,
                "probabilities": rng.dirichlet(np.ones(3), len(boxes)).tolist(),
                "reason_probabilities": rng.dirichlet(np.ones(3), len(boxes)).tolist(),
            }
        )
    [js] = run_driver(
        {
            "op": "calls",
            "calls": [
                {
                    "fn": "track",
                    "args": {"rule": asdict(rule), "classes": classes, "reasons": reasons, "rounds": rounds},
                }
            ],
        },
        tmp_path,
    )
    tracker = Tracker(rule, classes, reasons)
    for round_, answer in zip(rounds, js):
        tracks = tracker.update(round_["boxes"])
        for track, p, rp in zip(tracks, round_["probabilities"], round_["reason_probabilities"]):
            tracker.observe(track, p, rp)
        assert answer["ids"] == [t.id for t in tracks]
        assert answer["live"] == [t.id for t in tracker.tracks]
        for label, track in zip(answer["labels"], tracks):
            expected = tracker.label(track)
            assert (label["class"], label["reason"]) == (expected["class"], expected["reason"])
            assert np.allclose(
                list(label["probabilities"].values()), list(expected["probabilities"].values()), atol=1e-12
            )
    assert tracker.next_id > 5  # the false faces and the returning face made new tracks


def test_live_faces_match_the_video_predictor(tmp_path):
    """The webcam mode's detection on a scaled-down frame, its crops and the live classifier's outputs
    (pipeline.js, onnxruntime-web's int8 kernels) equal masklens/video.py's LivePredictor (onnxruntime's x86
    ones) on the same frames, with the shipped models: a trained model's heatmaps, not an untrained one's,
    whose flat maps scaled to [0, 1] would magnify the last bit of any activation."""
    from masklens.video import LivePredictor

    model_dir = REPO / "models" / "onnx"

    faces = [
        np.asarray(Image.open(p).convert("RGB").resize((200, 200)))
        for p in sorted(shared_data_or_skip("maskedface-net", "holdout", "uncovered").iterdir())[:2]
    ]
    frames = [
        compose((640, 480), [(faces[0], 40, 100), (faces[1], 360, 140)]),
        compose((640, 480), [(faces[1], 220, 60)]),
    ]
    results = run_driver(
        {"op": "live", "models": str(model_dir), "frames": [encode_image(f) for f in frames]}, tmp_path
    )
    live = LivePredictor(model_dir, threads=1)
    for frame, js_faces in zip(frames, results):
        found = live.find_faces(frame)
        assert len(js_faces) == len(found) >= 1
        crops = np.stack([crop_face(frame, face.box, live.predictor.framing, 160) for face in found])
        for face, js, (probabilities, _, maps) in zip(found, js_faces, live.predictor.predict_crops(crops, live=True)):
            assert iou(js["box"], face.box) >= 0.99
            np.testing.assert_allclose(js["crop_box"], crop_box_for_face(face.box, live.predictor.framing), atol=0.05)
            np.testing.assert_allclose(list(js["probabilities"].values()), probabilities, atol=1e-3)
            assert list(js["heatmaps"]) == list(maps) == ["block8"]
            np.testing.assert_allclose(js["heatmaps"]["block8"], maps["block8"], atol=0.02)


def test_boxes_follow_a_moving_face_between_steps(tmp_path):
    """follow.js on a holdout face sliding over a real photo (640 x 480): started from the face's box on the
    first frame, the box it moves stays within 4 px (one gray pixel) of the face for 20 frames, longer
    than a webcam step, at 5 px right and 2 px down per frame (150 px/s at 30 fps)."""
    face_path = sorted(shared_data_or_skip("maskedface-net", "holdout", "covered").iterdir())[0]
    face = np.asarray(Image.open(face_path).convert("RGB").resize((180, 180)))
    photo = sorted(shared_data_or_skip("real-photos", "test", "without_mask").iterdir())[0]
    background = np.asarray(Image.open(photo).convert("RGB").resize((640, 480)))
    frames, truth = [], []
    for k in range(21):
        x, y = 100 + 5 * k, 120 + 2 * k
        frame = background.copy()
        frame[y : y + 180, x : x + 180] = face
        frames.append(frame)
        truth.append([x + 30, y + 30, x + 150, y + 170])
    followed = run_driver(
        {
            "op": "calls",
            "calls": [{"fn": "follow", "args": {"frames": [encode_image(f) for f in frames], "boxes": [truth[0]]}}],
        },
        tmp_path,
    )[0]
    assert len(followed) == 20
    for k, [box] in enumerate(followed, 1):
        assert np.abs(np.array(box) - truth[k]).max() <= 4, (k, box, truth[k])


# --- (c) the MTCNN cascade with onnxruntime-web -----------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        DetectionRule(),
        SHIPPED_RULE,
        DetectionRule(padding=0.3, fallback_threshold=0.01),
        DetectionRule(min_face_size=200, retry_min_face_size=12),
    ],
    ids=["facenet", "shipped", "fallback", "retry"],
)
def test_face_finder_matches_python(model_dir, tmp_path, rule):
    photos = real_photos({"with_mask": 3, "without_mask": 2})
    # A photo that is all face: the cascade finds nothing in it, so the fallback decides.
    photos.append(np.ascontiguousarray(photos[-1][20:80, 30:90]))
    detector = rule.detector(model_dir)
    settings = {
        "min_face_size": rule.min_face_size,
        "thresholds": list(rule.thresholds),
        "factor": rule.factor,
        "padding": rule.padding,
        "fallback_threshold": rule.fallback_threshold,
        "retry_min_face_size": rule.retry_min_face_size,
    }
    results = run_driver(
        {"op": "detect", "models": str(model_dir), "photos": [encode_image(p) for p in photos], "settings": settings},
        tmp_path,
    )
    assert same_faces_found(rule, detector, photos, results) >= 3, "too few faces found to compare the cascades"


def same_faces_found(rule: DetectionRule, detector, photos: list[np.ndarray], results: list) -> int:
    """Checks findFaces' faces against ``rule.find``'s, photo by photo; -> how many faces were compared."""
    found = 0
    for photo, js_faces in zip(photos, results):
        faces = rule.find(detector, photo)
        assert len(js_faces) == len(faces)
        for face in faces:
            # Match by overlap: faces with equal scores may come in either order.
            match = max(js_faces, key=lambda f: iou(f["box"], face.box))
            assert iou(match["box"], face.box) >= 0.99
            assert np.abs(np.asarray(match["landmarks"]) - face.landmarks).max() <= 1
            assert match["score"] == pytest.approx(face.score, abs=1e-4)
            found += 1
    return found


def test_face_finder_second_look_matches_python(model_dir, tmp_path):
    """Photos of N95 masks with a valve, where the stock nets find no face: the manifest's second look (R-Net
    and O-Net fine-tuned on masked faces) finds them, in Python and in the browser alike."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    rule = rule_from_manifest(manifest)
    assert rule.second_look == ("rnet_masked.onnx", "onet_masked.onnx")
    detector = rule.detector(model_dir)
    folder = shared_data_or_skip("real-masks", "test", "n95-valve")
    photos = [open_photo(path, 1280, 100_000_000) for path in sorted(folder.iterdir())[:8]]
    stock_only = replace(rule, second_look=None)
    missed = [photo for photo in photos if not stock_only.find(detector, photo)]
    assert any(rule.find(detector, photo) for photo in missed), "no photo where only the second look finds a face"
    results = run_driver(
        {
            "op": "detect",
            "models": str(model_dir),
            "photos": [encode_image(p) for p in photos],
            "settings": manifest["face_detector"],
        },
        tmp_path,
    )
    assert same_faces_found(rule, detector, photos, results) >= 1


# --- (d) the whole photo analysis --------------------------------------------------------------------


def test_photo_analysis_matches_predictor(model_dir, tmp_path):
    photos = real_photos({"with_mask": 1, "without_mask": 1})
    cases = [(photo, False) for photo in photos] + [(photos[0], True)]
    results = run_driver(
        {
            "op": "analyse",
            "models": str(model_dir),
            "photos": [{"image": encode_image(p), "whole_image": w} for p, w in cases],
        },
        tmp_path,
    )
    predictor = Predictor(model_dir, threads=1)
    for (photo, whole_image), js_faces in zip(cases, results):
        assert_same_faces(js_faces, predictor.predict_photo(photo, whole_image=whole_image), predictor)
