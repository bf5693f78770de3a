"""Crop a detected face the way the classifier's training images are framed ("crop as trained").

The classifier was trained on MaskedFace-Net / FFHQ aligned crops: square images in which the face
sits at a fixed place and size. The rule (``Framing``) is in units of the face size
``s = (box width + box height) / 2``: the crop is a square of side ``side * s`` centred
``(center_dx * s, center_dy * s)`` from the box centre. ``masklens framing`` (``studies.framing``) measures
it on the training images; the export writes it into the manifest's ``face_crop``. ``crop_box_for_face``
applies it to a box; ``crop_face`` cuts and resizes the crop. Where the crop reaches past the photo, the
photo's edge pixels are repeated: FFHQ filled such areas with blurred reflections, which repeated edges
resemble more than black does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Framing:
    """Square crop relative to a face box, in face sizes ((box width + box height) / 2)."""

    center_dx: float  # crop centre minus box centre, x
    center_dy: float  # crop centre minus box centre, y (positive: the crop reaches further down)
    side: float  # crop side


def face_size(box) -> float:
    x1, y1, x2, y2 = box
    return ((x2 - x1) + (y2 - y1)) / 2


def crop_box_for_face(box, framing: Framing) -> tuple[float, float, float, float]:
    """Face box (x1, y1, x2, y2) -> the square crop (x1, y1, x2, y2); may extend past the image."""
    x1, y1, x2, y2 = box
    size = face_size(box)
    cx = (x1 + x2) / 2 + framing.center_dx * size
    cy = (y1 + y2) / 2 + framing.center_dy * size
    half = framing.side * size / 2
    return cx - half, cy - half, cx + half, cy + half


def grown_downwards(framing: Framing, side: float) -> Framing:
    """The same top edge and centre line, the crop grown (or shrunk) at the bottom to ``side``.

    MaskedFace-Net's crops end just below the chin, so a mask worn under the chin or on the neck lies
    outside them: a framing grown downwards shows it (``masklens framing --side``).
    """
    return Framing(framing.center_dx, framing.center_dy + (side - framing.side) / 2, side)


def reframe(rgb: np.ndarray, measured: Framing, target: Framing) -> np.ndarray:
    """A square image framed by ``measured`` around its face -> the face framed by ``target``, same size.

    MaskedFace-Net's images are crops framed as ``results/framing.json`` measures; a model trained for
    another framing sees them re-cut, with their edge pixels repeated where the new crop reaches past
    them (as ``crop_face`` does with photos).
    """
    height, width = rgb.shape[:2]
    if height != width:
        raise ValueError(f"reframe takes square images, got {width} x {height}")
    size = width / measured.side
    cx = width / 2 - measured.center_dx * size
    cy = height / 2 - measured.center_dy * size
    box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    return crop_face(rgb, box, target, width)


def crop_face(rgb: np.ndarray, box, framing: Framing, out_size: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] photo and face box -> the framed crop, uint8 [out_size, out_size, 3].

    The crop box is rounded to whole pixels, cut out with the photo's edge pixels repeated beyond
    its borders (by clamping the indices), and resized with Pillow's bilinear filter, the filter
    the classifier's preprocessing uses.
    """
    x1, y1, x2, _ = crop_box_for_face(box, framing)
    side = max(1, round(x2 - x1))
    left, top = round(x1), round(y1)
    rows = np.clip(np.arange(top, top + side), 0, rgb.shape[0] - 1)
    cols = np.clip(np.arange(left, left + side), 0, rgb.shape[1] - 1)
    crop = Image.fromarray(np.ascontiguousarray(rgb[rows][:, cols]))
    return np.asarray(crop.resize((out_size, out_size), Image.Resampling.BILINEAR))
