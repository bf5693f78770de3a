"""Fixtures for the browser modules' Node tests, written by the Python reference.

    .venv/bin/python -m tests.js_fixtures      # rewrites site/tests/fixtures/python.json

``node --test`` (site/tests/fixtures.test.js) checks the pure JS modules against these answers of
the Python side: preprocessing (normalize_crops), softmax, Grad-CAM maths (gradcam_from_outputs, upsample_cam),
the colormap (jet_colormap, overlay_heatmap), MTCNN's box decoding (pnet_candidates, apply_offsets,
square) and non-maximum suppression; site/tests/manifest.test.js checks site/js/manifest.js against
masklens.manifest.validate: the committed models/onnx/manifest.json and broken variants of it, each
stored as JSON Patch operations (RFC 6902: add, replace, remove) on that manifest with the message
validate gives (null: valid), so the fixture holds no copy of the manifest. tests/test_js_fixtures.py
fails when the committed file is not what this module writes now, so the fixtures cannot drift from the
Python side.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np

from export.build import jet_colormap
from masklens.abstention import AbstentionRule
from masklens.framing import face_size
from masklens.gradcam import gradcam_from_outputs, overlay_heatmap, upsample_cam
from masklens.manifest import SCHEMA_PATH, ManifestError, validate
from masklens.mtcnn import apply_offsets, nms, pnet_candidates, square
from masklens.predict import normalize_crops, softmax

REPO = Path(__file__).resolve().parents[1]
PATH = REPO / "site" / "tests" / "fixtures" / "python.json"
MANIFEST = REPO / "models" / "onnx" / "manifest.json"

# Broken manifests for the validators' parity: (what is wrong, JSON Patch operations on MANIFEST).
# The values avoid the one thing JSON.parse cannot tell apart (1.0 from 1, see site/js/manifest.js).
WEBCAM_V1 = [
    {"op": "remove", "path": "/classifier/webcam"},
    {"op": "add", "path": "/classifier/live", "value": {"file": "classifier-live-int8.onnx"}},
]
MANIFEST_CASES = [
    ("the committed manifest", []),
    ("another format", [{"op": "replace", "path": "/format", "value": "masklens-manifest/1"}]),
    ("no format", [{"op": "remove", "path": "/format"}]),
    ("not an object", [{"op": "replace", "path": "", "value": ["masklens-manifest/2"]}]),
    ("a missing top-level key", [{"op": "remove", "path": "/tracking"}]),
    ("a missing nested key", [{"op": "remove", "path": "/classifier/webcam/gpu/file"}]),
    ("the old name of the webcam graph", WEBCAM_V1),
    (
        "required keys before the others' values",
        [{"op": "remove", "path": "/tracking"}, {"op": "replace", "path": "/checkpoint", "value": 1}],
    ),
    (
        "missing keys in the schema's order",
        [{"op": "remove", "path": "/drawing"}, {"op": "remove", "path": "/tracking"}],
    ),
    (
        "the first problem in the manifest's order",
        [
            {"op": "replace", "path": "/tracking/window", "value": 0},
            {"op": "replace", "path": "/drawing/image_weight", "value": -1},
        ],
    ),
    ("a number for a string", [{"op": "replace", "path": "/classifier/input/name", "value": 3}]),
    ("a fraction for an integer", [{"op": "replace", "path": "/tracking/window", "value": 1.5}]),
    ("a boolean for a number", [{"op": "replace", "path": "/tracking/iou_threshold", "value": True}]),
    ("a string for a number or null", [{"op": "replace", "path": "/face_detector/fallback_threshold", "value": "0.2"}]),
    ("an array for an object", [{"op": "replace", "path": "/files", "value": []}]),
    ("a key the schema does not know", [{"op": "add", "path": "/tracking/smoothing", "value": 0.5}]),
    ("an extra key where others are allowed", [{"op": "add", "path": "/face_detector/notes", "value": "ok"}]),
    ("too few thresholds", [{"op": "replace", "path": "/face_detector/thresholds", "value": [0.5, 0.6]}]),
    ("too many thresholds", [{"op": "add", "path": "/face_detector/thresholds/3", "value": 0.7}]),
    ("a negative threshold", [{"op": "replace", "path": "/face_detector/thresholds/1", "value": -0.25}]),
    ("a bad sha256", [{"op": "replace", "path": "/files/pnet.onnx/sha256", "value": "1DA02ECE"}]),
    ("a bad model version", [{"op": "replace", "path": "/model_version", "value": "997F8F25012E"}]),
    ("a negative min_face_size", [{"op": "replace", "path": "/tracking/min_face_size", "value": -5}]),
    ("a zero face side", [{"op": "replace", "path": "/face_crop/framing/side", "value": 0}]),
    ("a tiny negative number", [{"op": "replace", "path": "/tracking/iou_threshold", "value": -1e-05}]),
    (
        "another interpolation",
        [{"op": "replace", "path": "/classifier/preprocessing/interpolation", "value": "nearest"}],
    ),
    (
        "an interpolation with quotes and accents",
        [{"op": "replace", "path": "/classifier/preprocessing/interpolation", "value": 'bilin\u00e9aire "2"\n\u2603'}],
    ),
    (
        "an object for an enum",
        [
            {
                "op": "replace",
                "path": "/classifier/preprocessing/interpolation",
                "value": {"mode": "bilinear", "sizes": [1, 2.5, None, False]},
            }
        ],
    ),
    ("null weights", [{"op": "replace", "path": "/classifier/weights", "value": None}]),
    ("a bad colour in the colormap", [{"op": "replace", "path": "/drawing/colormap/17", "value": "#GG0000"}]),
    ("a number in the colormap", [{"op": "replace", "path": "/drawing/colormap/3", "value": 255}]),
    ("a short colormap", [{"op": "remove", "path": "/drawing/colormap/255"}]),
    (
        "the first bad item",
        [
            {"op": "replace", "path": "/drawing/colormap/17", "value": "red"},
            {"op": "replace", "path": "/drawing/colormap/3", "value": "blue"},
        ],
    ),
    (
        "the length before the items",
        [
            {"op": "replace", "path": "/drawing/colormap/17", "value": "red"},
            {"op": "remove", "path": "/drawing/colormap/255"},
        ],
    ),
    ("a model file of 0 bytes", [{"op": "replace", "path": "/files/classifier.onnx/bytes", "value": 0}]),
    ("a map of one side", [{"op": "replace", "path": "/classifier/maps/block8", "value": [3]}]),
    ("a map side of 0", [{"op": "replace", "path": "/classifier/maps/block8/1", "value": 0}]),
    ("a null in a shape", [{"op": "replace", "path": "/classifier/input/shape/0", "value": None}]),
    ("a negative smallest face to judge", [{"op": "replace", "path": "/abstention/min_face_size", "value": -1}]),
    ("no temperature", [{"op": "remove", "path": "/abstention/temperature"}]),
]


# Values as the messages quote them (json.dumps), for site/js/manifest.js's pythonJson.
JSON_VALUES = [
    0,
    -7,
    10**20,
    0.1,
    -0.0005,
    0.0001,
    1e-05,
    -1.5e-07,
    123456789.125,
    2.5,
    5e-324,
    1e15 + 0.5,
    None,
    True,
    False,
    "",
    "plain",
    "caf\u00e9 \u2603 \U0001f600",
    '\x00\x1f\x7f\t\n\r\b\f"\\/',
    [],
    {},
    [1, [2, []], {"a": None}],
    {"k": {"x": [0.5, "y"]}, "\u00e9": 1},
]


def floats(array) -> list:
    """float32 values as the JSON numbers that round-trip to them."""
    return [float(v) for v in np.asarray(array, np.float32).ravel()]


def _pointer(path: str) -> list[str]:
    """An RFC 6901 JSON Pointer's reference tokens."""
    return [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]


