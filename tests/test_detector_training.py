"""The fine-tuning samples of the face finder's R-Net and O-Net (training/detector.py), on made-up boxes."""

from __future__ import annotations

import numpy as np
import pytest

from masklens.framing import Framing, crop_box_for_face
from masklens.mtcnn import apply_offsets
from training.detector import (
    NEGATIVE,
    PART,
    POSITIVE,
    box_targets,
    central_box,
    faces_crop_box,
    iou,
    jittered_boxes,
    random_squares,
    sample_kinds,
)

FACE = np.array([40.0, 50.0, 100.0, 110.0], dtype=np.float32)


def test_iou_of_made_up_boxes():
    boxes = np.array([[40, 50, 100, 110], [70, 50, 130, 110], [200, 200, 230, 230], [55, 65, 85, 95]], np.float32)
    # The same box; half of it shifted (30 x 60 shared of 2 x 3600 - 1800); apart; a quarter inside it.
    np.testing.assert_allclose(iou(boxes, FACE), [1.0, 1800 / 5400, 0.0, 900 / 3600], rtol=1e-6)


def test_sample_kinds_follow_mtcnn_thresholds():
    kinds = sample_kinds(np.array([0.9, 0.65, 0.64, 0.4, 0.35, 0.29, 0.0]))
    assert kinds.tolist() == [POSITIVE, POSITIVE, PART, PART, 2, NEGATIVE, NEGATIVE]


def test_box_targets_move_boxes_onto_the_face():
    boxes = np.array([[35, 45, 95, 105], [50, 40, 120, 110], [40, 50, 100, 110]], np.float32)
    offsets = box_targets(boxes, FACE)
    # R-Net and O-Net offsets are applied with inclusive sizes: the cascade lands exactly on the face.
    np.testing.assert_allclose(apply_offsets(boxes, offsets, inclusive=True), np.tile(FACE, (3, 1)), atol=1e-4)
    np.testing.assert_allclose(offsets[0], [5 / 61, 5 / 61, 5 / 61, 5 / 61], rtol=1e-6)
    assert not offsets[2].any()


def test_jittered_boxes_are_mostly_positives_or_parts():
    rng = np.random.default_rng(0)
    near = sample_kinds(iou(jittered_boxes(FACE, 400, 0.12, rng), FACE))
    wide = sample_kinds(iou(jittered_boxes(FACE, 400, 0.3, rng), FACE))
    assert (near == POSITIVE).mean() > 0.5
    assert (wide == PART).mean() > 0.2
    squares = random_squares(300, 200, 50, rng)
    assert (squares[:, 2] - squares[:, 0] == squares[:, 3] - squares[:, 1]).all()
    assert squares.min() >= 0 and squares[:, 2].max() <= 200 and squares[:, 3].max() <= 300


def test_face_boxes_of_crops():
    framing = Framing(center_dx=0.02, center_dy=-0.07, side=1.6)
    # The box a build/faces crop was cut around frames exactly that crop again.
    assert crop_box_for_face(faces_crop_box(192, framing), framing) == pytest.approx((0, 0, 192, 192), abs=1e-3)
    # A real-wear crop is the box with 40% margin on each side.
    x1, y1, x2, y2 = central_box(180, 144)
    assert (x2 - x1, y2 - y1) == pytest.approx((144 / 1.8, 180 / 1.8))
    assert (x1, y1) == pytest.approx((0.4 * 80, 0.4 * 100))
