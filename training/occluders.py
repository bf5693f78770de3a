"""Things on the lower face that are not masks, for faces labelled ``uncovered`` (hard negatives).

At the mouth (``MOUTH_OCCLUDERS``): a microphone, one to three fingers, a palm over the mouth, a thin
stick (a pen, a straw, a sprig), food being eaten (a fruit, a sandwich's corner, a long bun). Around
it (``LOWER_FACE_OCCLUDERS``): a beard, which covers as much of the jaw as a mask but leaves the lips
bare, and a scarf or turtleneck, up to just under the chin.
Without such faces, a model that has learned "something over the lower face = a mask" calls a singer,
a hand at the lips or a bearded chin a mask worn badly (the FFHQ faces it gets wrong), and a scarf a
mask pulled under the chin.
"""

from __future__ import annotations

import cv2
import numpy as np

from .placements import FacePoints, face_points

MOUTH_OCCLUDERS: tuple[str, ...] = ("microphone", "fingers", "palm", "stick", "food")
LOWER_FACE_OCCLUDERS: tuple[str, ...] = ("beard", "scarf")
OCCLUDERS: tuple[str, ...] = MOUTH_OCCLUDERS + LOWER_FACE_OCCLUDERS
# The kinds a run draws from (TrainConfig.occluders). "default" is the set before food was drawn, so that
# the runs made with it keep their exact items.
OCCLUDER_SETS: dict[str, tuple[str, ...]] = {
    "default": ("microphone", "fingers", "palm", "stick", "beard", "scarf"),
    "with-food": OCCLUDERS,
}
# Food colours (RGB): bread crust, crumb, red and green apple, banana, orange, chocolate.
FOOD_COLOURS = np.array(
    [[190, 140, 80], [225, 205, 160], [170, 30, 35], [130, 175, 60], [230, 200, 70], [235, 140, 35], [85, 50, 30]],
    np.float32,
)
# Drawn this many times larger, then shrunk: smooth edges.
SCALE = 4


class _Canvas:
    """A coverage canvas in the face frame: ``at`` and ``width`` turn d units into canvas pixels."""

    def __init__(self, face: FacePoints, shape: tuple[int, int]):
        self.face, self.shape = face, shape
        self.pixels = np.zeros((shape[0] * SCALE, shape[1] * SCALE), np.uint8)

    def at(self, across: float, down: float) -> tuple[int, int]:
        x, y = self.face.point(across, down) * SCALE
        return int(round(x)), int(round(y))

    def width(self, in_d: float) -> int:
        return max(1, int(round(in_d * self.face.d * SCALE)))

    def polygon(self, points: list[tuple[float, float]], value: int = 255) -> None:
        cv2.fillPoly(self.pixels, [np.array([self.at(*p) for p in points], np.int32)], value, cv2.LINE_AA)

    def coverage(self) -> np.ndarray:
        shrunk = cv2.resize(self.pixels, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_AREA)
        return shrunk.astype(np.float32) / 255.0


