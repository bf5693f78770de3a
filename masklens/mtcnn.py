"""MTCNN face detection in numpy over onnxruntime: the reference the browser version follows.

``FaceDetector(model_dir).detect(rgb)`` takes an RGB ``uint8`` array ``[H, W, 3]`` and returns a list
of ``Face``: ``box`` float32 ``[4]`` (x1, y1, x2, y2 in pixels of the input; may reach past its
edges), ``score`` (O-Net face probability) and ``landmarks`` float32 ``[5, 2]`` (x, y of: the eye on
the image's left, the other eye, the nose tip, the mouth corner on the image's left, the other mouth
corner), highest score first.

``model_dir`` holds the files written by ``export/face_detector.py`` (their I/O is documented there):
``pnet.onnx`` (``image`` [N, 3, H, W] -> ``box_offsets`` [N, 4, h, w], ``probabilities`` [N, 2, h, w]),
``rnet.onnx`` (``image`` [N, 3, 24, 24] -> ``box_offsets`` [N, 4], ``probabilities`` [N, 2]) and
``onet.onnx`` (``image`` [N, 3, 48, 48] -> ``box_offsets`` [N, 4], ``landmarks`` [N, 10],
``probabilities`` [N, 2]).

The cascade reproduces ``facenet_pytorch.models.utils.detect_face`` (facenet-pytorch 2.6.0) step by
step, quirks included, so that both find the same faces:

1. pyramid: scales s = 12/min_face_size * factor**k while s * the shorter side >= 12; each level
   is ``area_resize``d to ``int(H * s + 1) x int(W * s + 1)``.
2. P-Net on every level: cells with face probability >= thresholds[0] give 12 x 12 boxes mapped back
   to the image; NMS (IoU 0.5) within the level; NMS (IoU 0.7) over all levels; the box offsets are
   applied with widths ``x2 - x1``; boxes are made square.
3. R-Net on 24 x 24 crops: probability > thresholds[1]; NMS (IoU 0.7); offsets applied with widths
   ``x2 - x1 + 1``; square.
4. O-Net on 48 x 48 crops: probability > thresholds[2]; landmarks placed in the box; offsets applied;
   NMS with overlap = intersection / smaller area, 0.7, and areas counted inclusively (+1).

Crops are taken from the box clipped to the image (1-based, truncated coordinates, as in facenet)
and area-resized, not zero-padded as in the original MTCNN, so a box running past an edge gives a
stretched crop. Everything is float32 as in torch.

Deviations from facenet-pytorch, all negligible in the parity test (``tests/test_face_detector.py``):
``area_resize`` sums in float64, so its pixels differ from torch's by float32 rounding; NMS breaks
ties in score by position (see ``nms``), where facenet's order among equal scores depends on its
sort implementation (neither torch's nor numpy's default sort is stable on this machine);
a box whose clipped crop is empty is dropped (facenet raises an error).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

NET_NAMES = ("pnet", "rnet", "onet")
PNET_CELL = 12  # P-Net's receptive field in pixels of the pyramid level
PNET_STRIDE = 2
RNET_SIZE = 24
ONET_SIZE = 48


@dataclass(frozen=True, eq=False)
class Face:
    box: np.ndarray  # float32 [4]: x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # float32 [5, 2]: x, y


# --- image operations ---------------------------------------------------------------------------


def _prefix_sums(image: np.ndarray, axis: int) -> np.ndarray:
    """prefix[k] = sum of the first k entries along ``axis`` (float64, accumulated in order)."""
    padding = [(0, 0)] * image.ndim
    padding[axis] = (1, 0)
    return np.pad(np.cumsum(image, axis=axis, dtype=np.float64), padding)


def _window_means(prefix: np.ndarray, in_len: int, out_len: int, axis: int) -> np.ndarray:
    i = np.arange(out_len)
    # torch's adaptive average pooling windows: [floor(i * in / out), ceil((i + 1) * in / out)).
    starts = (i * in_len) // out_len
    ends = -((-(i + 1) * in_len) // out_len)
    sums = np.take(prefix, ends, axis=axis) - np.take(prefix, starts, axis=axis)
    shape = [1] * prefix.ndim
    shape[axis] = out_len
    return sums / (ends - starts).reshape(shape)


def area_resize(image: np.ndarray, out_h: int, out_w: int, row_prefix: np.ndarray | None = None) -> np.ndarray:
    """Resizes a [C, H, W] array like torch ``interpolate(mode="area")`` (adaptive average pooling).

    Each output pixel is the plain mean of the input rectangle its window covers (windows overlap
    when the size ratio is not an integer), so the mean is separable: rows, then columns, each from
    prefix sums. ``row_prefix`` (``_prefix_sums(image, axis=1)``) lets the pyramid, which resizes one
    image to many sizes, compute the costly full-size sums once; the result is the same to the bit.
    """
    if row_prefix is None:
        row_prefix = _prefix_sums(image, axis=1)
    rows = _window_means(row_prefix, image.shape[1], out_h, axis=1)
    return _window_means(_prefix_sums(rows, axis=2), image.shape[2], out_w, axis=2).astype(np.float32)


def normalize(image: np.ndarray) -> np.ndarray:
    """Pixel values 0..255 -> the nets' input range, about -1..1."""
    return (image - np.float32(127.5)) * np.float32(0.0078125)


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which a face of min_face_size px, and every factor**-k times larger, fills 12 px."""
    scale = PNET_CELL / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= PNET_CELL:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def pyramid_level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return int(height * scale + 1), int(width * scale + 1)


def crop_bounds(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes -> int [N, 4] slice bounds (x0, y0, x1, y1) of their part inside the image.

    facenet truncates the coordinates, treats them as 1-based and clips them to [1, size]; the
    slice is then [x1 - 1, x2). Bounds with x1 <= x0 or y1 <= y0 mean an empty crop.
    """
    bounds = np.trunc(boxes).astype(np.int64)
    x0 = np.maximum(bounds[:, 0], 1) - 1
    y0 = np.maximum(bounds[:, 1], 1) - 1
    x1 = np.minimum(bounds[:, 2], width)
    y1 = np.minimum(bounds[:, 3], height)
    return np.stack([x0, y0, x1, y1], axis=1)


