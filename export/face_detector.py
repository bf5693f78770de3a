"""Exports facenet-pytorch's MTCNN face detector (P-Net, R-Net, O-Net) to three ONNX files.

``masklens export-detector --out-dir build/detector`` (and ``masklens export``) writes, all opset 17, float32, standard
ai.onnx ops only (Conv, PRelu, MaxPool, Softmax, Transpose, Reshape, Gemm), so they run on
onnxruntime's CPU provider and on onnxruntime-web (wasm):

``pnet.onnx``
    input  ``image``          [batch, 3, height, width]   (height, width >= 12)
    output ``box_offsets``    [batch, 4, out_h, out_w]    out_h = floor((height - 3) / 2) - 3, same for w
    output ``probabilities``  [batch, 2, out_h, out_w]    softmax over axis 1; channel 1 = "face"
``rnet.onnx``
    input  ``image``          [batch, 3, 24, 24]
    output ``box_offsets``    [batch, 4]
    output ``probabilities``  [batch, 2]                  softmax over axis 1; column 1 = "face"
``onet.onnx``
    input  ``image``          [batch, 3, 48, 48]
    output ``box_offsets``    [batch, 4]
    output ``landmarks``      [batch, 10]                 x of the 5 points, then y of the 5 points,
                                                          as fractions of the (square) input box
    output ``probabilities``  [batch, 2]                  softmax over axis 1; column 1 = "face"

``rnet_masked.onnx``, ``onet_masked.onnx`` (with ``second_look``)
    R-Net and O-Net fine-tuned on masked faces (``masklens train-detector``), I/O as ``rnet.onnx`` and
    ``onet.onnx``: the face finder's second look where the stock nets find no face
    (``masklens.face_finder.find_faces``).

Every input is an RGB image in planar (NCHW) layout, normalised as ``(pixel - 127.5) / 128``.
The outputs are in the order of the torch modules' tuples and equal them within 1e-4 (tested); the
cascade that uses them is ``masklens/mtcnn.py``. The weights come from the facenet-pytorch wheel
(``facenet_pytorch/data/*.pt``), so nothing is downloaded; ``--weights`` names a file written by
``masklens train-detector`` (``training/detector.py``), whose nets' state dicts replace the wheel's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import onnx
import torch
from facenet_pytorch import MTCNN

from masklens.cli import parse_config

OPSET = 17
IMAGE_INPUT = "image"
EXAMPLE_DIMS = {"batch": 2, "height": 37, "width": 53}  # any sizes work; 1 would be specialised

# Input shape and output shapes (in the order torch's forward returns them) per net; strings are
# dynamic dimensions. R-Net and O-Net take fixed crops because they end in dense layers.
NETS = {
    "pnet": (
        ["batch", 3, "height", "width"],
        {"box_offsets": ["batch", 4, "out_h", "out_w"], "probabilities": ["batch", 2, "out_h", "out_w"]},
    ),
    "rnet": (["batch", 3, 24, 24], {"box_offsets": ["batch", 4], "probabilities": ["batch", 2]}),
    "onet": (
        ["batch", 3, 48, 48],
        {"box_offsets": ["batch", 4], "landmarks": ["batch", 10], "probabilities": ["batch", 2]},
    ),
}


SECOND_LOOK_NETS = ("rnet", "onet")  # the nets masklens train-detector fine-tunes; P-Net is shared


def _dynamic_shapes(input_shape: list) -> tuple[dict, ...]:
    # 12 x 12 is P-Net's receptive field: a smaller image has no output cell.
    dims = {
        "batch": torch.export.Dim("batch"),
        "height": torch.export.Dim("height", min=12),
        "width": torch.export.Dim("width", min=12),
    }
    return ({axis: dims[dim] for axis, dim in enumerate(input_shape) if isinstance(dim, str)},)


def export_net(name: str, module: torch.nn.Module, path: Path) -> None:
    """Exports one net with the torch.export-based exporter and checks the file."""
    input_shape, outputs = NETS[name]
    example = torch.zeros([EXAMPLE_DIMS.get(dim, dim) for dim in input_shape])
    program = torch.onnx.export(
        module.eval(),
        (example,),
        dynamo=True,
        opset_version=OPSET,
        input_names=[IMAGE_INPUT],
        output_names=list(outputs),
        dynamic_shapes=_dynamic_shapes(input_shape),
        verbose=False,
    )
    program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    # The exporter builds opset 18 and converts down, keeping 18 (with only a warning) where it
    # cannot: fail loudly instead, since the manifest promises opset 17.
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    if opsets != {"ai.onnx": OPSET}:
        raise RuntimeError(f"{path.name} imports opsets {opsets}, expected only ai.onnx {OPSET}")


def load_mtcnn(weights: str | Path | None = None) -> MTCNN:
    """facenet-pytorch's MTCNN with the wheel's weights, exactly as the reference detector loads them;
    with ``weights`` (a ``masklens train-detector`` file), the nets it holds get its state dicts."""
    mtcnn = MTCNN(device="cpu")
    if weights is not None:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        for name, state_dict in checkpoint["nets"].items():
            getattr(mtcnn, name).load_state_dict(state_dict)
    return mtcnn


def export_mtcnn(out_dir: str | Path, weights: str | Path | None = None, second_look: str | Path | None = None) -> dict:
    """Writes pnet.onnx, rnet.onnx and onet.onnx into out_dir (``weights``' nets in place of the wheel's), and
    with ``second_look`` (a ``masklens train-detector`` file) its R-Net and O-Net as rnet_masked.onnx and
    onet_masked.onnx; returns their description.

    The description (JSON-serialisable, for the model manifest) gives per net the file name and
    the names and shapes of its input and outputs, with strings for the dynamic dimensions, and
    under ``second_look`` the nets that take R-Net's and O-Net's place in the face finder's second look.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mtcnn = load_mtcnn(weights)
    nets = {}
    for name, (input_shape, outputs) in NETS.items():
        path = out_dir / f"{name}.onnx"
        export_net(name, getattr(mtcnn, name), path)
        nets[name] = {"file": path.name, "inputs": {IMAGE_INPUT: input_shape}, "outputs": outputs}
    extra = {}
    if second_look is not None:
        fine_tuned = load_mtcnn(second_look)
        for name in SECOND_LOOK_NETS:
            input_shape, outputs = NETS[name]
            path = out_dir / f"{name}_masked.onnx"
            export_net(name, getattr(fine_tuned, name), path)
            nets[path.stem] = {"file": path.name, "inputs": {IMAGE_INPUT: input_shape}, "outputs": outputs}
        extra["second_look"] = {
            "nets": {name: f"{name}_masked" for name in SECOND_LOOK_NETS},
            "weights": f"{Path(second_look).name} (masklens train-detector: fine-tuned on masked faces)",
            "when": "the stock nets find no face, with the retry and the whole-photo judgement",
        }
    return {
        **extra,
        "format": "onnx",
        "opset": OPSET,
        "dtype": "float32",
        "source": f"facenet-pytorch {version('facenet-pytorch')} MTCNN weights"
        + ("" if weights is None else f", fine-tuned: {Path(weights).name}"),
        "input_normalization": "(rgb - 127.5) * 0.0078125, RGB, NCHW",
        "face_probability": "probabilities[:, 1]",
        "pnet_output_size": "out_h = floor((height - 3) / 2) - 3, out_w likewise; "
        "cell (i, j) scores the 12 x 12 window at (x, y) = (2j, 2i)",
        "landmarks_layout": "x of 5 points, then y of 5 points, as fractions of the input box",
        "nets": nets,
    }


@dataclass(frozen=True)
class DetectorExportConfig:
    out_dir: str = field(default="build/detector", metadata={"help": "folder for pnet.onnx, rnet.onnx and onet.onnx"})
    weights: str = field(
        default="", metadata={"help": "fine-tuned nets (masklens train-detector) to export instead of the wheel's"}
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_config(DetectorExportConfig, argv, description=__doc__.splitlines()[0])
    print(json.dumps(export_mtcnn(config.out_dir, config.weights or None), indent=2, sort_keys=True))