def _draw_at_mouth(canvas: _Canvas, kind: str, rng: np.random.Generator) -> None:
    face, at, width = canvas.face, canvas.at, canvas.width
    mouth = face.mouth + rng.uniform(-0.1, 0.15)
    if kind == "microphone":  # a round head at the mouth, its handle going down and aside
        side = rng.uniform(-0.35, 0.35)
        head = at(side, mouth + rng.uniform(0.05, 0.3))
        cv2.circle(canvas.pixels, head, width(rng.uniform(0.22, 0.34)), 255, -1, cv2.LINE_AA)
        end = at(side + rng.uniform(-0.6, 0.6), mouth + 2.5)
        cv2.line(canvas.pixels, head, end, 255, width(rng.uniform(0.12, 0.2)), cv2.LINE_AA)
    elif kind in ("fingers", "palm"):  # upright fingers over the lips; a palm adds the hand's back
        count = int(rng.integers(1, 4)) if kind == "fingers" else 4
        finger = rng.uniform(0.14, 0.2)
        start = rng.uniform(-0.3, 0.3) - (count - 1) * finger / 2
        top = mouth - rng.uniform(0.15, 0.45)
        for i in range(count):
            across = start + i * finger * 1.1
            bottom = at(across + rng.uniform(-0.1, 0.1), face.chin + 1.0)
            cv2.line(canvas.pixels, at(across, top), bottom, 255, width(finger), cv2.LINE_AA)
        if kind == "palm":
            centre = at(start + (count - 1) * finger * 0.55, mouth + 0.55)
            axes = (width(0.42), width(0.5))
            cv2.ellipse(canvas.pixels, centre, axes, float(rng.uniform(-20, 20)), 0, 360, 255, -1, cv2.LINE_AA)
    elif kind == "food":  # held to the mouth: round (a fruit), a corner (a sandwich) or long (a bun), a bite short
        centre = np.array([rng.uniform(-0.2, 0.2), mouth + rng.uniform(-0.05, 0.15)])
        shape = rng.integers(3)
        if shape == 0:
            axes = (width(rng.uniform(0.25, 0.38)), width(rng.uniform(0.22, 0.34)))
            cv2.ellipse(canvas.pixels, at(*centre), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
        elif shape == 1:
            side, angle = rng.uniform(0.45, 0.7), rng.uniform(-0.5, 0.5)
            corners = [centre + side * np.array([np.cos(a), np.sin(a)]) for a in (angle + 0.5, angle + 2.1)]
            canvas.polygon([tuple(centre - [0, 0.05]), *map(tuple, corners)])
        else:
            angle = rng.uniform(-0.4, 0.4)
            half = rng.uniform(0.35, 0.55) * np.array([np.cos(angle), np.sin(angle)])
            ends = at(*(centre - half)), at(*(centre + half))
            cv2.line(canvas.pixels, *ends, 255, width(rng.uniform(0.16, 0.24)), cv2.LINE_AA)
        bite = at(*(centre + [rng.uniform(-0.1, 0.1), -rng.uniform(0.15, 0.3)]))
        cv2.circle(canvas.pixels, bite, width(rng.uniform(0.08, 0.14)), 0, -1, cv2.LINE_AA)
    elif kind == "stick":  # thin, at any angle, through the mouth
        angle = rng.uniform(-0.6, 0.6)
        length = rng.uniform(0.8, 1.6)
        centre = np.array([rng.uniform(-0.3, 0.3), mouth])
        offset = length / 2 * np.array([np.cos(angle), np.sin(angle)])
        ends = at(*(centre - offset)), at(*(centre + offset))
        cv2.line(canvas.pixels, *ends, 255, width(rng.uniform(0.04, 0.09)), cv2.LINE_AA)
    else:
        raise ValueError(f"unknown occluder {kind!r}; expected one of {OCCLUDERS}")


def _draw_lower_face(canvas: _Canvas, kind: str, rng: np.random.Generator) -> None:
    face = canvas.face
    if kind == "beard":  # cheeks to under the chin, the lips cut out
        cheek = rng.uniform(0.75, 0.95)
        top = face.nose + rng.uniform(0.0, 0.2)
        canvas.polygon(
            [
                (-cheek, top),
                (-0.3, face.mouth - 0.12),
                (0.3, face.mouth - 0.12),
                (cheek, top),
                (0.8 * cheek, face.chin - 0.2),
                (0, face.chin + rng.uniform(0.1, 0.4)),
                (-0.8 * cheek, face.chin - 0.2),
            ]
        )
        lips = canvas.at(0, face.mouth + 0.05)
        cv2.ellipse(canvas.pixels, lips, (canvas.width(0.3), canvas.width(0.14)), 0, 0, 360, 0, -1, cv2.LINE_AA)
    elif kind == "scarf":  # level with the shoulders, not the head: from under the chin to the bottom
        top = (face.point(0, face.chin)[1] + rng.uniform(0.1, 0.3) * face.d) * SCALE
        height, width = canvas.pixels.shape
        xs = np.linspace(0, width, 6)
        edge = np.stack([xs, top + rng.uniform(0, 0.2, 6) * face.d * SCALE], axis=1)
        corners = np.array([[width, height], [0, height]])
        cv2.fillPoly(canvas.pixels, [np.concatenate([edge, corners]).astype(np.int32)], 255, cv2.LINE_AA)
    else:
        raise ValueError(f"unknown occluder {kind!r}; expected one of {OCCLUDERS}")


def _paint(rgb: np.ndarray, face: FacePoints, kind: str, rng: np.random.Generator) -> np.ndarray:
    """What the occluder looks like [H, W, 3] float32: skin, metal, hair or cloth, shaded top to bottom."""
    if kind in ("fingers", "palm"):  # the face's own skin: the cheek below the eye
        x, y = np.clip(face.point(-0.45, 0.45), 0, [rgb.shape[1] - 1, rgb.shape[0] - 1]).astype(int)
        patch = rgb[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].reshape(-1, 3).astype(np.float32)
        colour = patch.mean(axis=0) * rng.uniform(0.85, 1.1)
    elif kind == "microphone":
        colour = np.full(3, rng.choice([25.0, 60.0, 110.0, 170.0])) + rng.normal(0, 8, 3)
    elif kind == "food":
        colour = FOOD_COLOURS[rng.integers(len(FOOD_COLOURS))] * rng.uniform(0.85, 1.1)
    elif kind == "beard":  # black, brown, auburn, grey
        colour = np.array([[25, 22, 20], [70, 50, 35], [110, 60, 35], [150, 148, 145]][rng.integers(4)], np.float32)
    else:
        colour = rng.uniform(0, 255, 3)
    rows = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.6, 1.1), rgb.shape[0], dtype=np.float32)[:, None, None]
    paint = np.broadcast_to(colour.astype(np.float32) * rows, rgb.shape).copy()
    if kind in ("beard", "scarf", "food"):  # hair, knit and crumb are not flat: fine noise, then a little blur
        grain = rng.normal(1.0, {"beard": 0.25, "scarf": 0.1, "food": 0.12}[kind], rgb.shape[:2]).astype(np.float32)
        paint *= cv2.GaussianBlur(grain, (0, 0), 0.6)[..., None]
    return np.clip(paint, 0, 255)


def fit_occluder(
    rgb: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    kind: str | None = None,
    kinds: tuple[str, ...] = OCCLUDER_SETS["default"],
) -> np.ndarray:
    """A copy of the RGB uint8 photo with a thing on the lower face that is not a mask: ``kind``, or one
    drawn from ``kinds``.

    Those at the mouth are narrower than a mask: none hides the whole lower face. A beard leaves the
    lips bare and lets the skin show through; a scarf stays under the chin.
    """
    face = face_points(landmarks)
    kind = kind or kinds[rng.integers(len(kinds))]
    canvas = _Canvas(face, rgb.shape[:2])
    if kind in LOWER_FACE_OCCLUDERS:
        _draw_lower_face(canvas, kind, rng)
    else:
        _draw_at_mouth(canvas, kind, rng)
    alpha = canvas.coverage()
    if kind == "beard":
        alpha = alpha * rng.uniform(0.7, 0.9)
    paint = _paint(rgb, face, kind, rng)
    blended = rgb.astype(np.float32) * (1 - alpha[..., None]) + paint * alpha[..., None]
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
