"""Where a synthesised mask sits on a face: the face frame from MTCNN's five points, and the six
points (a .. f, MaskTheFace's anchors) a mask template is warped to, for each way of wearing it.

MaskTheFace takes the six face points from 68 landmarks; we have MTCNN's five (eyes, nose tip, mouth
corners), so ``face_points`` estimates them in a face frame: ``u`` along the eyes, ``v``
perpendicular to it, downwards, unit ``d`` = the distance between the eyes. Heights below are in d
below the eyes along v.

The placements (``PLACEMENTS``) are the ways masks are worn in real photos, the incorrect ones those
that ``real-wear`` labels ``incorrect`` (``../shared/data/README.md``):

- ``covered``: top edge (a, b, c) at the nose bridge, bottom (d, f) below the lower lip, e under the chin;
- ``nose``: lowered under the nose tip, by ``amount`` anywhere from just under the tip to just above the mouth;
- ``mouth_only``: a small mask over the mouth only: nose and chin out;
- ``chin``: the bottom edge just under the lower lip;
- ``nose_and_mouth``: the whole mask pulled down below the lower lip, on the chin;
- ``neck``: under the chin, on the neck (whether it still touches the chin's tip is left open);
- ``one_ear``: hanging from one ear: the worn mask turned about that ear by 75..105 degrees.

``PLACEMENT_REASON`` says which of MaskedFace-Net's reasons (``masklens.labels.REASONS``) each
incorrect one is trained as: the nose's when the nose is out and the mouth covered, otherwise the
nose-and-mouth one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PLACEMENTS: tuple[str, ...] = ("covered", "nose", "mouth_only", "chin", "nose_and_mouth", "neck", "one_ear")
PLACEMENT_REASON: dict[str, str] = {
    "nose": "nose",
    "mouth_only": "nose",
    "chin": "chin",
    "nose_and_mouth": "nose_and_mouth",
    "neck": "nose_and_mouth",
    "one_ear": "nose_and_mouth",
}
# The ear a hanging mask turns about: this far across from the midline, at the nose's height.
EAR_ACROSS = 1.05


@dataclass(frozen=True)
class FacePoints:
    """The face frame and the heights (in d below the eyes' midpoint, along v) of its parts."""

    eyes: np.ndarray  # midpoint of the eyes, pixels
    u: np.ndarray  # unit vector from the image-left eye to the other
    v: np.ndarray  # unit vector perpendicular to u, towards the mouth
    d: float  # distance between the eyes, pixels
    nose: float  # nose tip
    mouth: float  # middle of the mouth corners
    lip: float  # bottom of the lower lip (estimated)
    chin: float  # chin (estimated)
    centre: float  # the face's midline, along u from the eyes' midpoint: the nose tip's offset
    turn: float  # the nose's offset along u in d: >0 the head is turned towards the image's right

    def point(self, across: float, down: float) -> np.ndarray:
        """Pixel position ``across`` d from the midline along u and ``down`` d below the eyes along v."""
        return self.eyes + (self.centre + across) * self.d * self.u + down * self.d * self.v

    def landmark_heights(self) -> dict[str, np.ndarray]:
        """Points that a worn mask covers: nose tip, mouth middle, chin (pixels)."""
        return {"nose": self.point(0, self.nose), "mouth": self.point(0, self.mouth), "chin": self.point(0, self.chin)}


def face_points(landmarks: np.ndarray) -> FacePoints:
    """MTCNN's five points [5, 2] (eye, eye, nose tip, mouth corner, mouth corner) -> FacePoints."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
    d = float(np.linalg.norm(right_eye - left_eye))
    if d < 1e-6:
        raise ValueError("the eyes coincide: not a usable set of landmarks")
    u = (right_eye - left_eye) / d
    v = np.array([-u[1], u[0]])
    eyes = (left_eye + right_eye) / 2
    mouth_mid = (mouth_left + mouth_right) / 2
    nose_down = float((nose - eyes) @ v) / d
    mouth_down = max(float((mouth_mid - eyes) @ v) / d, nose_down + 0.2)
    turn = float((nose - eyes) @ u) / d
    return FacePoints(
        eyes=eyes,
        u=u,
        v=v,
        d=d,
        nose=nose_down,
        mouth=mouth_down,
        lip=mouth_down + 0.2,
        chin=mouth_down + 0.75,
        centre=turn * 0.5,
        turn=turn,
    )


def _edges(face: FacePoints, placement: str, amount: float) -> tuple[float, float, float]:
    """(top, side bottom, bottom) heights of a mask worn upright."""
    if placement in ("covered", "one_ear"):
        return max(0.4 * face.nose, 0.15), face.lip + 0.05, face.chin + 0.12
    if placement == "nose":  # pulled down: it hangs lower on the chin too
        top = face.nose + 0.24 + amount * max(face.mouth - face.nose - 0.22, 0.0)
        return top, face.lip + 0.2, face.chin + 0.35
    if placement == "mouth_only":
        return face.nose + 0.24, face.lip + 0.02, face.lip + 0.18 + 0.12 * amount
    if placement == "chin":
        return max(0.4 * face.nose, 0.15), face.mouth + 0.05, face.lip + 0.12
    if placement == "nose_and_mouth":
        return face.lip + 0.12, face.chin + 0.15, face.chin + 0.45
    if placement == "neck":
        top = face.chin - 0.05 + 0.15 * amount
        return top, top + 0.5, top + 0.75
    raise ValueError(f"unknown placement {placement!r}; expected one of {PLACEMENTS}")


def placement_points(face: FacePoints, placement: str, amount: float = 0.5, side: int = 1) -> np.ndarray:
    """The six face points [6, 2] (a .. f) the mask's anchors go to, for a placement.

    ``amount`` in 0..1 picks where within its range a placement sits (how far a mask is lowered, how
    far it is turned about the ear); ``side`` (-1: the image's left, 1: its right) the ear a
    ``one_ear`` mask hangs from.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be within 0..1, got {amount}")
    top, side_bottom, bottom = _edges(face, placement, amount)
    # A turned head shows more of one cheek: widen that side, narrow the other.
    left, right = 1.0 * (1 + 1.5 * face.turn), 1.0 * (1 - 1.5 * face.turn)
    left, right = float(np.clip(left, 0.4, 1.6)), float(np.clip(right, 0.4, 1.6))
    half = 0.6 if placement == "mouth_only" else 1.0
    left, right = half * left, half * right
    lower = 0.85
    frame = np.array(
        [
            [-left, top],
            [0, top],
            [right, top],
            [-lower * left, side_bottom],
            [0, bottom],
            [lower * right, side_bottom],
        ]
    )
    if placement == "one_ear":
        frame = _hung_from_ear(frame, face, amount, side)
    return np.stack([face.point(across, down) for across, down in frame]).astype(np.float32)


def _hung_from_ear(frame: np.ndarray, face: FacePoints, amount: float, side: int) -> np.ndarray:
    """The worn mask's points (across, down) turned about one ear until it hangs beside the face."""
    ear = np.array([side * EAR_ACROSS, face.nose])
    # Turning towards the outside: the far side swings down past the jaw.
    angle = -side * np.deg2rad(75 + 30 * amount)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (frame - ear) @ rotation.T + ear
