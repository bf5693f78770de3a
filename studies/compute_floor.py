"""The compute floor of a graph on this machine: its multiply-add work over the machine's measured peak
matrix throughput, the time no runtime can beat (``masklens benchmark`` sets each runtime against it).

    graph_flops(path, batch=1)      floating-point operations of one run: Conv, ConvTranspose, Gemm, MatMul
    peak_gflops(threads)            a large float32 matrix product's GFLOP/s in torch

Only the matrix work is counted (2 operations per multiply-add); activations, pooling and additions are
left out, so the floor is a lower bound. ConvTranspose is counted too: the Grad-CAM graph's backward
pass through convolutions is exported as transposed convolutions (export/backward.py). Shapes come from
one run of the graph in onnxruntime (ONNX shape inference cannot follow the graph's computed reshapes).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

# The square matrices' side: large enough that a product runs at the CPU's matrix peak, small enough
# (about a tenth of a second on one core) to time many.
PEAK_SIDE = 1024


MATRIX_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _run_shapes(model, names: list[str], batch: int) -> dict[str, list[int]]:
    """The shapes of these tensors in one onnxruntime run of the graph on zeros at ``batch``."""
    import onnx
    import onnxruntime as ort

    model = onnx.shape_inference.infer_shapes(model)
    types = {info.name: info.type.tensor_type.elem_type for info in model.graph.value_info}
    outputs = {output.name for output in model.graph.output}
    for name in names:
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, 1), None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([batch if not isinstance(d, int) else d for d in i.shape], np.float32)
        for i in session.get_inputs()
    }
    wanted = [o.name for o in session.get_outputs() if o.name in names]
    return {name: list(value.shape) for name, value in zip(wanted, session.run(wanted, feeds))}


def graph_flops(path: str | Path, batch: int = 1) -> int:
    """Floating-point operations of one run of the ONNX graph at ``batch``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    shapes = {init.name: list(numpy_helper.to_array(init).shape) for init in model.graph.initializer}
    nodes = [node for node in model.graph.node if node.op_type in MATRIX_OPS]
    needed = {name for node in nodes for name in (*node.input[:2], node.output[0]) if name not in shapes}
    shapes.update(_run_shapes(model, sorted(needed), batch))
    flops = 0
    for node in nodes:
        data, weight, out = (shapes[name] for name in (*node.input[:2], node.output[0]))
        if node.op_type == "Conv":  # weight [out channels, in channels / group, kernel...]
            flops += 2 * math.prod(out) * math.prod(weight[1:])
        elif node.op_type == "ConvTranspose":  # weight [in channels, out channels / group, kernel...]
            flops += 2 * math.prod(data) * math.prod(weight[1:])
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            flops += 2 * math.prod(out) * data[0 if trans_a else 1]
        else:
            flops += 2 * math.prod(out) * data[-1]
    return flops


def peak_gflops(threads: int, repeats: int = 20) -> float:
    """This machine's float32 matrix-product throughput on ``threads`` threads: the GFLOP/s of the quickest
    of ``repeats`` products of two PEAK_SIDE-square matrices in torch (oneDNN / MKL kernels). The quickest,
    not the median: a peak, which the other work on a shared machine can only lower."""
    import torch

    a, b = (torch.from_numpy(np.random.default_rng(k).standard_normal((PEAK_SIDE,) * 2, np.float32)) for k in (0, 1))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a @ b  # warm-up: thread pool, packing buffers
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return 2 * PEAK_SIDE**3 / min(seconds) / 1e9
