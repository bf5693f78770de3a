"""Backward ops rewritten as forward ops, for a Grad-CAM graph that ONNX can hold.

make_fx traces the vector-Jacobian product into aten backward ops, which have no ONNX translation. Each
decomposition below computes only the gradient w.r.t. the activations (the weights are constants here),
with forward ops that the ONNX exporter translates.
"""

from __future__ import annotations

import functools

import torch

aten = torch.ops.aten


def _convolution_backward(
    grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, output_mask
):
    if transposed or output_mask[1] or output_mask[2]:
        raise NotImplementedError("only the input gradient of a forward convolution is exported")
    # A transposed convolution returns the smallest input size that gives this output size; a strided
    # convolution may have skipped rows and columns at the end, which output_padding adds back.
    spatial = range(2, input.dim())
    extra = [
        input.shape[d]
        - ((grad_output.shape[d] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[d] - 1) + 1)
        for i, d in enumerate(spatial)
    ]
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
    elements = [
        input[
            :, :, dy : dy + stride[0] * (rows - 1) + 1 : stride[0], dx : dx + stride[1] * (columns - 1) + 1 : stride[1]
        ]
        for dy, dx in offsets
    ]
    maximum = functools.reduce(torch.maximum, elements)
    taken = torch.zeros_like(maximum, dtype=torch.bool)
    grad_input = torch.zeros_like(input)
    for (dy, dx), element in zip(offsets, elements):
        first = (element == maximum) & ~taken
        taken = taken | first
        grad_input = grad_input + _spread(torch.where(first, grad_output, 0.0), stride, (dy, dx), (height, width))
    return grad_input


def _spread(
    values: torch.Tensor, stride: tuple[int, int], offset: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """values [N, C, h, w] placed at rows offset[0] + stride[0] * i and columns offset[1] + stride[1] * j of
    zeros [N, C, *size] (zeros interleaved by stacking and reshaping, then padded and cropped)."""
    n, c, h, w = values.shape
    spread = torch.stack([values, *[torch.zeros_like(values)] * (stride[1] - 1)], dim=-1).reshape(
        n, c, h, w * stride[1]
    )
    spread = torch.stack([spread, *[torch.zeros_like(spread)] * (stride[0] - 1)], dim=-2).reshape(
        n, c, h * stride[0], w * stride[1]
    )
    pad_bottom = max(0, size[0] - offset[0] - h * stride[0])
    pad_right = max(0, size[1] - offset[1] - w * stride[1])
    spread = torch.nn.functional.pad(spread, (offset[1], pad_right, offset[0], pad_bottom))
    return spread[:, :, : size[0], : size[1]]


BACKWARD_AS_FORWARD = {
    aten.convolution_backward.default: _convolution_backward,
    aten.threshold_backward.default: _threshold_backward,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_with_indices_backward,
}

# The same, for a graph whose MaxPool nodes need not output indices.
BACKWARD_AS_FORWARD_WITHOUT_INDICES = {
    **BACKWARD_AS_FORWARD,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_backward_by_matching,
}
