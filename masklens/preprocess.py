"""Image -> network input, with numpy and Pillow only (the ONNX predictor uses it without torch)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def load_rgb(path) -> Image.Image:
    """Decodes an image file fully, applies its EXIF orientation and returns it as RGB."""
    with Image.open(path) as image:
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")


def to_input_array(image: Image.Image, size: int, mean, std, interpolation: str = "bilinear") -> np.ndarray:
    """Resizes an RGB image to size x size and normalises it: float32 [3, size, size]."""
    resized = image.convert("RGB").resize((size, size), _RESAMPLE[interpolation])
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
