"""Exports the classifier and its Grad-CAM channel weights as one ONNX graph.

The browser runs the model with onnxruntime-web, which has no autograd, so the gradients Grad-CAM
needs are computed by the exported graph itself, from the input image.

Graph inputs and outputs (all float32; N is the batch, H = W = ``model.preprocessing.size``):

- ``image`` [N, 3, H, W]: the normalised input (see ``masklens.preprocess.to_input_array``).
- ``logits`` [N, 3] and ``reason_logits`` [N, 3]: the model's two heads.
- for each target layer L (default ``block8`` and ``repeat_2``):
  ``L_activations`` [N, C, h, w], the layer's output, and
  ``L_weights`` [N, 3, C], the Grad-CAM channel weights: for every class k, the spatial mean of
  d logits[:, k] / d L_activations. At 160 px, block8 is [N, 1792, 3, 3], repeat_2 [N, 896, 8, 8].

The Grad-CAM map for class k is then ``masklens.gradcam.gradcam_from_outputs(L_activations, L_weights, k)``,
upsampled with ``masklens.gradcam.upsample_cam`` exactly as pytorch_grad_cam does it.

N is a dynamic axis when ``batch_size=None``; otherwise it is fixed to ``batch_size``, which gives
a graph with static shapes.

A model with ``mirror_average`` set is exported with its answer averaged over each image and its mirror
image (``training.model.MirrorPair``): the trunk runs on a batch of 2N inside the graph, and each
``L_activations`` is [N, 2C, h, w] (the image's channels, then its mirror's flipped back), ``L_weights``
[N, 3, 2C]; the Grad-CAM formula above is unchanged.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from training.model import STAGES, MaskClassifier

from .backward import BACKWARD_AS_FORWARD, BACKWARD_AS_FORWARD_WITHOUT_INDICES
from .weights import WEIGHT_FORMATS, compress_weights, weight_format

OPSET = 18
INPUT_NAME = "image"


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
    for name in STAGES[STAGES.index(after) + 1 : STAGES.index(through) + 1]:
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
        if model.mirror_average:
            return _mirror_averaged(looks(torch.cat([image, image.flip(-1)])), image.shape[0])
        return looks(image)

    def looks(image: torch.Tensor):
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


def _mirror_averaged(outputs: tuple[torch.Tensor, ...], n: int) -> tuple[torch.Tensor, ...]:
    """The outputs for a batch [images; mirror images] -> a mirror-averaged model's for the n images (see
    ``training.model.MirrorPair``): the mean of the two halves' logits; per target layer, each image's
    activations beside its mirror's flipped back into line, and the channel weights of the mean logits'
    gradient, half of each half's (a spatial mean is the same flipped or not)."""
    logits, reason_logits, *layers = outputs
    averaged = [(logits[:n] + logits[n:]) / 2, (reason_logits[:n] + reason_logits[n:]) / 2]
    for activations, weights in zip(layers[::2], layers[1::2]):
        averaged.append(torch.cat([activations[:n], activations[n:].flip(-1)], 1))
        averaged.append(torch.cat([weights[:n], weights[n:]], 2) / 2)
    return tuple(averaged)


def _trace(
    model: MaskClassifier,
    target_layers: Sequence[str],
    example: torch.Tensor,
    dynamic_batch: bool,
    max_pool_indices: bool = True,
) -> torch.fx.GraphModule:
    """The Grad-CAM function as an aten graph with forward ops only, its weights named as in the model.

    A real-tensor trace fixes every size; a symbolic one keeps them as expressions of the input's,
    so that torch.export can then leave the batch dynamic.
    """
    decompositions = BACKWARD_AS_FORWARD if max_pool_indices else BACKWARD_AS_FORWARD_WITHOUT_INDICES
    graph_module = make_fx(
        _gradcam_function(model, target_layers),
        decomposition_table=decompositions,
        tracing_mode="symbolic" if dynamic_batch else "real",
        _allow_non_fake_inputs=True,
    )(example)
    graph = graph_module.graph
    graph.eliminate_dead_code()
    leftover = {
        str(node.target) for node in graph.nodes if node.op == "call_function" and "backward" in str(node.target)
    }
    if leftover:
        raise NotImplementedError(f"backward ops without a forward rewrite: {sorted(leftover)}")
    # make_fx captures weights as anonymous constants; point them back at the model's own names so
    # that the ONNX initializers keep them, and the forward and backward uses share one tensor.
    names = {id(tensor): name for name, tensor in [*model.named_parameters(), *model.named_buffers()]}
    for node in graph.nodes:
        if node.op == "get_attr":
            node.target = names[id(getattr(graph_module, node.target))]
    return torch.fx.GraphModule(model, graph)