def crop_patches(image: np.ndarray, bounds: np.ndarray, size: int) -> np.ndarray:
    """[3, H, W] image, non-empty bounds -> float32 [N, 3, size, size] area-resized crops."""
    patches = np.empty((len(bounds), 3, size, size), dtype=np.float32)
    for k, (x0, y0, x1, y1) in enumerate(bounds):
        patches[k] = area_resize(image[:, y0:y1, x0:x1], size, size)
    return patches


# --- box operations (float32 [N, 4] boxes x1, y1, x2, y2) ----------------------------------------


def pnet_candidates(
    box_offsets: np.ndarray, probabilities: np.ndarray, scale: float, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pyramid level's P-Net output ([4, h, w], [2, h, w]) -> (boxes, scores, box offsets).

    Every output cell whose face probability reaches the threshold stands for a 12 x 12 window at
    twice its position in the level; the window is mapped back to image pixels.
    """
    face = probabilities[1]
    ys, xs = np.nonzero(face >= threshold)  # row-major order, as torch's nonzero
    cells = np.stack([xs, ys], axis=1).astype(np.float32)
    scale32 = np.float32(scale)
    top_left = np.floor((PNET_STRIDE * cells + 1) / scale32)
    bottom_right = np.floor((PNET_STRIDE * cells + PNET_CELL) / scale32)
    boxes = np.concatenate([top_left, bottom_right], axis=1).astype(np.float32)
    return boxes, face[ys, xs], box_offsets[:, ys, xs].T


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    overlap: str = "iou",
    inclusive: bool = False,
    ties: str = "first",
) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept indices, highest score first.

    A box is dropped when its overlap with a kept, higher-scoring box exceeds the threshold.
    overlap "iou" is intersection / union, "min" intersection / the smaller area. inclusive counts
    a box's width as x2 - x1 + 1 (the original MTCNN code, used by facenet's last stage) instead of
    x2 - x1 (torchvision's nms, used by facenet's first two stages).

    ties says which of two boxes with equal scores goes first: "first" in the input (torchvision
    sorts scores in descending order) or "last" (the MTCNN code sorts them in ascending order and
    takes from the end). Ties are common: face probabilities near 1 saturate in float32.
    """
    one = np.float32(1 if inclusive else 0)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-scores, kind="stable") if ties == "first" else np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter_w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + one
        inter_h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + one
        inter = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
        if overlap == "iou":
            ratio = inter / (areas[best] + areas[rest] - inter)
        else:
            ratio = inter / np.minimum(areas[best], areas[rest])
        order = rest[ratio <= threshold]
    return np.asarray(keep, dtype=np.int64)


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray, inclusive: bool) -> np.ndarray:
    """Moves each box edge by its regression offset times the box width or height.

    facenet measures the size as x2 - x1 after P-Net and as x2 - x1 + 1 after R-Net and O-Net.
    """
    one = np.float32(1 if inclusive else 0)
    sizes = np.stack([boxes[:, 2] - boxes[:, 0] + one, boxes[:, 3] - boxes[:, 1] + one], axis=1)
    return (boxes + offsets * np.tile(sizes, 2)).astype(np.float32)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grows each box to a square on its longer side, keeping its centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * np.float32(0.5) - side * np.float32(0.5)
    y1 = boxes[:, 1] + h * np.float32(0.5) - side * np.float32(0.5)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float32)


def place_landmarks(boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """O-Net landmarks [N, 10] (fractions of the box it saw) -> image pixels [N, 5, 2]."""
    w = boxes[:, 2:3] - boxes[:, 0:1] + np.float32(1)
    h = boxes[:, 3:4] - boxes[:, 1:2] + np.float32(1)
    xs = w * landmarks[:, :5] + boxes[:, 0:1] - np.float32(1)
    ys = h * landmarks[:, 5:] + boxes[:, 1:2] - np.float32(1)
    return np.stack([xs, ys], axis=2).astype(np.float32)


# --- the cascade --------------------------------------------------------------------------------


def _open(path: Path, session_options: ort.SessionOptions | None) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=session_options, providers=["CPUExecutionProvider"])


