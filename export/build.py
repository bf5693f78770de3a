"""Export command: ``masklens export`` writes everything the browser and the predictor run.

Into ``out_dir``: ``classifier.onnx`` (logits, reason logits and the Grad-CAM activations and channel
weights of two target layers, see ``export.classifier``), ``classifier-live-int8.onnx`` (the webcam mode's
forward-only graph for block8, quantized to int8 for the CPU: see ``export.quantize``; checked against the
full graph on the split), ``classifier-live.onnx`` (the same graph in fp32 for the GPU, its weights read
from ``classifier.onnx``), ``classifier-gpu.onnx`` (the
full graph for onnxruntime's WebGPU backend, whose MaxPool gives no indices; weights also read from
``classifier.onnx``), ``pnet.onnx``/``rnet.onnx``/``onet.onnx``
(MTCNN, see ``export.face_detector``) and ``manifest.json``: class and reason names in order,
preprocessing, I/O names and shapes, target layers and map sizes, the face-crop framing, each file's
size and sha256, the model version and its holdout metrics. Beside the results it writes
``compression.json``: every weight format measured against fp32 on a whole split, and which one ships,
and the int8 live graph measured against the full graph (``live_int8``).

The shipped weight format is the smallest whose outputs hold ``export.fidelity.FORMAT_BOUNDS`` against
fp32's on the split and on each real set: the verdict, the probabilities, and the heatmaps as a person sees
them (the ranking of their pixels and their hot region).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from masklens.cli import parse_config
from masklens.face_finder import SHIPPED_RULE
from masklens.files import sha256_of, write_json
from masklens.manifest import MANIFEST_NAME, manifest_format, validate
from masklens.predict import Predictor, softmax
from masklens.tracking import TrackingRule
from training.data import index_split
from training.datasets import reframing_of

from .checks import (
    KEEP_IMAGES,
    TARGET_LAYERS,
    check_same_outputs,
    export_framing,
    folder_inputs,
    heatmaps,
    run_split,
    same_outputs,
    split_inputs,
)
from .classifier import export_classifier, export_gpu_classifier, export_live_classifier
from .face_detector import export_mtcnn
from .fidelity import FORMAT_BOUNDS, TOP_AREA, agreement, failures
from .quantize import STUDENT_BOUNDS, calibration_rows, compare_with_full, quantize_live_classifier
from .student import LIVE_CLASSIFIER_FILE, export_student, load_student
from .weights import INT8_MIN_VALUES, WEIGHT_FORMATS

CLASSIFIER_FILE = "classifier.onnx"
LIVE_INT8_FILE = "classifier-live-int8.onnx"
GPU_CLASSIFIER_FILE = "classifier-gpu.onnx"


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str = "models/real-wear-neck.pt"
    out_dir: str = "models/onnx"
    second_look_weights: str = field(default="", metadata={"help": "masklens train-detector's: the second look"})
    weights: str = field(default="auto", metadata={"help": "fp32, fp16, int8, or auto: the smallest within bounds"})
    framing: str = field(default="", metadata={"help": "masklens framing's JSON; default: the checkpoint's"})
    metrics: str = field(default="results/real-wear-neck/metrics-holdout.json", metadata={"help": "masklens eval's"})
    data_root: str = "../shared/data/maskedface-net"
    split: str = field(
        default="holdout", metadata={"help": "split the weight formats and the int8 live graph are checked on"}
    )
    calibration_split: str = field(default="train", metadata={"help": "split setting the int8 live graph's ranges"})
    calibration_per_class: int = 64
    real_data: str = field(default="../shared/data", metadata={"help": "root of the real sets below"})
    real_sets: tuple[str, ...] = field(
        default=("real-wear/test", "real-photos/test", "real-masks/test", "real-video-frames"),
        metadata={"help": "folders of real faces (as whole images) the weight formats are also checked on"},
    )
    real_set_faces: int = field(default=400, metadata={"help": "faces taken from each real set, evenly spaced"})
    check_weights: bool = field(
        default=True,
        metadata={
            "help": "refuse a --weights format outside export.fidelity.FORMAT_BOUNDS of fp32 (the tests turn it off "
            "for untrained models, whose flat heatmaps magnify any rounding)"
        },
    )
    check_live_int8: bool = field(
        default=True,
        metadata={
            "help": "refuse an int8 live graph beyond export.quantize.INT8_BOUNDS of the full graph (the tests turn "
            "it off for untrained models, whose flat heatmaps magnify any rounding)"
        },
    )
    compression_report: str = "results/compression.json"
    max_side: int = field(default=1280, metadata={"help": "photos are scaled down to this longer side first"})
    max_pixels: int = field(default=100_000_000, metadata={"help": "larger photos are refused"})
    keep: str = field(
        default="",
        metadata={
            "help": "an earlier export's classifier.onnx of the same checkpoint, kept byte for byte when its outputs "
            "equal this export's (within 1e-4 on the split's first 64 images): exports of one checkpoint "
            "differ in the last float bits from CPU to CPU, and a re-export should not churn a 90 MB file"
        },
    )
    threads: int = 0
    mirror_average: bool = field(default=True, metadata={"help": "answer with the mean over a face and its mirror"})
    live_checkpoint: str = field(
        default="",
        metadata={
            "help": "a distilled student of the checkpoint (masklens train --preset live-student) whose graphs "
            "the webcam mode runs, checked against the full graph within export.quantize.STUDENT_BOUNDS; empty: the "
            "checkpoint's own"
        },
    )


def jet_colormap() -> list[str]:
    """OpenCV's COLORMAP_JET as 256 "#rrggbb" entries: pytorch_grad_cam colours heatmaps with it."""
    import cv2

    rgb = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    return ["#" + "".join(f"{int(v):02x}" for v in row) for row in rgb]


