"""The webcam mode's CPU graph: the live classifier with 8-bit integer weights and activations.

The live classifier (block8's outputs, forward only; ``classifier-live.onnx`` is it with the full graph's
weights), exported with fp32 weights whatever format the full graph ships, then quantized statically by
onnxruntime: uint8 weights per output channel, uint8 activations whose ranges come from calibration
images (MaskedFace-Net training faces, never the split it is checked on; each activation's range covers
all but its most extreme 0.001% of values, ``CALIBRATION_PERCENTILE``), and QDQ nodes that onnxruntime
fuses into integer convolutions. Inputs and outputs are the fp32 graph's, by the same names and shapes.

Why: onnxruntime-web's wasm kernels run it about 1.8x faster than the fp32 graph (integer convolutions
on wasm's 128-bit integer dot products). Weights are unsigned like the activations because
onnxruntime's x86 kernels for uint8 x int8 may saturate on AVX2 (VPMADDUBSW adds two products in 16
bits) where wasm's do not; uint8 x uint8 sums are exact on both, so Python's live predictor, the
export's check and the browser compute the same integers. The GPU keeps the fp32 graph. Every export
checks the int8 graph against the full fp32 graph on a whole split (``compare_with_full``) and refuses it
outside ``INT8_BOUNDS``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from masklens.gradcam import class_heatmaps
from masklens.predict import softmax
from training.model import MaskClassifier

from .classifier import LIVE_TARGET_LAYERS, export_classifier

# Of 64 training faces per class, percentile ranges strayed less from the full graph on the holdout split
# than min-max ranges (largest probability difference 0.023 against 0.057, measured with int8 weights).
CALIBRATION_PERCENTILE = 99.999
# How far the int8 graph may stray from the full fp32 graph on the checked split: the class on all but
# one image in 200, the class probabilities within 0.1; block8's heatmap of the full graph's class (scaled
# to [0, 1] per image, so a flat map magnifies rounding) within 0.05 on 99% of the images and 0.25 on all.
INT8_BOUNDS = {
    "min_same_class": 0.995,
    "max_probability_difference": 0.1,
    "p99_heatmap_difference": 0.05,
    "max_heatmap_difference": 0.25,
}
# How far a distilled student's int8 graph may stray from the full model it stands in for: the full model's
# class on 99% of the checked split's images and at most half a point of its accuracy. Its probabilities and
# heatmaps come from another network, so they are measured, not bounded; its own fp32 graph bounds its
# rounding with INT8_BOUNDS.
STUDENT_BOUNDS = {"min_same_class": 0.99, "max_accuracy_drop": 0.005}


def calibration_rows(labels: list[int], per_class: int) -> list[int]:
    """Up to ``per_class`` indices of each label, evenly spaced through the list (deterministic)."""
    rows = []
    for label in sorted(set(labels)):
        of_label = [i for i, value in enumerate(labels) if value == label]
        take = min(per_class, len(of_label))
        rows += [of_label[int(k)] for k in np.linspace(0, len(of_label) - 1, take).round()]
    return rows


def quantize_live_classifier(model: MaskClassifier, path: str | Path, calibration: np.ndarray) -> dict:
    """Writes the model's live graph quantized to int8 at ``path``; ``calibration`` [N, 3, S, S] are network
    inputs whose activation ranges set the uint8 scales. Returns how it was quantized."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(range(len(calibration)))

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {"image": calibration[row : row + 1]}

    with tempfile.TemporaryDirectory() as work:
        fp32 = Path(work) / "live-fp32.onnx"
        export_classifier(model, fp32, LIVE_TARGET_LAYERS, batch_size=None, weights="fp32")
        prepared = Path(work) / "live-prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.Percentile,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
        )
    onnx.checker.check_model(str(path), full_check=True)
    return {
        "weights": "uint8 per output channel",
        "activations": "uint8",
        "format": "QDQ",
        "operators": ["Conv", "Gemm", "MatMul"],
        "calibration": f"percentile {CALIBRATION_PERCENTILE}",
        "calibration_images": len(calibration),
    }


def compare_with_full(
    full_outputs: dict[str, np.ndarray],
    live_outputs: dict[str, np.ndarray],
    labels: np.ndarray,
    size: int,
    bounds: dict = INT8_BOUNDS,
) -> dict:
    """A live graph against a reference graph (the full fp32 one) on the same inputs (``run_split`` outputs
    of each): how often the class is the same, the largest probability difference, the heatmap differences
    (per image the largest pixel difference of the target layer's map of the reference's class, upsampled to
    ``size``: its 99th percentile and maximum over the images), both accuracies, and whether ``bounds`` hold
    (each of ``INT8_BOUNDS``' keys that it names)."""
    full, live = softmax(full_outputs["logits"]), softmax(live_outputs["logits"])
    classes = full.argmax(1)
    report = {
        "images": len(labels),
        "accuracy_full": float((classes == labels).mean()),
        "accuracy": float((live.argmax(1) == labels).mean()),
        "same_class": float((live.argmax(1) == classes).mean()),
        "max_probability_difference": float(np.abs(live - full).max()),
        "p99_heatmap_difference": {},
        "max_heatmap_difference": {},
    }
    full_maps, live_maps = (
        class_heatmaps(outputs, classes, size, LIVE_TARGET_LAYERS) for outputs in (full_outputs, live_outputs)
    )
    for layer in LIVE_TARGET_LAYERS:
        per_image = np.abs(full_maps[layer] - live_maps[layer]).reshape(len(classes), -1).max(1)
        report["p99_heatmap_difference"][layer] = float(np.percentile(per_image, 99))
        report["max_heatmap_difference"][layer] = float(per_image.max())
    held = {
        "min_same_class": lambda bound: report["same_class"] >= bound,
        "max_probability_difference": lambda bound: report["max_probability_difference"] <= bound,
        "p99_heatmap_difference": lambda bound: max(report["p99_heatmap_difference"].values()) <= bound,
        "max_heatmap_difference": lambda bound: max(report["max_heatmap_difference"].values()) <= bound,
        "max_accuracy_drop": lambda bound: report["accuracy_full"] - report["accuracy"] <= bound,
    }
    report["bounds"] = bounds
    report["within_bounds"] = all(held[name](bound) for name, bound in bounds.items())
    return report
