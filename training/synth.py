"""Masks fitted onto unmasked faces, worn correctly or in one of the ways real masks are worn wrong.

The way MaskedFace-Net and MaskTheFace make masked faces: a mask image (``mask-templates``: RGBA
templates with six anchor points ``mask_a`` .. ``mask_f``, see ``../shared/data/README.md``) is
warped by the homography from its six anchor points to six points of the face, and blended by its
alpha. Where those six points go for each way of wearing it is ``training.placements``; things on
the lower face that are not masks are ``training.occluders``.

Looks (``style_template``): the template's own colours, recoloured (any hue, black, white), or a
cloth texture; shading matched to the face's brightness; a slight misfit (each anchor jittered) and
a soft edge. Where a placement has a range (how far a mask is lowered, which ear it hangs from), the
draw is random too. Everything random comes from the ``numpy.random.Generator`` passed in, so a seed
fixes the result.
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

from .occluders import OCCLUDERS, fit_occluder
from .placements import PLACEMENTS, face_points, placement_points

# Templates that are face masks (MaskTheFace's gas respirator is not).
MASK_KINDS: tuple[str, ...] = ("surgical", "surgical_blue", "surgical_green", "cloth", "N95", "KN95")
# Past this nose offset from the eyes' midpoint (in d), the head is turned: use the _left/_right template.
TURN_THRESHOLD = 0.12
ANCHORS = ("mask_a", "mask_b", "mask_c", "mask_d", "mask_e", "mask_f")


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
    target = placement_points(face, placement, float(rng.random()), int(rng.choice([-1, 1])))
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


def mask_coverage(
    rgb_shape: tuple[int, int],
    landmarks: np.ndarray,
    placement: str,
    library: MaskLibrary,
    kind: str = "surgical",
    amount: float = 0.5,
    side: int = 1,
) -> np.ndarray:
    """The alpha [H, W] in 0..1 that a mask of this placement would have, without misfit (for tests)."""
    face = face_points(landmarks)
    template = library.template_for(kind, face.turn)
    homography, _ = cv2.findHomography(template.anchors, placement_points(face, placement, amount, side), 0)
    alpha = template.rgba[..., 3].astype(np.float32) / 255.0
    return cv2.warpPerspective(alpha, homography, (rgb_shape[1], rgb_shape[0]), flags=cv2.INTER_LINEAR)


PLACEMENT_TITLES = {
    "covered": "covered",
    "nose": "nose out",
    "mouth_only": "mouth only",
    "chin": "chin out",
    "nose_and_mouth": "on the chin",
    "neck": "on the neck",
    "one_ear": "from one ear",
}


def _sheet(faces: list[tuple[np.ndarray, np.ndarray]], titles: list[str], draw, out: str | Path) -> None:
    """One row a face, one column a title; ``draw(rgb, landmarks, column)`` -> the image to show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(faces), len(titles), figsize=(1.6 * len(titles), 1.6 * len(faces)), squeeze=False)
    for row, (rgb, landmarks) in enumerate(faces):
        for column, title in enumerate(titles):
            axis = axes[row, column]
            axis.imshow(draw(rgb, landmarks, column))
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=64)
    plt.close(figure)


def example_figures(
    faces_index: str | Path,
    templates: str | Path,
    out: str | Path,
    negatives_out: str | Path,
    rows: int = 5,
    seed: int = 0,
    source: str = "mfn-uncovered",
) -> None:
    """Two sheets for the docs, on unmasked faces of one source of ``training.faces``' index (by
    default MaskedFace-Net's FFHQ faces, whose licence allows showing them): at ``out`` each face
    unmasked, then with a mask in each placement; at ``negatives_out`` each thing that is not a mask."""
    import json

    index_path = Path(faces_index)
    entries = [e for e in json.loads(index_path.read_text())["faces"] if e["synth_source"] and e["source"] == source]
    rng = np.random.default_rng(seed)
    chosen = [entries[i] for i in sorted(rng.choice(len(entries), size=rows, replace=False))]
    faces = [
        (np.asarray(Image.open(index_path.parent / e["file"]).convert("RGB")), np.asarray(e["landmarks"], np.float32))
        for e in chosen
    ]
    library = load_mask_library(templates)

    def masked(rgb, landmarks, column):
        return rgb if column == 0 else fit_mask(rgb, landmarks, PLACEMENTS[column - 1], library, rng)

    _sheet(faces, ["unmasked", *(PLACEMENT_TITLES[p] for p in PLACEMENTS)], masked, out)
    _sheet(
        faces,
        list(OCCLUDERS),
        lambda rgb, marks, column: fit_occluder(rgb, marks, rng, OCCLUDERS[column]),
        negatives_out,
    )


@dataclass(frozen=True)
class SynthFigureConfig:
    faces: str = field(default="build/faces-neck/index.json", metadata={"help": "index.json of masklens faces"})
    templates: str = "../shared/data/mask-templates"
    out: str = field(default="results/figures/synthetic-masks.png", metadata={"help": "the placements' sheet"})
    negatives_out: str = field(
        default="results/figures/synthetic-not-masks.png", metadata={"help": "the sheet of things that are not masks"}
    )
    rows: int = 5
    seed: int = 0


def main(argv: list[str] | None = None) -> None:
    config = parse_config(SynthFigureConfig, argv, description="Draw examples of synthesised masked faces.")
    example_figures(config.faces, config.templates, config.out, config.negatives_out, config.rows, config.seed)
