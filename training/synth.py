"""Masks fitted onto unmasked faces, worn correctly or in one of the three incorrect ways.

The way MaskedFace-Net and MaskTheFace make masked faces: a mask image (``mask-templates``: RGBA
templates with six anchor points ``mask_a`` .. ``mask_f``, see ``../shared/data/README.md``) is
warped by the homography from its six anchor points to six points of the face, and blended by its
alpha. MaskTheFace takes the six face points from 68 landmarks; we have MTCNN's five (eyes, nose
tip, mouth corners), so ``face_points`` estimates them in a face frame: ``u`` along the eyes, ``v``
perpendicular to it, downwards, unit ``d`` = the distance between the eyes.

Where the mask sits (``placement_points``), in units of d below the eyes along v:

- ``covered``: top edge (a, b, c) at the nose bridge, bottom (d, f) below the lower lip, e under the chin;
- ``nose`` uncovered: top edge below the nose tip, chin still covered;
- ``chin`` uncovered: bottom edge just under the lower lip;
- ``nose_and_mouth`` uncovered: the whole mask pulled down below the lower lip, on the chin.

Looks (``MaskStyle``): the template's own colours, recoloured (any hue, black, white), or a cloth
texture; shading matched to the face's brightness; a slight misfit (each anchor jittered) and
a soft edge. Everything random comes from the ``numpy.random.Generator`` passed in, so a seed fixes
the result.

Things at the mouth that are not masks (``fit_occluder``): a microphone, one to three fingers in the
face's own skin colour, a thin stick (a pen, a straw, a sprig). A face with one of them is still
``uncovered``: without such faces, a model that has learned "something over the mouth = a mask" calls
a singer or a hand at the lips a mask worn badly (the FFHQ faces it gets wrong).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from masklens.cli import parse_config
from masklens.files import IMAGE_SUFFIXES
from masklens.labels import REASONS

# Placement name -> what it leaves uncovered (None: the mask is worn correctly).
PLACEMENTS: tuple[str, ...] = ("covered", *REASONS)
# Templates that are face masks (MaskTheFace's gas respirator is not).
MASK_KINDS: tuple[str, ...] = ("surgical", "surgical_blue", "surgical_green", "cloth", "N95", "KN95")
# Past this nose offset from the eyes' midpoint (in d), the head is turned: use the _left/_right template.
TURN_THRESHOLD = 0.12
ANCHORS = ("mask_a", "mask_b", "mask_c", "mask_d", "mask_e", "mask_f")
OCCLUDERS: tuple[str, ...] = ("microphone", "fingers", "stick")


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


def placement_points(face: FacePoints, placement: str) -> np.ndarray:
    """The six face points [6, 2] (a .. f) the mask's anchors go to, for a placement."""
    bridge = max(0.4 * face.nose, 0.15)
    top, side_bottom, bottom = bridge, face.lip + 0.05, face.chin + 0.12
    if placement == "nose":  # pulled down: it hangs lower on the chin too
        top, side_bottom, bottom = face.nose + 0.25, face.lip + 0.2, face.chin + 0.35
    elif placement == "chin":
        side_bottom, bottom = face.mouth + 0.05, face.lip + 0.12
    elif placement == "nose_and_mouth":
        top, side_bottom, bottom = face.lip + 0.12, face.chin + 0.15, face.chin + 0.45
    elif placement != "covered":
        raise ValueError(f"unknown placement {placement!r}; expected one of {PLACEMENTS}")
    # A turned head shows more of one cheek: widen that side, narrow the other.
    left, right = 1.0 * (1 + 1.5 * face.turn), 1.0 * (1 - 1.5 * face.turn)
    left, right = float(np.clip(left, 0.4, 1.6)), float(np.clip(right, 0.4, 1.6))
    lower = 0.85
    return np.stack(
        [
            face.point(-left, top),
            face.point(0, top),
            face.point(right, top),
            face.point(-lower * left, side_bottom),
            face.point(0, bottom),
            face.point(lower * right, side_bottom),
        ]
    ).astype(np.float32)


