"""Fixtures for the browser modules' Node tests, written by the Python reference.

    .venv/bin/python -m tests.js_fixtures      # rewrites site/tests/fixtures/python.json

``node --test`` (site/tests/fixtures.test.js) checks the pure JS modules against these answers of
export/: preprocessing (normalize_crops), softmax, Grad-CAM maths (gradcam_from_outputs, upsample_cam),
the colormap (jet_colormap, overlay_heatmap), MTCNN's box decoding (pnet_candidates, apply_offsets,
square) and non-maximum suppression. tests/test_js_fixtures.py fails when the committed file is not
what this module writes now, so the fixtures cannot drift from the Python side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.build import jet_colormap
from export.classifier import gradcam_from_outputs, upsample_cam
from export.mtcnn import apply_offsets, nms, pnet_candidates, square
from export.predict import normalize_crops, overlay_heatmap, softmax

PATH = Path(__file__).resolve().parents[1] / "site" / "tests" / "fixtures" / "python.json"


def floats(array) -> list:
    """float32 values as the JSON numbers that round-trip to them."""
    return [float(v) for v in np.asarray(array, np.float32).ravel()]


def fixtures() -> dict:
    rng = np.random.default_rng(2024)
    crops = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    preprocessing = {"size": 6, "mean": [0.5, 0.5, 0.5], "std": [0.5019607843137255] * 3}
    logits = rng.normal(scale=3, size=(4, 3)).astype(np.float32)
    activations = rng.random((2, 4, 3, 3), np.float32)
    weights = rng.normal(size=(2, 3, 4)).astype(np.float32)
    coarse = gradcam_from_outputs(activations, weights, 1)
    colormap = jet_colormap()
    table = np.array([[int(e[i:i + 2], 16) for i in (1, 3, 5)] for e in colormap], np.uint8)
    cam = upsample_cam(coarse[:1], 6)[0]

    probabilities = rng.random((2, 5, 6)).astype(np.float32)
    offsets = rng.normal(scale=0.1, size=(4, 5, 6)).astype(np.float32)
    boxes, scores, candidate_offsets = pnet_candidates(offsets, probabilities, 0.6, 0.6)
    nms_boxes = (rng.random((12, 2)) * 40).astype(np.float32)
    nms_boxes = np.concatenate([nms_boxes, nms_boxes + (10 + rng.random((12, 2)) * 20).astype(np.float32)], 1)
    nms_scores = np.round(rng.random(12), 1).astype(np.float32)  # rounded: ties, which the order decides
    nms_cases = [{"overlap": o, "inclusive": i, "ties": t} for o, i, t in
                 (("iou", False, "first"), ("iou", True, "first"), ("min", True, "last"))]
    return {
        "normalize": {"crops": crops.tolist(), "preprocessing": preprocessing,
                      "expected": floats(normalize_crops(crops, preprocessing))},
        "softmax": {"logits": floats(logits), "dims": [4, 3], "expected": floats(softmax(logits))},
        "gradcam": {"activations": floats(activations), "weights": floats(weights), "dims": [2, 4, 3, 3],
                    "class_index": 1, "coarse": floats(coarse), "size": 8, "upsampled": floats(upsample_cam(coarse, 8))},
        "colormap": {"hex": colormap, "crop": crops[0].tolist(), "cam": floats(cam), "image_weight": 0.5,
                     "overlay": overlay_heatmap(crops[0], cam, table, 0.5).ravel().tolist()},
        "pnet": {"offsets": floats(offsets), "probabilities": floats(probabilities), "scale": 0.6, "threshold": 0.6,
                 "boxes": boxes.tolist(), "scores": floats(scores), "candidate_offsets": candidate_offsets.tolist(),
                 "applied": {str(inclusive): apply_offsets(boxes, candidate_offsets, inclusive).tolist()
                             for inclusive in (False, True)},
                 "squared": square(boxes).tolist()},
        "nms": {"boxes": nms_boxes.tolist(), "scores": floats(nms_scores), "threshold": 0.3,
                "cases": [{**case, "keep": [int(k) for k in nms(nms_boxes, nms_scores, 0.3, **case)]}
                          for case in nms_cases]},
    }


def render() -> str:
    return json.dumps(fixtures(), indent=None, separators=(",", ":")) + "\n"


def main() -> None:
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(render())
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
