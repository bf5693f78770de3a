"""Grad-CAM maps from a graph's outputs, in numpy: what the predictor computes and site/js/gradcam.js mirrors.

The exported classifier (``export.classifier``) outputs, per target layer L, ``L_activations`` [N, C, h, w]
and ``L_weights`` [N, 3, C] (the spatial means of d logits / d activations); everything after that is here,
finished exactly as pytorch_grad_cam finishes a one-layer Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gradcam_from_outputs(activations: np.ndarray, weights: np.ndarray, class_index: int) -> np.ndarray:
    """The coarse Grad-CAM map [N, h, w] for one class from a layer's ``_activations`` [N, C, h, w] and
    ``_weights`` [N, 3, C]: ReLU of the weighted channel sum, then scaled to [0, 1] per image as
    pytorch_grad_cam's ``scale_cam_image`` does (x - min, then / (1e-7 + max))."""
    cam = np.einsum("nc,nchw->nhw", weights[:, class_index].astype(np.float32), activations.astype(np.float32))
    return _min_max(np.maximum(cam, 0))


def class_heatmaps(
    outputs: dict[str, np.ndarray], classes: np.ndarray, size: int, layers: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per target layer, the Grad-CAM map [N, size, size] of ``classes[i]`` for each image i of a graph's
    outputs (``L_activations``, ``L_weights``), upsampled as pytorch_grad_cam does."""
    maps = {}
    for layer in layers:
        coarse = np.concatenate(
            [
                gradcam_from_outputs(
                    outputs[f"{layer}_activations"][i : i + 1], outputs[f"{layer}_weights"][i : i + 1], int(k)
                )
                for i, k in enumerate(classes)
            ]
        )
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


def overlay_heatmap(crop: np.ndarray, cam: np.ndarray, colormap: np.ndarray, image_weight: float) -> np.ndarray:
    """pytorch_grad_cam's show_cam_on_image: the JET-coloured map blended on the crop, rescaled to its max."""
    heatmap = colormap[np.uint8(255 * cam)].astype(np.float32) / 255
    blended = (1 - image_weight) * heatmap + image_weight * (crop.astype(np.float32) / 255)
    return np.uint8(255 * blended / blended.max())