@dataclass(frozen=True)
class Template:
    name: str
    rgba: np.ndarray  # uint8 [h, w, 4]
    anchors: np.ndarray  # float32 [6, 2]


@dataclass(frozen=True)
class MaskLibrary:
    templates: dict[str, Template]
    textures: tuple[np.ndarray, ...]  # RGB uint8 pattern images

    def template_for(self, kind: str, turn: float) -> Template:
        side = "_right" if turn > TURN_THRESHOLD else "_left" if turn < -TURN_THRESHOLD else ""
        return self.templates.get(kind + side, self.templates[kind])


@lru_cache(maxsize=4)
def load_mask_library(root: str | Path) -> MaskLibrary:
    """Reads ``masks.cfg``, ``templates/*.png`` and ``textures/**`` of a mask-templates folder."""
    root = Path(root)
    config = configparser.ConfigParser()
    if not config.read(root / "masks.cfg"):
        raise FileNotFoundError(f"no masks.cfg in {root}")
    templates = {}
    for name in config.sections():
        if not any(
            name == kind or (name.startswith(kind + "_") and name[len(kind) + 1 :] in ("left", "right"))
            for kind in MASK_KINDS
        ):
            continue
        path = root / "templates" / f"{name}.png"
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        anchors = np.array([[float(x) for x in config[name][key].split(",")] for key in ANCHORS], np.float32)
        templates[name] = Template(name, rgba, anchors)
    missing = [kind for kind in MASK_KINDS if kind not in templates]
    if missing:
        raise FileNotFoundError(f"mask templates missing from {root}: {missing}")
    textures = tuple(
        np.asarray(Image.open(p).convert("RGB"))
        for p in sorted((root / "textures").rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
    )
    return MaskLibrary(templates, textures)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def style_template(template: Template, library: MaskLibrary, rng: np.random.Generator) -> np.ndarray:
    """The template's RGBA, recoloured or textured at random (float32 0..255)."""
    rgba = template.rgba.astype(np.float32)
    look = rng.choice(["template", "colour", "texture"], p=[0.3, 0.45, 0.25])
    if look == "template":
        return rgba
    shade = _luminance(rgba)
    inside = rgba[..., 3] > 128
    shade = shade / max(float(np.percentile(shade[inside], 90)) if inside.any() else 255.0, 1.0)
    shade = np.clip(shade, 0, 1.2)[..., None]
    if look == "colour" or not library.textures:
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if rng.random() < 0.3:  # black, grey and white masks are common
            colour[:] = rng.choice([20.0, 60.0, 140.0, 235.0])
        fill = np.broadcast_to(colour, rgba[..., :3].shape)
    else:
        texture = library.textures[rng.integers(len(library.textures))]
        scale = rng.uniform(0.3, 1.0) * rgba.shape[1] / texture.shape[1]
        texture = cv2.resize(texture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        reps = (-(-rgba.shape[0] // texture.shape[0]), -(-rgba.shape[1] // texture.shape[1]), 1)
        fill = np.tile(texture, reps)[: rgba.shape[0], : rgba.shape[1]].astype(np.float32)
    out = rgba.copy()
    out[..., :3] = np.clip(fill * (0.35 + 0.65 * shade), 0, 255)
    return out


def fit_mask(
    rgb: np.ndarray,
    landmarks: np.ndarray,
    placement: str,
    library: MaskLibrary,
    rng: np.random.Generator,
    kind: str | None = None,
) -> np.ndarray:
    """Returns a copy of the RGB uint8 photo with a mask fitted onto the face of the landmarks."""
    face = face_points(landmarks)
    kind = kind or MASK_KINDS[rng.integers(len(MASK_KINDS))]
    template = library.template_for(kind, face.turn)
    target = placement_points(face, placement)
    target = target + rng.normal(0, 0.04 * face.d, target.shape).astype(np.float32)  # slight misfit
    homography, _ = cv2.findHomography(template.anchors, target, 0)
    if homography is None:
        raise ValueError("the mask's anchor points could not be fitted to the face")
    styled = style_template(template, library, rng)
    height, width = rgb.shape[:2]
    warped = cv2.warpPerspective(
        styled, homography, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    alpha = cv2.GaussianBlur(warped[..., 3], (0, 0), sigmaX=max(0.6, 0.012 * face.d)) / 255.0
    mask_rgb = warped[..., :3]
    covered = alpha > 0.5
    if covered.any():  # shading matched to the face: a dark photo gets a dark mask
        face_light = float(np.median(_luminance(rgb)[covered]))
        mask_light = float(np.median(_luminance(mask_rgb)[covered])) + 1.0
        gain = np.clip((face_light / mask_light) ** 0.5 * rng.uniform(0.9, 1.1), 0.45, 1.15)
        mask_rgb = mask_rgb * gain
    blended = rgb.astype(np.float32) * (1 - alpha[..., None]) + mask_rgb * alpha[..., None]
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _draw_occluder(
    face: FacePoints, kind: str, shape: tuple[int, int], rng: np.random.Generator, scale: int = 4
) -> np.ndarray:
    """The occluder's coverage [H, W] in 0..1, drawn ``scale`` times larger and shrunk (smooth edges)."""
    canvas = np.zeros((shape[0] * scale, shape[1] * scale), np.uint8)

    def at(across: float, down: float) -> tuple[int, int]:
        x, y = face.point(across, down) * scale
        return int(round(x)), int(round(y))

    def width(in_d: float) -> int:
        return max(1, int(round(in_d * face.d * scale)))

    mouth = face.mouth + rng.uniform(-0.1, 0.15)
    if kind == "microphone":  # a round head at the mouth, its handle going down and aside
        side = rng.uniform(-0.35, 0.35)
        radius = rng.uniform(0.22, 0.34)
        head = at(side, mouth + rng.uniform(0.05, 0.3))
        cv2.circle(canvas, head, width(radius), 255, -1, cv2.LINE_AA)
        end = at(side + rng.uniform(-0.6, 0.6), mouth + 2.5)
        cv2.line(canvas, head, end, 255, width(rng.uniform(0.12, 0.2)), cv2.LINE_AA)
    elif kind == "fingers":  # upright fingers over the lips, a hand below the chin
        count = int(rng.integers(1, 4))
        finger = rng.uniform(0.14, 0.2)
        start = rng.uniform(-0.3, 0.3) - (count - 1) * finger / 2
        top = mouth - rng.uniform(0.15, 0.45)
        for i in range(count):
            across = start + i * finger * 1.1
            cv2.line(
                canvas,
                at(across, top),
                at(across + rng.uniform(-0.1, 0.1), face.chin + 1.0),
                255,
                width(finger),
                cv2.LINE_AA,
            )
    elif kind == "stick":  # thin, at any angle, through the mouth
        angle = rng.uniform(-0.6, 0.6)
        length = rng.uniform(0.8, 1.6)
        centre = np.array([rng.uniform(-0.3, 0.3), mouth])
        offset = length / 2 * np.array([np.cos(angle), np.sin(angle)])
        cv2.line(
            canvas, at(*(centre - offset)), at(*(centre + offset)), 255, width(rng.uniform(0.04, 0.09)), cv2.LINE_AA
        )
    else:
        raise ValueError(f"unknown occluder {kind!r}; expected one of {OCCLUDERS}")
    return cv2.resize(canvas, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def fit_occluder(
    rgb: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, kind: str | None = None
) -> np.ndarray:
    """A copy of the RGB uint8 photo with a thing at the mouth that is not a mask (``OCCLUDERS``).

    Every one is narrower than a mask: it never hides the whole lower face. Fingers take the colour
    of the face's own skin (the cheek below the eye); a microphone is dark, grey or metal; a stick
    any colour. Shaded by a vertical gradient so it is not a flat patch.
    """
    face = face_points(landmarks)
    kind = kind or OCCLUDERS[rng.integers(len(OCCLUDERS))]
    alpha = _draw_occluder(face, kind, rgb.shape[:2], rng)
    if kind == "fingers":
        x, y = np.clip(face.point(-0.45, 0.45), 0, [rgb.shape[1] - 1, rgb.shape[0] - 1]).astype(int)
        patch = rgb[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].reshape(-1, 3).astype(np.float32)
        colour = patch.mean(axis=0) * rng.uniform(0.85, 1.1)
    elif kind == "microphone":
        colour = np.full(3, rng.choice([25.0, 60.0, 110.0, 170.0])) + rng.normal(0, 8, 3)
    else:
        colour = rng.uniform(0, 255, 3)
    rows = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.6, 1.1), rgb.shape[0], dtype=np.float32)[:, None, None]
    paint = np.clip(colour.astype(np.float32) * rows, 0, 255)
    blended = rgb.astype(np.float32) * (1 - alpha[..., None]) + paint * alpha[..., None]
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def mask_coverage(
    rgb_shape: tuple[int, int], landmarks: np.ndarray, placement: str, library: MaskLibrary, kind: str = "surgical"
) -> np.ndarray:
    """The alpha [H, W] in 0..1 that a mask of this placement would have, without misfit (for tests)."""
    face = face_points(landmarks)
    template = library.template_for(kind, face.turn)
    homography, _ = cv2.findHomography(template.anchors, placement_points(face, placement), 0)
    alpha = template.rgba[..., 3].astype(np.float32) / 255.0
    return cv2.warpPerspective(alpha, homography, (rgb_shape[1], rgb_shape[0]), flags=cv2.INTER_LINEAR)


def example_figure(
    faces_index: str | Path,
    templates: str | Path,
    out: str | Path,
    rows: int = 5,
    seed: int = 0,
    source: str = "mfn-uncovered",
) -> None:
    """A grid for the docs: unmasked faces of one source of ``training.faces``' index (by default
    MaskedFace-Net's FFHQ faces, whose licence allows showing them), then each placement fitted, then
    an occluder that is not a mask."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index_path = Path(faces_index)
    entries = [e for e in json.loads(index_path.read_text())["faces"] if e["synth_source"] and e["source"] == source]
    rng = np.random.default_rng(seed)
    chosen = [entries[i] for i in sorted(rng.choice(len(entries), size=rows, replace=False))]
    library = load_mask_library(templates)
    titles = [
        "unmasked",
        "covered",
        "nose uncovered",
        "chin uncovered",
        "nose and mouth uncovered",
        "not a mask: uncovered",
    ]
    figure, axes = plt.subplots(rows, len(titles), figsize=(2 * len(titles), 2 * rows))
    for row, entry in enumerate(chosen):
        rgb = np.asarray(Image.open(index_path.parent / entry["file"]).convert("RGB"))
        landmarks = np.asarray(entry["landmarks"], np.float32)
        images = [rgb] + [fit_mask(rgb, landmarks, placement, library, rng) for placement in PLACEMENTS]
        images.append(fit_occluder(rgb, landmarks, rng, OCCLUDERS[row % len(OCCLUDERS)]))
        for column, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[column], fontsize=9)
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=64)
    plt.close(figure)


@dataclass(frozen=True)
class SynthFigureConfig:
    faces: str = field(default="build/faces/index.json", metadata={"help": "index.json of masklens faces"})
    templates: str = "../shared/data/mask-templates"
    out: str = "results/figures/synthetic-masks.png"
    rows: int = 5
    seed: int = 0


def main(argv: list[str] | None = None) -> None:
    config = parse_config(SynthFigureConfig, argv, description="Draw examples of synthesised masked faces.")
    example_figure(config.faces, config.templates, config.out, config.rows, config.seed)
