"""Mask synthesis (placement, determinism), the partial-label loss and the synthetic dataset."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from masklens.labels import CLASSES, NO_REASON, REASONS
from training.config import TrainConfig, preprocessing_for
from training.datasets import (
    MASK_CLASSES,
    MASKED_LABEL,
    PLACEMENT_MIXES,
    RandomLowResolution,
    SyntheticMaskDataset,
)
from training.losses import compute_loss, count_correct, distillation_loss, masked_prior_loss, partial_label_loss
from training.occluders import LOWER_FACE_OCCLUDERS, MOUTH_OCCLUDERS, fit_occluder
from training.placements import PLACEMENT_REASON, PLACEMENTS, face_points, placement_points
from training.synth import MASK_KINDS, fit_mask, load_mask_library, mask_coverage

from .conftest import shared_data_or_skip

# A frontal face in a 200 x 200 picture: eyes, nose tip, mouth corners (MTCNN's order).
FRONTAL = np.array([[70, 80], [130, 80], [100, 118], [78, 142], [122, 142]], np.float32)
# The same face turned towards the image's right (nose and mouth shifted right), and tilted.
TURNED = np.array([[80, 82], [132, 76], [120, 114], [96, 140], [130, 136]], np.float32)

# What each placement leaves uncovered, of the nose tip, mouth middle and chin.
# Under the chin, the chin's tip may be in or out: on the neck, only the nose and mouth are sure to be out.
MAY_BE_EITHER = {"neck": {"chin"}}
UNCOVERED = {
    "covered": set(),
    "nose": {"nose"},
    "mouth_only": {"nose", "chin"},
    "chin": {"chin"},
    "nose_and_mouth": {"nose", "mouth"},
    "neck": {"nose", "mouth"},
    "one_ear": {"nose", "mouth", "chin"},
}


@pytest.fixture(scope="module")
def library():
    return load_mask_library(shared_data_or_skip("mask-templates"))


@pytest.mark.parametrize("landmarks", [FRONTAL, TURNED], ids=["frontal", "turned"])
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_leaves_exactly_its_part_uncovered(library, landmarks, kind, placement):
    points = face_points(landmarks).landmark_heights()
    # Both ends of a placement's range (how far lowered, how far turned), and both ears.
    for amount, side in ((0.0, -1), (1.0, 1), (0.5, -1)):
        alpha = mask_coverage((200, 200), landmarks, placement, library, kind, amount, side)
        uncovered = {name for name, (x, y) in points.items() if alpha[int(round(y)), int(round(x))] < 0.5}
        assert uncovered - MAY_BE_EITHER.get(placement, set()) == UNCOVERED[placement], (
            kind,
            placement,
            amount,
            {n: float(alpha[int(y), int(x)]) for n, (x, y) in points.items()},
        )


def test_every_incorrect_placement_trains_a_reason_that_names_what_it_leaves_out():
    assert set(PLACEMENT_REASON) == set(PLACEMENTS) - {"covered"}
    for placement, reason in PLACEMENT_REASON.items():
        assert set(reason.split("_and_")) <= UNCOVERED[placement], placement


def test_a_mask_lowered_further_sits_lower_and_a_hanging_one_hangs_beside_its_ear():
    face = face_points(FRONTAL)
    top = lambda amount: float((placement_points(face, "nose", amount)[1] - face.eyes) @ face.v)
    assert top(0.0) < top(0.5) < top(1.0)
    for side in (-1, 1):
        hung = placement_points(face, "one_ear", 0.5, side)
        across = (hung - face.eyes) @ face.u
        assert np.all(side * across > -0.2 * face.d), (side, across)  # all of it on that ear's side
        assert float(((hung - face.eyes) @ face.v).max()) > face.chin * face.d  # and down past the chin
    with pytest.raises(ValueError, match="amount"):
        placement_points(face, "nose", 1.5)


def test_turned_heads_take_the_turned_template(library):
    assert library.template_for("surgical", face_points(TURNED).turn).name == "surgical_right"
    assert library.template_for("surgical", face_points(FRONTAL).turn).name == "surgical"
    mirrored = FRONTAL.copy()
    mirrored[2, 0] = 80  # nose towards the image's left
    assert library.template_for("N95", face_points(mirrored).turn).name == "N95_left"


def test_fit_mask_is_deterministic_given_a_seed(library):
    face = np.full((200, 200, 3), 180, np.uint8)
    first = fit_mask(face, FRONTAL, "nose", library, np.random.default_rng(7))
    again = fit_mask(face, FRONTAL, "nose", library, np.random.default_rng(7))
    other = fit_mask(face, FRONTAL, "nose", library, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    changed = np.abs(first.astype(int) - face).sum(axis=2) > 0
    assert changed[142, 100] and not changed[20, 20]  # the mouth is masked, the forehead untouched


def test_synthetic_dataset_depends_only_on_seed_epoch_and_index(library, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(path)
    preprocessing = preprocessing_for(TrainConfig(image_size=64))
    make = lambda: SyntheticMaskDataset(
        [(path, FRONTAL)],
        6,
        str(shared_data_or_skip("mask-templates")),
        seed=3,
        preprocessing=preprocessing,
        augment="robust",
    )
    first, second = make(), make()
    torch.manual_seed(0)
    a = [first[i] for i in range(6)]
    torch.manual_seed(0)
    b = [second[i] for i in range(6)]
    for (x, label, reason, view), (y, label2, reason2, _) in zip(a, b):
        assert torch.equal(x, y) and label == label2 and reason == reason2 and view is None
    second.set_epoch(1)
    torch.manual_seed(0)
    assert not all(torch.equal(second[i][0], a[i][0]) for i in range(6))
    assert {label for _, label, _, _ in a} <= {0, 1}


@pytest.fixture
def grey_face(tmp_path):
    """A flat grey 200 x 200 face photo (FRONTAL's landmarks), 64-pixel preprocessing and the templates."""
    path = tmp_path / "face.png"
    Image.fromarray(np.full((200, 200, 3), 170, np.uint8)).save(path)
    return path, preprocessing_for(TrainConfig(image_size=64)), str(shared_data_or_skip("mask-templates"))


def test_the_real_wear_mix_labels_each_placement_incorrect_with_its_reason(grey_face):
    path, preprocessing, templates = grey_face
    mixed = SyntheticMaskDataset(
        [(path, FRONTAL)], 40, templates, seed=3, preprocessing=preprocessing, augment="none", placement_mix="real-wear"
    )
    reasons = {REASONS.index(r) for r in PLACEMENT_REASON.values()}
    labels = [mixed[i][1:3] for i in range(40)]
    assert {label for label, _ in labels} == {CLASSES.index("covered"), CLASSES.index("incorrect")}
    for label, reason in labels:
        assert (reason in reasons) if label == CLASSES.index("incorrect") else reason == NO_REASON
    assert set(PLACEMENT_MIXES["real-wear"]) == set(PLACEMENTS)
    assert all(abs(sum(mix.values()) - 1) < 1e-9 for mix in PLACEMENT_MIXES.values())
    with pytest.raises(ValueError, match="placement_mix"):
        SyntheticMaskDataset([(path, FRONTAL)], 4, templates, 3, preprocessing, "none", placement_mix="paper")


def test_occluded_synthetic_faces_are_uncovered(grey_face):
    path, preprocessing, templates = grey_face
    occluded = SyntheticMaskDataset(
        [(path, FRONTAL)], 5, templates, seed=3, preprocessing=preprocessing, augment="none", occluded_share=1.0
    )
    assert [occluded[i][1:3] for i in range(5)] == [(CLASSES.index("uncovered"), NO_REASON)] * 5
    with pytest.raises(ValueError, match="occluded_share"):
        SyntheticMaskDataset(
            [(path, FRONTAL)], 5, templates, seed=3, preprocessing=preprocessing, augment="none", occluded_share=1.5
        )


@pytest.mark.parametrize("kind", MOUTH_OCCLUDERS)
@pytest.mark.parametrize("landmarks", [FRONTAL, TURNED], ids=["frontal", "turned"])
def test_occluders_sit_at_the_mouth_and_are_smaller_than_a_mask(library, kind, landmarks):
    face = np.full((200, 200, 3), 170, np.uint8)
    mask_area = float((mask_coverage((200, 200), landmarks, "covered", library) > 0.5).sum())
    eyes_y = float(landmarks[:2, 1].max())
    mouth = landmarks[3:].mean(axis=0)
    for seed in range(12):
        image = fit_occluder(face, landmarks, np.random.default_rng(seed), kind)
        changed = np.abs(image.astype(int) - face).sum(axis=2) > 12
        ys, xs = np.nonzero(changed)
        assert len(ys) and ys.min() > eyes_y, (kind, seed)  # never above the eyes
        assert changed.sum() < 0.6 * mask_area, (kind, seed, changed.sum(), mask_area)
        # Something of it lies within half an eye distance of the mouth's middle.
        near = np.hypot(xs - mouth[0], ys - mouth[1]).min()
        assert near < 0.5 * (landmarks[1, 0] - landmarks[0, 0]), (kind, seed, near)
    again = fit_occluder(face, landmarks, np.random.default_rng(5), kind)
    np.testing.assert_array_equal(again, fit_occluder(face, landmarks, np.random.default_rng(5), kind))


@pytest.mark.parametrize("kind", LOWER_FACE_OCCLUDERS)
@pytest.mark.parametrize("landmarks", [FRONTAL, TURNED], ids=["frontal", "turned"])
def test_a_beard_leaves_the_lips_bare_and_a_scarf_stays_under_the_chin(kind, landmarks):
    face = np.full((320, 200, 3), 170, np.uint8)  # room for the neck
    points = face_points(landmarks)
    mouth, chin = (np.round(p).astype(int) for p in (points.point(0, points.mouth), points.point(0, points.chin)))
    for seed in range(8):
        image = fit_occluder(face, landmarks, np.random.default_rng(seed), kind)
        changed = np.abs(image.astype(int) - face).sum(2) > 12
        ys, _ = np.nonzero(changed)
        assert len(ys) and ys.min() > landmarks[:2, 1].max(), (kind, seed)  # never above the eyes
        assert not changed[mouth[1], mouth[0]], (kind, seed)  # the lips stay bare
        if kind == "beard":
            assert changed[chin[1], chin[0]], seed
        else:
            assert not changed[: chin[1] + 1].any() and changed[-1].mean() > 0.9, seed


def test_low_resolution_loses_fine_detail_and_keeps_the_size():
    stripes = np.zeros((160, 160, 3), np.uint8)
    stripes[:, ::2] = 255
    image = Image.fromarray(stripes)
    out = RandomLowResolution(sides=(40, 40), p=1.0)(image)
    assert out.size == image.size
    assert np.asarray(out).astype(float).std() < 0.2 * stripes.astype(float).std()
    assert RandomLowResolution(p=0.0)(image) is image


def test_distillation_loss_is_the_tempered_kl_divergence():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    assert distillation_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    p = (teacher / 2).softmax(1)
    q = (student / 2).softmax(1)
    expected = float((p * (p.log() - q.log())).sum(1).mean()) * 4
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_partial_label_loss_is_minus_log_of_the_mask_classes_probability():
    probabilities = torch.tensor([[0.2, 0.5, 0.3], [0.05, 0.05, 0.9]])
    loss = partial_label_loss(probabilities.log(), MASK_CLASSES)
    assert loss.tolist() == pytest.approx([-math.log(0.7), -math.log(0.1)], rel=1e-6)


def test_compute_loss_mixes_weak_and_known_labels():
    probabilities = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    labels = torch.tensor([MASKED_LABEL, 2])
    config = TrainConfig(label_smoothing=0.0, reason_weight=0.0)
    reason_logits = torch.zeros(2, 3, requires_grad=True)
    loss = compute_loss((probabilities.log(), reason_logits), labels, torch.tensor([-1, -1]), config)
    assert loss.item() == pytest.approx((-math.log(0.7) - math.log(0.8)) / 2, rel=1e-6)


def test_a_covered_share_trains_weak_labels_towards_covered():
    probabilities = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    loss = masked_prior_loss(probabilities.log(), 0.8)
    assert loss.tolist() == pytest.approx(
        [-(0.8 * math.log(0.6) + 0.2 * math.log(0.3)), -(0.8 * math.log(0.1) + 0.2 * math.log(0.1))], rel=1e-6
    )
    config = TrainConfig(label_smoothing=0.0, reason_weight=0.0, masked_covered_share=0.8)
    total = compute_loss(
        (probabilities.log(), torch.zeros(2, 3)), torch.tensor([MASKED_LABEL, 2]), torch.tensor([-1, -1]), config
    )
    assert total.item() == pytest.approx((loss[0].item() - math.log(0.8)) / 2, rel=1e-6)


def test_a_weak_label_is_right_for_either_mask_class():
    predicted = torch.tensor([0, 1, 2, 2, 0])
    labels = torch.tensor([MASKED_LABEL, MASKED_LABEL, MASKED_LABEL, 2, 1])
    assert count_correct(predicted, labels) == 3


def test_food_is_drawn_only_by_the_with_food_set(tmp_path):
    """The default set is the one before food, so that runs made with it keep their exact items."""
    from training.occluders import OCCLUDER_SETS, OCCLUDERS

    assert "food" not in OCCLUDER_SETS["default"] and set(OCCLUDER_SETS["with-food"]) == set(OCCLUDERS)
    face = np.full((200, 200, 3), 170, np.uint8)
    for seed in range(20):  # with kinds of one, that kind is drawn; the default draw is unchanged
        rng, again = np.random.default_rng(seed), np.random.default_rng(seed)
        np.testing.assert_array_equal(
            fit_occluder(face, FRONTAL, rng, kinds=("food",)), fit_occluder(face, FRONTAL, again, "food")
        )
    path = tmp_path / "face.png"
    Image.fromarray(face).save(path)
    with pytest.raises(ValueError, match="unknown occluders"):
        SyntheticMaskDataset([(path, FRONTAL)], 5, "x", 3, preprocessing_for(TrainConfig()), "none", occluders="crisps")
