"""How an exported graph stores its weights: fp32, fp16 (Cast to float32) or int8 (DequantizeLinear).

The graph computes in float32 whatever the storage; ``compress_weights`` rewrites a float32 graph, and
``weight_format`` reads the format back from a graph.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHT_FORMATS = ("fp32", "fp16", "int8")
# With int8 weights, tensors of fewer values than this stay fp16. They are about 1% of the network's values, and
# they include the stem's first convolutions on raw pixels, whose int8 rounding moved the probabilities most:
# measured on the shipped network, quantizing conv2d_1a alone (864 values) moved them by up to 0.036 on the
# worst faces, any single layer past the stem by at most 0.0012.
INT8_MIN_VALUES = 16_384


def compress_weights(proto: onnx.ModelProto, weights: str) -> onnx.ModelProto:
    """Stores the conv and linear weights (the float initializers of rank >= 2) compressed.

    ``fp16``: as float16, each followed by a Cast to float32. ``int8``: symmetric int8 per output
    channel (axis 0, the output channel of both torch conv [out, in, kh, kw] and linear [out, in]
    weights), each followed by a DequantizeLinear; tensors of fewer than ``INT8_MIN_VALUES`` values as
    fp16. Either way the graph computes in float32 and the
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
        if weights == "fp16" or array.size < INT8_MIN_VALUES:
            kept.append(numpy_helper.from_array(array.astype(np.float16), f"{name}.fp16"))
            decoders.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=onnx.TensorProto.FLOAT))
        else:
            quantized, scale = _quantize_per_channel(array)
            kept += [
                numpy_helper.from_array(quantized, f"{name}.int8"),
                numpy_helper.from_array(scale, f"{name}.scale"),
            ]
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


def weight_format(proto: onnx.ModelProto) -> str:
    """The ``compress_weights`` format of an exported graph, read from its weight decoders."""
    operators = {node.op_type for node in proto.graph.node}
    return (
        "int8"
        if "DequantizeLinear" in operators
        else "fp16"
        if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
        else "fp32"
    )
