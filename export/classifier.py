"""Exports the classifier and its Grad-CAM channel weights as one ONNX graph.

The browser runs the model with onnxruntime-web, which has no autograd, so the gradients Grad-CAM
needs are computed by the exported graph itself, from the input image.

Graph inputs and outputs (all float32; N is the batch, H = W = ``model.preprocessing.size``):

- ``image`` [N, 3, H, W]: the normalised input (see ``training.preprocess.to_input_array``).
- ``logits`` [N, 3] and ``reason_logits`` [N, 3]: the model's two heads.
- for each target layer L (default ``block8`` and ``repeat_2``):
  ``L_activations`` [N, C, h, w], the layer's output, and
  ``L_weights`` [N, 3, C], the Grad-CAM channel weights: for every class k, the spatial mean of
  d logits[:, k] / d L_activations. At 160 px, block8 is [N, 1792, 3, 3], repeat_2 [N, 896, 8, 8].

The Grad-CAM map for class k is then ``gradcam_from_outputs(L_activations, L_weights, k)``,
upsampled with ``upsample_cam`` exactly as pytorch_grad_cam does it.

N is a dynamic axis when ``batch_size=None``; otherwise it is fixed to ``batch_size``, which gives
a graph with static shapes.

Usage: ``python -m export.classifier --checkpoint runs/default/model.pt --out build/models/classifier.onnx
--weights int8``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from training.model import STAGES, MaskClassifier

aten = torch.ops.aten

OPSET = 18
INPUT_NAME = "image"
WEIGHT_FORMATS = ("fp32", "fp16", "int8")


# --- Model preparation -------------------------------------------------------------------------


def _fold_batch_norms(model: MaskClassifier) -> MaskClassifier:
    """An eval-mode copy of the model with its batch norms (BasicConv2d's and last_bn) folded into the
    conv or linear layer before them.

    Folding is exact up to float rounding, and it leaves only convolutions, ReLUs and pooling for
    the backward pass to go through (no batch-norm backward to export) and fewer weights to store.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        # facenet-pytorch's BasicConv2d: conv (no bias) -> bn -> relu.
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = _fold_into(conv, bn)
            module.bn = nn.Identity()
    backbone = model.backbone
    backbone.last_linear = _fold_into(backbone.last_linear, backbone.last_bn)
    backbone.last_bn = nn.Identity()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _fold_into(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Conv2d | nn.Linear:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = copy.deepcopy(layer)
    weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
    bias = bn.bias - bn.running_mean * scale
    if layer.bias is not None:
        bias = bias + layer.bias * scale
    folded.weight = nn.Parameter(weight.detach())
    folded.bias = nn.Parameter(bias.detach())
    return folded


# --- Backward ops rewritten as forward ops --------------------------------------------------------
# make_fx traces the vector-Jacobian product into aten backward ops, which have no ONNX translation.
# Each decomposition below computes only the gradient w.r.t. the activations (the weights are
# constants here), with forward ops that the ONNX exporter translates.


def _convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
                          output_padding, groups, output_mask):
    if transposed or output_mask[1] or output_mask[2]:
        raise NotImplementedError("only the input gradient of a forward convolution is exported")
    # A transposed convolution returns the smallest input size that gives this output size; a strided
    # convolution may have skipped rows and columns at the end, which output_padding adds back.
    spatial = range(2, input.dim())
    extra = [input.shape[d] - ((grad_output.shape[d] - 1) * stride[i] - 2 * padding[i]
                               + dilation[i] * (weight.shape[d] - 1) + 1)
             for i, d in enumerate(spatial)]
    grad_input = aten.convolution(grad_output, weight, None, stride, padding, dilation, True, extra, groups)
    return grad_input, None, None


def _threshold_backward(grad_output, input, threshold):
    return torch.where(input > threshold, grad_output, 0.0)


def _max_pool2d_with_indices_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    # indices hold each maximum's flat position within its H x W plane: scatter-add the gradient there
    # (adds, because overlapping windows can pick the same maximum).
    planes = torch.zeros_like(input).flatten(2)
    return planes.scatter_add(2, indices.flatten(2), grad_output.flatten(2)).view(input.shape)


def _max_pool2d_backward_by_matching(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """aten's max-pool input gradient without the pool's indices, for graphs run where MaxPool cannot output
    them (onnxruntime's WebGPU backend): each window's elements, in the order the indices count them
    (row-major), are matched against the window's maximum, and the first match takes its gradient."""
    if any(padding) or any(d != 1 for d in dilation) or ceil_mode:
        raise NotImplementedError("only unpadded, undilated max pooling is exported without indices")
    kh, kw = kernel_size
    stride = tuple(stride) or (kh, kw)
    height, width = input.shape[-2:]
    rows, columns = grad_output.shape[-2:]
    offsets = [(dy, dx) for dy in range(kh) for dx in range(kw)]
    elements = [input[:, :, dy:dy + stride[0] * (rows - 1) + 1:stride[0], dx:dx + stride[1] * (columns - 1) + 1:stride[1]]
                for dy, dx in offsets]
    maximum = functools.reduce(torch.maximum, elements)
    taken = torch.zeros_like(maximum, dtype=torch.bool)
    grad_input = torch.zeros_like(input)
    for (dy, dx), element in zip(offsets, elements):
        first = (element == maximum) & ~taken
        taken = taken | first
        grad_input = grad_input + _spread(torch.where(first, grad_output, 0.0), stride, (dy, dx), (height, width))
    return grad_input


def _spread(values: torch.Tensor, stride: tuple[int, int], offset: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """values [N, C, h, w] placed at rows offset[0] + stride[0] * i and columns offset[1] + stride[1] * j of
    zeros [N, C, *size] (zeros interleaved by stacking and reshaping, then padded and cropped)."""
    n, c, h, w = values.shape
    spread = torch.stack([values, *[torch.zeros_like(values)] * (stride[1] - 1)], dim=-1).reshape(n, c, h, w * stride[1])
    spread = torch.stack([spread, *[torch.zeros_like(spread)] * (stride[0] - 1)], dim=-2).reshape(
        n, c, h * stride[0], w * stride[1])
    pad_bottom = max(0, size[0] - offset[0] - h * stride[0])
    pad_right = max(0, size[1] - offset[1] - w * stride[1])
    spread = torch.nn.functional.pad(spread, (offset[1], pad_right, offset[0], pad_bottom))
    return spread[:, :, :size[0], :size[1]]


_BACKWARD_AS_FORWARD = {
    aten.convolution_backward.default: _convolution_backward,
    aten.threshold_backward.default: _threshold_backward,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_with_indices_backward,
}
# The same, for a graph whose MaxPool nodes need not output indices.
_BACKWARD_AS_FORWARD_WITHOUT_INDICES = {
    **_BACKWARD_AS_FORWARD,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_backward_by_matching,
}


# --- The traced function ---------------------------------------------------------------------------


def _head_gradient(model: MaskClassifier) -> torch.Tensor:
    """d logits / d (pooled block8 features): [3, C].

    In eval mode the head after block8 is average pooling, dropout (the identity), last_linear,
    last_bn and the logits linear: an affine map. So d logits[:, k] / d block8[:, c, i, j] is the
    same at every position i, j: (W_logits @ diag(bn scale) @ W_last_linear)[k, c] / (h * w), and
    that constant is also its spatial mean, the block8 Grad-CAM weight (exact, no autograd needed).
    Here last_bn's scale is already folded into W_last_linear. The product is computed in the graph
    from the stored weights, so compressed weights give the exact gradient of the compressed model.
    """
    backbone = model.backbone
    return backbone.logits.weight @ backbone.last_linear.weight


def _run_stages(model: MaskClassifier, after: str, through: str, x: torch.Tensor) -> torch.Tensor:
    """Runs the trunk stages after ``after`` up to and including ``through``."""
    for name in STAGES[STAGES.index(after) + 1:STAGES.index(through) + 1]:
        x = getattr(model.backbone, name)(x)
    return x


def _gradcam_function(model: MaskClassifier, target_layers: Sequence[str]):
    """image -> (logits, reason_logits, then activations and channel weights per target layer).

    block8's weights come from ``_head_gradient``. For earlier layers the trunk after the earliest
    of them runs on three copies of the batch, split into segments at the target layers, and the
    backward pass goes back through the segments, seeded at block8 copy k with class k's gradient:
    all three classes in one pass, each target layer's gradient read at its segment boundary.
    """
    traced = sorted({layer for layer in target_layers if layer != "block8"}, key=STAGES.index)
    classes = len(model.classes)

    def run(image: torch.Tensor):
        head_gradient = _head_gradient(model)
        activations, weights = {}, {}
        if traced:
            x = model.forward_until(image, traced[0])
            n = x.shape[0]
            activations[traced[0]] = x
            x = x.repeat(classes, 1, 1, 1)
            segments = []
            for after, through in zip(traced, [*traced[1:], "block8"]):
                x, vjp = torch.func.vjp(functools.partial(_run_stages, model, after, through), x)
                segments.append((after, vjp))
                activations[through] = x[:n]
            h, w = x.shape[-2:]
            gradient = (head_gradient / (h * w))[:, None, :, None, None].expand(classes, n, -1, h, w).reshape(x.shape)
            for layer, vjp in reversed(segments):
                (gradient,) = vjp(gradient)
                weights[layer] = gradient.reshape(classes, n, gradient.shape[1], -1).mean(-1).transpose(0, 1)
        else:
            activations["block8"] = model.forward_features(image)
        features = activations["block8"]
        h, w = features.shape[-2:]
        weights["block8"] = (head_gradient / (h * w)).expand(features.shape[0], -1, -1)
        logits, reason_logits = model.forward_head(features)
        return (logits, reason_logits, *[t for layer in target_layers for t in (activations[layer], weights[layer])])

    return run


def _trace(model: MaskClassifier, target_layers: Sequence[str], example: torch.Tensor,
           dynamic_batch: bool, max_pool_indices: bool = True) -> torch.fx.GraphModule:
    """The Grad-CAM function as an aten graph with forward ops only, its weights named as in the model.

    A real-tensor trace fixes every size; a symbolic one keeps them as expressions of the input's,
    so that torch.export can then leave the batch dynamic.
    """
    decompositions = _BACKWARD_AS_FORWARD if max_pool_indices else _BACKWARD_AS_FORWARD_WITHOUT_INDICES
    graph_module = make_fx(_gradcam_function(model, target_layers), decomposition_table=decompositions,
                           tracing_mode="symbolic" if dynamic_batch else "real",
                           _allow_non_fake_inputs=True)(example)
    graph = graph_module.graph
    graph.eliminate_dead_code()
    leftover = {str(node.target) for node in graph.nodes
                if node.op == "call_function" and "backward" in str(node.target)}
    if leftover:
        raise NotImplementedError(f"backward ops without a forward rewrite: {sorted(leftover)}")
    # make_fx captures weights as anonymous constants; point them back at the model's own names so
    # that the ONNX initializers keep them, and the forward and backward uses share one tensor.
    names = {id(tensor): name for name, tensor in [*model.named_parameters(), *model.named_buffers()]}
    for node in graph.nodes:
        if node.op == "get_attr":
            node.target = names[id(getattr(graph_module, node.target))]
    return torch.fx.GraphModule(model, graph)


# --- Weight storage --------------------------------------------------------------------------------


def compress_weights(proto: onnx.ModelProto, weights: str) -> onnx.ModelProto:
    """Stores the conv and linear weights (the float initializers of rank >= 2) compressed.

    ``fp16``: as float16, each followed by a Cast to float32. ``int8``: symmetric int8 per output
    channel (axis 0, the output channel of both torch conv [out, in, kh, kw] and linear [out, in]
    weights), each followed by a DequantizeLinear. Either way the graph computes in float32 and the
    new node's output keeps the weight's name, so a weight used by both a Conv and the ConvTranspose
    of its backward pass is stored once. Biases stay float32: they are small, and exact.

    onnxruntime folds the Casts into float weights when it loads the model. It keeps the
    DequantizeLinear nodes and decodes the int8 weights on every run, unless the session config
    ``session.disable_quant_qdq`` is "1", which makes it fold them too.
    """
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, not {weights!r}")
    if weights == "fp32":
        return proto
    proto = copy.deepcopy(proto)
    graph = proto.graph
    kept, decoders = [], []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or len(initializer.dims) < 2:
            kept.append(initializer)
            continue
        name = initializer.name
        array = numpy_helper.to_array(initializer)
        if weights == "fp16":
            kept.append(numpy_helper.from_array(array.astype(np.float16), f"{name}.fp16"))
            decoders.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=onnx.TensorProto.FLOAT))
        else:
            quantized, scale = _quantize_per_channel(array)
            kept += [numpy_helper.from_array(quantized, f"{name}.int8"),
                     numpy_helper.from_array(scale, f"{name}.scale")]
            decoders.append(helper.make_node("DequantizeLinear", [f"{name}.int8", f"{name}.scale"], [name], axis=0))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*decoders, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


def _quantize_per_channel(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantisation along axis 0: (values in [-127, 127], float32 scale per channel)."""
    peak = np.abs(array.reshape(array.shape[0], -1)).max(axis=1)
    # An all-zero channel gets scale 1: any scale decodes it exactly, and 0 would divide by zero.
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    quantized = np.round(array / scale.reshape(-1, *([1] * (array.ndim - 1))))
    return np.clip(quantized, -127, 127).astype(np.int8), scale


# --- Export ----------------------------------------------------------------------------------------


def output_names(target_layers: Sequence[str]) -> list[str]:
    return ["logits", "reason_logits",
            *[f"{layer}_{kind}" for layer in target_layers for kind in ("activations", "weights")]]


def export_classifier(model: MaskClassifier, path: str | Path, target_layers: Sequence[str] = ("block8", "repeat_2"),
                      batch_size: int | None = None, weights: str = "fp32", max_pool_indices: bool = True) -> dict:
    """Writes the classifier with Grad-CAM outputs (see the module docstring) to ``path`` as ONNX.

    ``batch_size=None`` gives a dynamic batch axis named ``batch``; an int fixes it. ``weights`` is
    fp32, fp16 or int8 (see ``compress_weights``). ``max_pool_indices=False`` routes the backward pass
    through max pooling without the pool's indices (``_max_pool2d_backward_by_matching``: the same
    gradient, more operations), for runtimes whose MaxPool cannot output them. The model is exported in eval mode, with its
    batch norms folded into the convolutions; it is not modified. Returns the graph's input and
    output names and shapes, the target layers' map sizes, the class and reason names and the
    preprocessing.
    """
    unknown = [layer for layer in target_layers if layer not in STAGES]
    if unknown or not target_layers or len(set(target_layers)) != len(target_layers):
        raise ValueError(f"target layers must be distinct trunk stages {STAGES}, got {tuple(target_layers)}")
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, not {weights!r}")
    folded = _fold_batch_norms(model)
    size = model.preprocessing.size
    dynamic = batch_size is None
    # A symbolic trace would specialise a batch of 1 into the graph, so the dynamic one traces 2.
    example = torch.zeros(2 if dynamic else batch_size, 3, size, size)
    graph_module = _trace(folded, target_layers, example, dynamic, max_pool_indices)
    names = output_names(target_layers)
    program = torch.onnx.export(graph_module, (example,), input_names=[INPUT_NAME], output_names=names,
                                opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
                                dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic else None)
    proto = compress_weights(program.model_proto, weights)
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)

    def shape(value: onnx.ValueInfoProto) -> list[int | str]:
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    outputs = {value.name: shape(value) for value in proto.graph.output}
    return {
        "input": {"name": INPUT_NAME, "shape": shape(proto.graph.input[0])},
        "outputs": outputs,
        "maps": {layer: outputs[f"{layer}_activations"][2:] for layer in target_layers},
        "classes": list(model.classes),
        "reasons": list(model.reasons),
        "preprocessing": model.preprocessing.to_dict(),
        "opset": OPSET,
        "weights": weights,
    }


# --- Graphs that read their weights from the full graph's file ----------------------------------------

LIVE_TARGET_LAYERS = ("block8",)
INLINE_BYTES = 1024  # smaller weights are stored in the graph itself


def export_live_classifier(model: MaskClassifier, full_path: str | Path, path: str | Path) -> dict:
    """The webcam mode's graph: the same outputs for block8 only, its weights read from ``full_path``.

    block8's Grad-CAM weights are constants of the head (``_head_gradient``), so this graph is the
    forward pass alone: about a third of the full graph's time, which runs the trunk after repeat_2
    three times and back. See ``export_sharing_weights``.
    """
    return export_sharing_weights(model, full_path, path, LIVE_TARGET_LAYERS)


def export_gpu_classifier(model: MaskClassifier, full_path: str | Path, path: str | Path,
                          target_layers: Sequence[str]) -> dict:
    """The full graph for onnxruntime's WebGPU backend, whose MaxPool does not output indices: the same
    outputs, max pooling's backward pass found by matching (``max_pool_indices=False``), its weights read
    from ``full_path``. See ``export_sharing_weights``."""
    return export_sharing_weights(model, full_path, path, target_layers, max_pool_indices=False)


def export_sharing_weights(model: MaskClassifier, full_path: str | Path, path: str | Path,
                           target_layers: Sequence[str], max_pool_indices: bool = True) -> dict:
    """Writes a graph of the model to ``path`` with no weights of its own.

    Its weights are ONNX external data that point into ``full_path``, the full graph already exported
    (and maybe kept) from the same model, at the byte offsets where that file stores the same tensors:
    the site downloads and checks the weights once, and every graph computes with identical values. The
    files must stay side by side (the reference is by file name). Returns ``export_classifier``'s
    description of the graph, with ``weights_file``.
    """
    full_path, path = Path(full_path), Path(path)
    full = onnx.load(full_path)
    weights = _weight_format(full)
    scratch = path.with_name(path.name + ".tmp")
    try:
        description = export_classifier(model, scratch, target_layers, batch_size=None, weights=weights,
                                        max_pool_indices=max_pool_indices)
        proto = onnx.load(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    stored = {tensor.name: tensor for tensor in full.graph.initializer}
    blob = full_path.read_bytes()
    searched_from = 0
    tensors = []
    for tensor in proto.graph.initializer:
        source = stored.get(tensor.name)
        if source is None or list(source.dims) != list(tensor.dims) or source.data_type != tensor.data_type:
            tensors.append(tensor)  # a constant of this graph only (e.g. a folded shape): small, kept inline
            continue
        array = numpy_helper.to_array(source)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()  # ONNX stores little-endian
        if len(data) < INLINE_BYTES:
            tensors.append(source)
            continue
        # Tensors are stored in graph order, so the next one is usually found right after the last.
        offset = blob.find(data, searched_from)
        if offset < 0:
            offset = blob.find(data)
        if offset < 0:
            raise ValueError(f"{tensor.name}: its bytes are not stored contiguously in {full_path}")
        searched_from = offset + len(data)
        reference = onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type,
                                     data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", full_path.name), ("offset", str(offset)), ("length", str(len(data)))):
            reference.external_data.add(key=key, value=value)
        tensors.append(reference)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(tensors)
    path.write_bytes(proto.SerializeToString())
    onnx.checker.check_model(str(path), full_check=True)
    return {**description, "weights_file": full_path.name}


def _weight_format(proto: onnx.ModelProto) -> str:
    """The ``compress_weights`` format of an exported graph, read from its weight decoders."""
    operators = {node.op_type for node in proto.graph.node}
    return "int8" if "DequantizeLinear" in operators else "fp16" if any(
        t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer) else "fp32"


# --- Grad-CAM from the outputs ------------------------------------------------------------------------


def gradcam_from_outputs(activations: np.ndarray, weights: np.ndarray, class_index: int) -> np.ndarray:
    """The coarse Grad-CAM map [N, h, w] for one class from a layer's ``_activations`` [N, C, h, w] and
    ``_weights`` [N, 3, C]: ReLU of the weighted channel sum, then scaled to [0, 1] per image as
    pytorch_grad_cam's ``scale_cam_image`` does (x - min, then / (1e-7 + max))."""
    cam = np.einsum("nc,nchw->nhw", weights[:, class_index].astype(np.float32), activations.astype(np.float32))
    return _min_max(np.maximum(cam, 0))


def class_heatmaps(outputs: dict[str, np.ndarray], classes: np.ndarray, size: int,
                   layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Per target layer, the Grad-CAM map [N, size, size] of ``classes[i]`` for each image i of a graph's
    outputs (``L_activations``, ``L_weights``), upsampled as pytorch_grad_cam does."""
    maps = {}
    for layer in layers:
        coarse = np.concatenate([gradcam_from_outputs(outputs[f"{layer}_activations"][i:i + 1],
                                                      outputs[f"{layer}_weights"][i:i + 1], int(k))
                                 for i, k in enumerate(classes)])
        maps[layer] = upsample_cam(coarse, size)
    return maps


def upsample_cam(cam: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Coarse maps [N, h, w] -> [N, height, width], as pytorch_grad_cam finishes a one-layer Grad-CAM:
    cv2.resize with bilinear interpolation (pixel centres aligned, edges clamped), then min-max
    scaling again. ``size`` is the side of a square or (width, height), cv2's order."""
    width, height = (size, size) if isinstance(size, int) else size
    rows = _linear_resize_matrix(cam.shape[1], height)
    columns = _linear_resize_matrix(cam.shape[2], width)
    return _min_max(np.einsum("yh,nhw,xw->nyx", rows, cam.astype(np.float32), columns))


def _linear_resize_matrix(source: int, target: int) -> np.ndarray:
    """[target, source] weights of cv2's INTER_LINEAR along one axis: target pixel i samples source
    coordinate (i + 0.5) * source / target - 0.5, clamped to the first and last source pixel."""
    position = np.clip((np.arange(target) + 0.5) * (source / target) - 0.5, 0, source - 1)
    left = np.floor(position).astype(int)
    right = np.minimum(left + 1, source - 1)
    fraction = (position - left).astype(np.float32)
    matrix = np.zeros((target, source), dtype=np.float32)
    np.add.at(matrix, (np.arange(target), left), 1 - fraction)
    np.add.at(matrix, (np.arange(target), right), fraction)
    return matrix


def _min_max(cams: np.ndarray) -> np.ndarray:
    cams = cams - cams.min(axis=(1, 2), keepdims=True)
    return (cams / (1e-7 + cams.max(axis=(1, 2), keepdims=True))).astype(np.float32)


# --- Command line ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    from training.train import load_checkpoint, model_from_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a model.pt written by masklens-train")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default="fp32")
    parser.add_argument("--target-layers", nargs="+", default=["block8", "repeat_2"], choices=STAGES)
    parser.add_argument("--batch-size", type=int, default=None, help="fixed batch size (default: dynamic)")
    args = parser.parse_args(argv)
    model = model_from_checkpoint(load_checkpoint(args.checkpoint))
    start = time.perf_counter()
    description = export_classifier(model, args.out, args.target_layers, args.batch_size, args.weights)
    print(json.dumps(description, indent=1))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