def compare_formats(
    model, config: ExportConfig, work: Path, inputs: np.ndarray, labels: np.ndarray, real_sets: dict[str, np.ndarray]
) -> dict:
    """Exports the weight formats (all of them with ``--weights auto``, else fp32 and the one asked for) and
    measures each against fp32 on the whole split (its network inputs and labels) and on each real set, with
    ``export.fidelity``'s bounds."""
    formats = WEIGHT_FORMATS if config.weights == "auto" else ("fp32", config.weights)
    sets = {config.split: inputs, **real_sets}
    report = {
        "split": config.split,
        "images": len(labels),
        "sets": {name: len(faces) for name, faces in sets.items()},
        "bounds": FORMAT_BOUNDS,
        "top_area": TOP_AREA,
        "int8_min_values": INT8_MIN_VALUES,
        "formats": {},
    }
    reference = {}
    for weights in dict.fromkeys(formats):
        path = work / f"classifier-{weights}.onnx"
        started = time.perf_counter()
        export_classifier(model, path, TARGET_LAYERS, batch_size=None, weights=weights)
        seconds = round(time.perf_counter() - started, 1)
        entry = {"bytes": path.stat().st_size, "export_seconds": seconds, "sets": {}, "failures": []}
        for name, faces in sets.items():
            outputs = run_split(path, faces, config.threads)
            probabilities = softmax(outputs["logits"])
            if weights == "fp32":
                classes = probabilities.argmax(1)
                reference[name] = (probabilities, heatmaps(outputs, classes, model.preprocessing.size))
            if name == config.split:
                entry["accuracy"] = float((probabilities.argmax(1) == labels).mean())
            fp32_probabilities, fp32_maps = reference[name]
            maps = heatmaps(outputs, fp32_probabilities.argmax(1), model.preprocessing.size)
            entry["sets"][name] = agreement(fp32_probabilities, probabilities, fp32_maps, maps)
            entry["failures"] += failures(name, entry["sets"][name])
        entry["within_bounds"] = not entry["failures"]
        report["formats"][weights] = entry
    passing = [w for w in report["formats"] if report["formats"][w]["within_bounds"]]
    if config.weights != "auto" and config.weights not in passing and config.check_weights:
        raise SystemExit(
            f"{config.weights} weights stray from fp32 beyond {FORMAT_BOUNDS}: "
            + "; ".join(report["formats"][config.weights]["failures"])
        )
    report["chosen"] = (
        config.weights if config.weights != "auto" else min(passing, key=lambda w: report["formats"][w]["bytes"])
    )
    return report


