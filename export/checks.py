"""Running exported graphs over a split and comparing their outputs: the checks the export makes before
it keeps or ships a graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masklens.files import IMAGE_SUFFIXES
from masklens.gradcam import class_heatmaps
from masklens.predict import session_options
from masklens.preprocess import load_rgb, to_input_array

TARGET_LAYERS = ("block8", "repeat_2")

KEEP_TOLERANCE = 1e-4

KEEP_IMAGES = 64


def split_inputs(samples, preprocessing, reframing=None) -> np.ndarray:
    """The split's images as the network's input batch [N, 3, S, S], re-cut by ``reframing``
    (``training.datasets.Reframing``) for a model trained for another framing than MaskedFace-Net's."""
    p = preprocessing
    cut = reframing or (lambda image: image)
    return np.stack([to_input_array(cut(load_rgb(s.path)), p.size, p.mean, p.std, p.interpolation) for s in samples])


def export_framing(framing_file: str, checkpoint: dict) -> dict:
    """The framing JSON (``masklens framing``) of the face crop the checkpoint was trained for: ``framing_file``,
    else the one its TrainConfig names, else ``results/framing.json``; refused if it is not the one trained for."""
    path = framing_file or checkpoint["config"].get("framing") or "results/framing.json"
    framing = json.loads(Path(path).read_text())
    trained_for = checkpoint["data"].get("reframing", {}).get("framing")
    if trained_for and trained_for != framing["all"]["framing"]:
        raise SystemExit(f"{path} frames faces as {framing['all']['framing']}, the model was trained for {trained_for}")
    return framing


def folder_inputs(folder: Path, preprocessing, limit: int) -> np.ndarray:
    """Up to ``limit`` images of a folder and its subfolders (evenly spaced in name order; unreadable files
    skipped), each whole as the network's input: [N, 3, S, S]."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    p = preprocessing
    arrays = []
    for path in files:
        try:
            arrays.append(to_input_array(load_rgb(path), p.size, p.mean, p.std, p.interpolation))
        except OSError:
            continue
    return np.stack(arrays)


def same_outputs(kept: Path, fresh: Path, inputs: np.ndarray, threads: int) -> bool:
    """Whether two classifier graphs give the same outputs, within KEEP_TOLERANCE, on these network inputs."""
    ours, theirs = run_split(fresh, inputs, threads), run_split(kept, inputs, threads)
    return ours.keys() == theirs.keys() and all(
        ours[name].shape == theirs[name].shape and float(np.abs(ours[name] - theirs[name]).max()) <= KEEP_TOLERANCE
        for name in ours
    )


def check_same_outputs(full: Path, others: list[Path], size: int, threads: int, images: int = 8) -> dict[str, float]:
    """Per other graph (by file name), the largest difference between its outputs and the same outputs of
    the full graph on random inputs (all compute one function of the image); SystemExit when over
    KEEP_TOLERANCE."""
    inputs = np.random.default_rng(0).uniform(-1, 1, (images, 3, size, size)).astype(np.float32)
    theirs = run_split(full, inputs, threads)
    differences = {}
    for other in others:
        ours = run_split(other, inputs, threads)
        difference = max(float(np.abs(value - theirs[name]).max()) for name, value in ours.items())
        if difference > KEEP_TOLERANCE:
            raise SystemExit(f"{other} differs from {full} by {difference:.2g} (over {KEEP_TOLERANCE})")
        differences[other.name] = difference
    return differences


def run_split(
    model_path: Path, inputs: np.ndarray, threads: int, batch: int = 32, integer_arithmetic: bool = False
) -> dict[str, np.ndarray]:
    """Probabilities [N, 3] and, per target layer, upsampled heatmaps of the fp32-predicted class."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(model_path), session_options(threads, integer_arithmetic), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    chunks: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(inputs), batch):
        for name, value in zip(names, session.run(names, {"image": inputs[start : start + batch]})):
            chunks[name].append(value)
    return {name: np.concatenate(values) for name, values in chunks.items()}


def heatmaps(outputs: dict[str, np.ndarray], classes: np.ndarray, size: int) -> dict[str, np.ndarray]:
    return class_heatmaps(outputs, classes, size, TARGET_LAYERS)