class FaceDetector:
    """The three ONNX nets and the cascade's settings (defaults are facenet-pytorch's)."""

    def __init__(
        self,
        model_dir: str | Path,
        min_face_size: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        session_options: ort.SessionOptions | None = None,
    ):
        model_dir = Path(model_dir)
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.sessions = {name: _open(model_dir / f"{name}.onnx", session_options) for name in NET_NAMES}
        # The cascade masklens.face_finder.find_faces runs where this one finds no face (DetectionRule.detector).
        self.second_look: FaceDetector | None = None

    def with_nets(
        self, model_dir: str | Path, files: Mapping[str, str], session_options: ort.SessionOptions | None = None
    ) -> FaceDetector:
        """This cascade with the nets in ``files`` (net -> file in ``model_dir``) in place of its own; it shares
        the others' sessions."""
        other = copy.copy(self)
        opened = {net: _open(Path(model_dir) / file, session_options) for net, file in files.items()}
        other.sessions = {**self.sessions, **opened}
        other.second_look = None
        return other

    def run(self, net: str, images: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one net on a float32 [N, 3, h, w] batch; returns its outputs by name."""
        session = self.sessions[net]
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, {"image": images})))

    def detect(self, rgb: np.ndarray, min_face_size: float | None = None) -> list[Face]:
        """RGB uint8 [H, W, 3] -> the faces found, highest score first (smallest face: the detector's,
        or ``min_face_size``)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB array [H, W, 3], got shape {rgb.shape}")
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        boxes = self.refine(image, self.propose(image, min_face_size or self.min_face_size))
        boxes, scores, landmarks = self.output(image, boxes)
        return [Face(box=b, score=float(s), landmarks=p) for b, s, p in zip(boxes, scores, landmarks)]

    def propose(self, image: np.ndarray, min_face_size: float) -> np.ndarray:
        """Stage 1, P-Net over the pyramid: [3, H, W] image -> square candidate boxes [N, 4]."""
        _, height, width = image.shape
        level_boxes, level_scores, level_offsets = [], [], []
        row_prefix = _prefix_sums(image, axis=1)
        for scale in pyramid_scales(height, width, min_face_size, self.factor):
            level = normalize(area_resize(image, *pyramid_level_size(height, width, scale), row_prefix))
            out = self.run("pnet", level[None])
            boxes, scores, offsets = pnet_candidates(
                out["box_offsets"][0], out["probabilities"][0], scale, self.thresholds[0]
            )
            keep = nms(boxes, scores, 0.5)
            level_boxes.append(boxes[keep])
            level_scores.append(scores[keep])
            level_offsets.append(offsets[keep])
        if not level_boxes:
            return np.zeros((0, 4), dtype=np.float32)
        boxes, scores, offsets = (np.concatenate(p) for p in (level_boxes, level_scores, level_offsets))
        keep = nms(boxes, scores, 0.7)
        return square(apply_offsets(boxes[keep], offsets[keep], inclusive=False))

    def refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2, R-Net: candidate boxes [N, 4] -> fewer, better square boxes [M, 4]."""
        boxes, bounds = self._with_nonempty_crops(image, boxes)
        if not len(boxes):
            return boxes
        out = self.run("rnet", normalize(crop_patches(image, bounds, RNET_SIZE)))
        scores = out["probabilities"][:, 1]
        passed = scores > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], scores[passed], out["box_offsets"][passed]
        keep = nms(boxes, scores, 0.7)
        return square(apply_offsets(boxes[keep], offsets[keep], inclusive=True))

    def output(
        self, image: np.ndarray, boxes: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3, O-Net: boxes [N, 4] -> final boxes [M, 4], scores [M], landmarks [M, 5, 2].

        ``threshold`` replaces the cascade's third threshold (the whole-photo fallback's own).
        """
        boxes, bounds = self._with_nonempty_crops(image, boxes)
        if not len(boxes):
            return boxes, np.zeros(0, dtype=np.float32), np.zeros((0, 5, 2), dtype=np.float32)
        out = self.run("onet", normalize(crop_patches(image, bounds, ONET_SIZE)))
        scores = out["probabilities"][:, 1]
        passed = scores > (self.thresholds[2] if threshold is None else threshold)
        boxes, scores = boxes[passed], scores[passed]
        # Landmarks are relative to the box O-Net saw, so they are placed before the box moves.
        landmarks = place_landmarks(boxes, out["landmarks"][passed])
        boxes = apply_offsets(boxes, out["box_offsets"][passed], inclusive=True)
        keep = nms(boxes, scores, 0.7, overlap="min", inclusive=True, ties="last")
        return boxes[keep], scores[keep], landmarks[keep]

    @staticmethod
    def _with_nonempty_crops(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, height, width = image.shape
        bounds = crop_bounds(boxes, width, height)
        nonempty = (bounds[:, 2] > bounds[:, 0]) & (bounds[:, 3] > bounds[:, 1])
        return boxes[nonempty], bounds[nonempty]