def apply_patch(document, operations: list[dict]):
    """``document`` after RFC 6902's add, replace and remove (on a copy; an added key goes last, as in JS)."""
    document = copy.deepcopy(document)
    for operation in operations:
        value = copy.deepcopy(operation.get("value"))
        tokens = _pointer(operation["path"])
        if not tokens:
            document = value
            continue
        target = document
        for token in tokens[:-1]:
            target = target[int(token) if isinstance(target, list) else token]
        key = int(tokens[-1]) if isinstance(target, list) else tokens[-1]
        if operation["op"] == "remove":
            del target[key]
        elif operation["op"] == "add" and isinstance(target, list):
            target.insert(key, value)
        elif operation["op"] == "add" or key in (range(len(target)) if isinstance(target, list) else target):
            target[key] = value
        else:
            raise KeyError(f"replace: nothing at {operation['path']}")
    return document


def validation_message(manifest) -> str | None:
    try:
        validate(manifest)
    except ManifestError as error:
        return str(error)
    return None


def manifest_validation() -> dict:
    manifest = json.loads(MANIFEST.read_text())
    return {
        "manifest": MANIFEST.relative_to(REPO).as_posix(),
        "schema": SCHEMA_PATH.relative_to(REPO).as_posix(),
        "cases": [
            {"name": name, "patch": patch, "message": validation_message(apply_patch(manifest, patch))}
            for name, patch in MANIFEST_CASES
        ],
        "dumps": [[value, json.dumps(value)] for value in JSON_VALUES],
    }


