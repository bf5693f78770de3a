"""Webcam scenes for the live tests: MaskedFace-Net holdout faces at fixed places in a 640 x 480, 5 fps video,
each place changing class over time, written as y4m for Chromium's fake camera and the video CLI.

``SCHEDULE`` gives, per place, the class in each segment; ``make_scene`` picks for every class a
holdout face that the shipped predictor, in the scene's frame, calls that class with confidence.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from masklens.predict import Predictor
from masklens.preprocess import load_rgb
from masklens.video import LivePredictor
from masklens.y4m import compose, write_y4m

SIZE = (640, 480)
FPS = 5
SEGMENT_FRAMES = 30  # 6 s per segment: several webcam steps even on a slow CPU
PLACES = ((48, 112), (336, 112))  # top-left corners of the 256 px faces
SCHEDULE = (("covered", "uncovered", "incorrect"), ("uncovered", "incorrect", "covered"))


def expected_classes(place: int) -> list[str]:
    return list(SCHEDULE[place])


def _confident_faces(predictor: Predictor, holdout: Path, min_probability: float = 0.9) -> dict[str, list[np.ndarray]]:
    """Per class, holdout faces that the predictor gets right with at least ``min_probability`` at
    every place of a scene frame showing the same face at each."""
    candidates = {}
    for name in predictor.classes:
        candidates[name] = []
        for path in sorted((holdout / name).iterdir())[:40]:
            face = np.asarray(load_rgb(path).resize((256, 256)))
            found = predictor.predict_photo(compose(SIZE, [(face, x, y) for x, y in PLACES]))
            if len(found) == len(PLACES) and all(
                predictor.classes[int(f.probabilities.argmax())] == name and f.probabilities.max() >= min_probability
                for f in found
            ):
                candidates[name].append(face)
            if len(candidates[name]) == 5:
                break
        if not candidates[name]:
            raise RuntimeError(f"no holdout face of class {name} is found and classified confidently")
    return candidates


def segment_frames(faces: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [
        compose(SIZE, [(faces[SCHEDULE[p][segment]], x, y) for p, (x, y) in enumerate(PLACES)])
        for segment in range(len(SCHEDULE[0]))
    ]


def decoded_segments(path: Path) -> list[np.ndarray]:
    """The first frame of each segment as FFmpeg decodes the y4m (what masklens video sees)."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return frames[::SEGMENT_FRAMES]


def make_scene(predictor: Predictor, holdout: Path, out: Path) -> Path:
    """The scene, from the first candidate faces whose every segment, once through y4m, the webcam
    mode's face finder sees as just the faces at the places (no false face, e.g. in a mask, to start
    a track of its own)."""
    candidates = _confident_faces(predictor, holdout)
    live = LivePredictor(predictor.model_dir, threads=2)
    for k in range(max(len(c) for c in candidates.values())):
        faces = {name: c[min(k, len(c) - 1)] for name, c in candidates.items()}
        write_y4m(out, [frame for frame in segment_frames(faces) for _ in range(SEGMENT_FRAMES)], FPS)
        if all(len(live.find_faces(frame)) == len(PLACES) for frame in decoded_segments(out)):
            return out
    raise RuntimeError("no choice of candidate faces makes a scene without false faces")


def runs(labels: list[str], min_length: int) -> list[str]:
    """The classes of a label sequence, runs shorter than ``min_length`` dropped, repeats merged."""
    kept, current, length = [], None, 0
    for label in [*labels, None]:
        if label == current:
            length += 1
            continue
        if current is not None and length >= min_length and (not kept or kept[-1] != current):
            kept.append(current)
        current, length = label, 1
    return kept
