"""The webcam mode's distilled student: refused unless distilled from the shipped checkpoint, exported as its
own graphs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from masklens.files import sha256_of

from .checks import KEEP_IMAGES, run_split
from .classifier import LIVE_TARGET_LAYERS, export_classifier

LIVE_CLASSIFIER_FILE = "classifier-live.onnx"


def load_student(config, checkpoint: dict):
    """(checkpoint, model) of ``live_checkpoint``, refused unless it was distilled from ``checkpoint`` (its
    teacher's sha256), takes the same input and answers the same classes."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    student = load_checkpoint(config.live_checkpoint)
    teacher = student["data"].get("teacher", {}).get("sha256")
    if teacher != sha256_of(config.checkpoint):
        raise SystemExit(
            f"--live-checkpoint {config.live_checkpoint} was not distilled from {config.checkpoint} "
            f"(its teacher's sha256 is {teacher})"
        )
    for key in ("preprocessing", "classes", "reasons"):
        if student[key] != checkpoint[key]:
            raise SystemExit(
                f"--live-checkpoint {config.live_checkpoint}: its {key} {student[key]} differ from "
                f"{config.checkpoint}'s {checkpoint[key]}"
            )
    model = model_from_checkpoint(student)
    model.mirror_average = config.mirror_average
    return student, model


def export_student(student, out_dir: Path, inputs: np.ndarray, threads: int):
    """The student's live graph for the GPU (fp16 weights of its own, computing in fp32) and its fp32 outputs
    on ``inputs``: -> (description, the manifest's ``classifier.webcam.gpu``, outputs)."""
    with tempfile.TemporaryDirectory() as work:
        fp32 = Path(work) / "student-fp32.onnx"
        export_classifier(student, fp32, LIVE_TARGET_LAYERS, batch_size=None, weights="fp32")
        description = export_classifier(
            student, out_dir / LIVE_CLASSIFIER_FILE, LIVE_TARGET_LAYERS, batch_size=None, weights="fp16"
        )
        outputs = run_split(fp32, inputs, threads)
    gpu_outputs = run_split(out_dir / LIVE_CLASSIFIER_FILE, inputs[:KEEP_IMAGES], threads)
    difference = max(float(np.abs(value - outputs[name][:KEEP_IMAGES]).max()) for name, value in gpu_outputs.items())
    gpu = {"file": LIVE_CLASSIFIER_FILE, "weights": "fp16", "max_difference_from_fp32": difference}
    return description, gpu, outputs