def abstention_cases(logits: np.ndarray) -> dict:
    """masklens.abstention's answers: calibrated probabilities at one temperature, and the reason for no
    verdict for faces of several sizes under one rule (the thresholds fall between the faces' values, and on
    one exactly, where "under" must not abstain)."""
    rule = AbstentionRule(temperature=1.7, min_probability=0.6, min_face_size=24.0)
    probabilities = rule.probabilities(logits)
    boxes = [[10, 10, 30, 30], [0, 0, 24, 24], [5, 5, 60, 80], [0, 0, 100, 90]]
    cases = [
        {"probabilities": floats(row), "box": box, "expected": rule.reason(row, face_size(box))}
        for row in probabilities
        for box in boxes
    ]
    cases.append({"probabilities": [0.6, 0.3, 0.1], "box": [0, 0, 24, 24], "expected": None})
    return {
        "rule": dataclasses.asdict(rule),
        "logits": floats(logits),
        "dims": list(logits.shape),
        "probabilities": floats(probabilities),
        "cases": cases,
    }


def fixtures() -> dict:
    rng = np.random.default_rng(2024)
    crops = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    preprocessing = {"size": 6, "mean": [0.5, 0.5, 0.5], "std": [0.5019607843137255] * 3}
    logits = rng.normal(scale=3, size=(4, 3)).astype(np.float32)
    activations = rng.random((2, 4, 3, 3), np.float32)
    weights = rng.normal(size=(2, 3, 4)).astype(np.float32)
    coarse = gradcam_from_outputs(activations, weights, 1)
    colormap = jet_colormap()
    table = np.array([[int(e[i : i + 2], 16) for i in (1, 3, 5)] for e in colormap], np.uint8)
    cam = upsample_cam(coarse[:1], 6)[0]

    probabilities = rng.random((2, 5, 6)).astype(np.float32)
    offsets = rng.normal(scale=0.1, size=(4, 5, 6)).astype(np.float32)
    boxes, scores, candidate_offsets = pnet_candidates(offsets, probabilities, 0.6, 0.6)
    nms_boxes = (rng.random((12, 2)) * 40).astype(np.float32)
    nms_boxes = np.concatenate([nms_boxes, nms_boxes + (10 + rng.random((12, 2)) * 20).astype(np.float32)], 1)
    nms_scores = np.round(rng.random(12), 1).astype(np.float32)  # rounded: ties, which the order decides
    nms_cases = [
        {"overlap": o, "inclusive": i, "ties": t}
        for o, i, t in (("iou", False, "first"), ("iou", True, "first"), ("min", True, "last"))
    ]
    return {
        "normalize": {
            "crops": crops.tolist(),
            "preprocessing": preprocessing,
            "expected": floats(normalize_crops(crops, preprocessing)),
        },
        "softmax": {"logits": floats(logits), "dims": [4, 3], "expected": floats(softmax(logits))},
        "abstention": abstention_cases(logits),
        "gradcam": {
            "activations": floats(activations),
            "weights": floats(weights),
            "dims": [2, 4, 3, 3],
            "class_index": 1,
            "coarse": floats(coarse),
            "size": 8,
            "upsampled": floats(upsample_cam(coarse, 8)),
        },
        "colormap": {
            "hex": colormap,
            "crop": crops[0].tolist(),
            "cam": floats(cam),
            "image_weight": 0.5,
            "overlay": overlay_heatmap(crops[0], cam, table, 0.5).ravel().tolist(),
        },
        "pnet": {
            "offsets": floats(offsets),
            "probabilities": floats(probabilities),
            "scale": 0.6,
            "threshold": 0.6,
            "boxes": boxes.tolist(),
            "scores": floats(scores),
            "candidate_offsets": candidate_offsets.tolist(),
            "applied": {
                str(inclusive): apply_offsets(boxes, candidate_offsets, inclusive).tolist()
                for inclusive in (False, True)
            },
            "squared": square(boxes).tolist(),
        },
        "nms": {
            "boxes": nms_boxes.tolist(),
            "scores": floats(nms_scores),
            "threshold": 0.3,
            "cases": [
                {**case, "keep": [int(k) for k in nms(nms_boxes, nms_scores, 0.3, **case)]} for case in nms_cases
            ],
        },
        "manifest_validation": manifest_validation(),
    }


def render() -> str:
    return json.dumps(fixtures(), indent=None, separators=(",", ":")) + "\n"


def main() -> None:
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(render())
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