# --- Export ----------------------------------------------------------------------------------------


def output_names(target_layers: Sequence[str]) -> list[str]:
    return [
        "logits",
        "reason_logits",
        *[f"{layer}_{kind}" for layer in target_layers for kind in ("activations", "weights")],
    ]


def export_classifier(
    model: MaskClassifier,
    path: str | Path,
    target_layers: Sequence[str] = ("block8", "repeat_2"),
    batch_size: int | None = None,
    weights: str = "fp32",
    max_pool_indices: bool = True,
) -> dict:
    """Writes the classifier with Grad-CAM outputs (see the module docstring) to ``path`` as ONNX.

    ``batch_size=None`` gives a dynamic batch axis named ``batch``; an int fixes it. ``weights`` is
    fp32, fp16 or int8 (see ``compress_weights``). ``max_pool_indices=False`` routes the backward pass
    through max pooling without the pool's indices (``_max_pool2d_backward_by_matching``: the same
    gradient, more operations), for runtimes whose MaxPool cannot output them. The model is exported in eval
    mode, with its batch norms folded into the convolutions; it is not modified. Returns the graph's input and
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
    program = torch.onnx.export(
        graph_module,
        (example,),
        input_names=[INPUT_NAME],
        output_names=names,
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
        dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic else None,
    )
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
        "mirror_average": model.mirror_average,
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


def export_gpu_classifier(
    model: MaskClassifier, full_path: str | Path, path: str | Path, target_layers: Sequence[str]
) -> dict:
    """The full graph for onnxruntime's WebGPU backend, whose MaxPool does not output indices: the same
    outputs, max pooling's backward pass found by matching (``max_pool_indices=False``), its weights read
    from ``full_path``. See ``export_sharing_weights``."""
    return export_sharing_weights(model, full_path, path, target_layers, max_pool_indices=False)


def export_sharing_weights(
    model: MaskClassifier,
    full_path: str | Path,
    path: str | Path,
    target_layers: Sequence[str],
    max_pool_indices: bool = True,
) -> dict:
    """Writes a graph of the model to ``path`` with no weights of its own.

    Its weights are ONNX external data that point into ``full_path``, the full graph already exported
    (and maybe kept) from the same model, at the byte offsets where that file stores the same tensors:
    the site downloads and checks the weights once, and every graph computes with identical values. The
    files must stay side by side (the reference is by file name). Returns ``export_classifier``'s
    description of the graph, with ``weights_file``.
    """
    full_path, path = Path(full_path), Path(path)
    full = onnx.load(full_path)
    weights = weight_format(full)
    scratch = path.with_name(path.name + ".tmp")
    try:
        description = export_classifier(
            model, scratch, target_layers, batch_size=None, weights=weights, max_pool_indices=max_pool_indices
        )
        proto = onnx.load(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    stored = {tensor.name: (list(tensor.dims), tensor.data_type) for tensor in full.graph.initializer}
    blob = full_path.read_bytes()
    searched_from = 0
    tensors = []
    for tensor in proto.graph.initializer:
        # Found by its own bytes, never by name alone: the exporter names constants val_N in each graph
        # afresh, so one name can hold different values in the two graphs.
        array = numpy_helper.to_array(tensor)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()  # ONNX stores little-endian
        if len(data) < INLINE_BYTES:
            tensors.append(tensor)
            continue
        # Tensors are stored in graph order, so the next one is usually found right after the last.
        offset = blob.find(data, searched_from)
        if offset < 0:
            offset = blob.find(data)
        if offset < 0 and stored.get(tensor.name) == (list(tensor.dims), tensor.data_type):
            raise ValueError(f"{tensor.name}: its bytes are not stored contiguously in {full_path}")
        if offset < 0:
            tensors.append(tensor)  # a constant of this graph only (e.g. a folded shape), kept inline
            continue
        searched_from = offset + len(data)
        reference = onnx.TensorProto(
            name=tensor.name, dims=tensor.dims, data_type=tensor.data_type, data_location=onnx.TensorProto.EXTERNAL
        )
        for key, value in (("location", full_path.name), ("offset", str(offset)), ("length", str(len(data)))):
            reference.external_data.add(key=key, value=value)
        tensors.append(reference)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(tensors)
    path.write_bytes(proto.SerializeToString())
    onnx.checker.check_model(str(path), full_check=True)
    return {**description, "weights_file": full_path.name}