def build(config: ExportConfig) -> dict:
    """Exports every graph of ``config.checkpoint`` into ``out_dir``, checks them, and writes the manifest."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = load_checkpoint(config.checkpoint)
    model = model_from_checkpoint(checkpoint)
    model.mirror_average = config.mirror_average
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The split both checks run on: the weight formats against fp32, the int8 webcam graph against the full one.
    checked = index_split(config.data_root, config.split).samples
    inputs = split_inputs(checked, model.preprocessing, reframing_of(checkpoint))
    labels = np.array([s.label for s in checked])
    report, chosen, description = export_photo_graph(model, config, out_dir, inputs, labels)
    gpu = export_gpu_classifier(model, out_dir / CLASSIFIER_FILE, out_dir / GPU_CLASSIFIER_FILE, TARGET_LAYERS)
    webcam, gpu_difference = export_webcam_graphs(model, checkpoint, config, out_dir, inputs, labels)
    student_summary = {key: value for key, value in webcam.get("student", {}).items() if key != "config"}
    write_json(
        config.compression_report,
        {
            **report,
            "live_int8": {
                "quantization": webcam["quantization"],
                "against_full": webcam["against_full"],
                **({"student": student_summary} if student_summary else {}),
            },
        },
    )
    classifier = {
        "file": CLASSIFIER_FILE,
        "input": description["input"],
        "outputs": description["outputs"],
        "target_layers": list(TARGET_LAYERS),
        "maps": description["maps"],
        "preprocessing": description["preprocessing"],
        "weights": chosen,
        "opset": description["opset"],
        "mirror_average": description["mirror_average"],
        "webcam": webcam,
        "gpu": {
            "file": GPU_CLASSIFIER_FILE,
            "weights_file": gpu["weights_file"],
            "max_difference_from_full": gpu_difference,
        },
    }
    detector = export_mtcnn(out_dir, second_look=config.second_look_weights or None)
    manifest = manifest_for(config, checkpoint, description, classifier, detector)
    manifest["metrics"]["holdout_shipped"] = {"weights": chosen, "accuracy": report["formats"][chosen]["accuracy"]}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    validate(json.loads(text))  # what every reader will see
    (out_dir / MANIFEST_NAME).write_text(text)
    Predictor(out_dir)  # refuses the export if any file does not match what the manifest says
    return manifest


def export_photo_graph(model, config: ExportConfig, out_dir: Path, inputs: np.ndarray, labels: np.ndarray):
    """``classifier.onnx`` in the chosen weight format (the smallest within ``FORMAT_BOUNDS`` with ``--weights
    auto``; the one asked for, refused outside them), or the ``keep`` file when its outputs are this export's:
    -> (formats report, format, description)."""
    real_sets = {
        name: folder_inputs(Path(config.real_data) / name, model.preprocessing, config.real_set_faces)
        for name in config.real_sets
    }
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        report = compare_formats(model, config, work, inputs, labels, real_sets)
        chosen = report["chosen"]
        description = export_classifier(model, work / CLASSIFIER_FILE, TARGET_LAYERS, batch_size=None, weights=chosen)
        kept = Path(config.keep) if config.keep else None
        if kept is not None and not kept.is_file():
            raise SystemExit(f"--keep {kept}: no such file")
        if kept is not None and same_outputs(kept, work / CLASSIFIER_FILE, inputs[:KEEP_IMAGES], config.threads):
            print(f"kept {kept}: same outputs as this export")
            if kept.resolve() != (out_dir / CLASSIFIER_FILE).resolve():
                shutil.copy(kept, out_dir / CLASSIFIER_FILE)
        else:
            shutil.copy(work / CLASSIFIER_FILE, out_dir / CLASSIFIER_FILE)
    return report, chosen, description


def export_webcam_graphs(
    model, checkpoint: dict, config: ExportConfig, out_dir: Path, inputs: np.ndarray, labels: np.ndarray
) -> tuple[dict, float]:
    """The webcam mode's graphs (the full model's, or the distilled ``live_checkpoint``'s), the int8 one checked
    against its fp32 graph and against the full graph: -> (the manifest's ``classifier.webcam``, the largest
    difference between the WebGPU photo graph's outputs and the full graph's)."""
    from training.checkpoint import depths_of, widths_of

    student_checkpoint, student = load_student(config, checkpoint) if config.live_checkpoint else (None, None)
    if student is None:
        live = export_live_classifier(model, out_dir / CLASSIFIER_FILE, out_dir / LIVE_CLASSIFIER_FILE)
        differences = check_same_outputs(
            out_dir / CLASSIFIER_FILE,
            [out_dir / LIVE_CLASSIFIER_FILE, out_dir / GPU_CLASSIFIER_FILE],
            model.preprocessing.size,
            config.threads,
        )
        live_gpu = {
            "file": LIVE_CLASSIFIER_FILE,
            "weights_file": live["weights_file"],
            "max_difference_from_full": differences[LIVE_CLASSIFIER_FILE],
        }
    else:
        differences = check_same_outputs(
            out_dir / CLASSIFIER_FILE, [out_dir / GPU_CLASSIFIER_FILE], model.preprocessing.size, config.threads
        )
        live, live_gpu, student_fp32 = export_student(student, out_dir, inputs, config.threads)
    live_model = model if student is None else student
    calibration = index_split(config.data_root, config.calibration_split).samples
    rows = calibration_rows([s.label for s in calibration], config.calibration_per_class)
    calibration = [calibration[i] for i in rows]
    calibration_inputs = split_inputs(calibration, live_model.preprocessing, reframing_of(checkpoint))
    quantization = quantize_live_classifier(live_model, out_dir / LIVE_INT8_FILE, calibration_inputs)
    quantization["calibration_split"] = config.calibration_split
    live_int8 = run_split(out_dir / LIVE_INT8_FILE, inputs, config.threads, integer_arithmetic=True)
    size = model.preprocessing.size
    full = run_split(out_dir / CLASSIFIER_FILE, inputs, config.threads)
    if student is None:
        quantization_check = against_full = compare_with_full(full, live_int8, labels, size)
    else:
        quantization_check = compare_with_full(student_fp32, live_int8, labels, size)
        against_full = compare_with_full(full, live_int8, labels, size, STUDENT_BOUNDS)
        quantization_check["split"] = config.split
    against_full["split"] = config.split
    if config.check_live_int8 and not quantization_check["within_bounds"]:
        raise SystemExit(
            f"{LIVE_INT8_FILE} strays from its fp32 graph on {config.split} beyond "
            f"{quantization_check['bounds']}: {quantization_check}"
        )
    if config.check_live_int8 and not against_full["within_bounds"]:
        raise SystemExit(
            f"{LIVE_INT8_FILE} strays from {CLASSIFIER_FILE} on {config.split} beyond {against_full['bounds']}: "
            f"{against_full}"
        )
    webcam = {
        "file": LIVE_INT8_FILE,
        "quantization": quantization,
        "against_full": against_full,
        "outputs": live["outputs"],
        "target_layers": list(live["maps"]),
        "maps": live["maps"],
        "gpu": live_gpu,
    }
    if student is not None:
        webcam["student"] = {
            "file": Path(config.live_checkpoint).name,
            "sha256": sha256_of(config.live_checkpoint),
            "depths": depths_of(student_checkpoint).to_dict(),
            "widths": widths_of(student_checkpoint).to_dict(),
            "config": student_checkpoint["config"],
            "against_own_fp32": quantization_check,
        }
    return webcam, differences[GPU_CLASSIFIER_FILE]


def manifest_for(config: ExportConfig, checkpoint: dict, description: dict, classifier: dict, detector: dict) -> dict:
    """The manifest (masklens/manifest.schema.json) of the files now in ``out_dir``."""
    out_dir = Path(config.out_dir)
    framing = export_framing(config.framing, checkpoint)
    metrics = json.loads(Path(config.metrics).read_text())
    files = [
        CLASSIFIER_FILE,
        LIVE_INT8_FILE,
        LIVE_CLASSIFIER_FILE,
        GPU_CLASSIFIER_FILE,
        *(net["file"] for net in detector["nets"].values()),
    ]
    checkpoint_sha = sha256_of(config.checkpoint)
    return {
        "format": manifest_format(),
        "model_version": checkpoint_sha[:12],
        "checkpoint": {
            "file": Path(config.checkpoint).name,
            "sha256": checkpoint_sha,
            "git_commit": checkpoint["git_commit"],
            "config": checkpoint["config"],
        },
        "classes": description["classes"],
        "reasons": description["reasons"],
        "classifier": classifier,
        "face_detector": {
            **detector,
            "min_face_size": SHIPPED_RULE.min_face_size,
            "thresholds": list(SHIPPED_RULE.thresholds),
            "factor": SHIPPED_RULE.factor,
            "padding": SHIPPED_RULE.padding,
            "fallback_threshold": SHIPPED_RULE.fallback_threshold,
            "retry_min_face_size": SHIPPED_RULE.retry_min_face_size,
        },
        "face_crop": {
            "framing": framing["all"]["framing"],
            "measured_on": framing["settings"],
            "padding": "edge pixels repeated",
            "resize": "bilinear",
        },
        "tracking": dataclasses.asdict(TrackingRule()),
        "input_limits": {"max_side": config.max_side, "max_pixels": config.max_pixels},
        "drawing": {"colormap": jet_colormap(), "image_weight": 0.5},
        "metrics": {
            "holdout": {
                "images": metrics["images"],
                "accuracy": metrics["accuracy"],
                "recall": {c: v["recall"] for c, v in metrics["per_class"].items()},
                "reason_accuracy": (metrics["reason_head"] or {}).get("accuracy"),
            }
        },
        "files": {
            name: {"bytes": (out_dir / name).stat().st_size, "sha256": sha256_of(out_dir / name)} for name in files
        },
    }


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ExportConfig, argv, description=__doc__.splitlines()[0])
    manifest = build(config)
    write_json(Path(config.out_dir) / "export-config.json", dataclasses.asdict(config))
    print(
        f"wrote {config.out_dir}: classifier weights {manifest['classifier']['weights']}, "
        f"{sum(f['bytes'] for f in manifest['files'].values()) / 1e6:.1f} MB in {len(manifest['files'])} files"
    )
