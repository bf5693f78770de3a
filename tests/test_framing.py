"""A framing grown below the chin (masklens.framing.grown_downwards, masklens framing --side) and
MaskedFace-Net's images re-cut to it for training and evaluation (reframe, training.datasets.Reframing)."""

import json

import numpy as np
import pytest

from masklens.framing import Framing, crop_box_for_face, grown_downwards, reframe
from training.datasets import FaceDataset, Reframing, reframing_for, reframing_of
from training.model import Preprocessing

MEASURED = Framing(center_dx=0.02, center_dy=-0.07, side=1.6)


def test_growing_downwards_keeps_the_top_edge_and_the_centre_line():
    box = (40.0, 50.0, 120.0, 150.0)
    grown = grown_downwards(MEASURED, 2.0)
    x1, y1, x2, y2 = crop_box_for_face(box, MEASURED)
    gx1, gy1, gx2, gy2 = crop_box_for_face(box, grown)
    assert gy1 == pytest.approx(y1) and (gx1 + gx2) / 2 == pytest.approx((x1 + x2) / 2)
    assert gx2 - gx1 == pytest.approx(2.0 / 1.6 * (x2 - x1))
    assert gy2 > y2


def test_reframing_to_its_own_framing_changes_nothing():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(reframe(rgb, MEASURED, MEASURED), rgb)


def test_a_reframed_image_shows_the_face_where_the_target_framing_puts_it():
    side = 160
    size = side / MEASURED.side  # the face size in the measured crop
    box_cx = side / 2 - MEASURED.center_dx * size
    box_cy = side / 2 - MEASURED.center_dy * size
    rgb = np.zeros((side, side, 3), np.uint8)
    rgb[round(box_cy) - 3 : round(box_cy) + 3, round(box_cx) - 3 : round(box_cx) + 3] = 255  # the box centre
    target = grown_downwards(MEASURED, 2.0)
    out = reframe(rgb, MEASURED, target)
    assert out.shape == rgb.shape
    ys, xs = np.nonzero(out[..., 0] > 128)
    new_size = side / target.side
    assert xs.mean() == pytest.approx(side / 2 - target.center_dx * new_size, abs=1.0)
    assert ys.mean() == pytest.approx(side / 2 - target.center_dy * new_size, abs=1.0)
    # Below the old crop the image's last row is repeated.
    np.testing.assert_array_equal(out[-1], out[round(side * MEASURED.side / target.side)])


def test_reframe_refuses_images_that_are_not_square():
    with pytest.raises(ValueError, match="square"):
        reframe(np.zeros((10, 12, 3), np.uint8), MEASURED, MEASURED)


def test_a_framing_file_says_whether_mfn_images_are_re_cut(tmp_path):
    measured_only = tmp_path / "framing.json"
    measured_only.write_text(json.dumps({"all": {"framing": vars(MEASURED)}}))
    assert reframing_for("") is None and reframing_for(str(measured_only)) is None
    grown = tmp_path / "framing-neck.json"
    target = grown_downwards(MEASURED, 2.0)
    grown.write_text(json.dumps({"all": {"framing": vars(target), "measured_framing": vars(MEASURED)}}))
    reframing = reframing_for(str(grown))
    assert reframing == Reframing(MEASURED, target)
    assert reframing_of({"data": {"reframing": reframing.to_dict()}}) == reframing
    assert reframing_of({"data": {}}) is None


def test_the_dataset_re_cuts_before_it_augments(tmp_path):
    from PIL import Image

    from training.data import Sample

    rgb = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "face.png")
    reframing = Reframing(MEASURED, grown_downwards(MEASURED, 2.0))
    preprocessing = Preprocessing(size=96, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    dataset = FaceDataset((Sample(tmp_path / "face.png", 0, -1),), preprocessing, "none", reframing=reframing)
    image = dataset[0][0].numpy().transpose(1, 2, 0)
    expected = reframe(rgb, reframing.measured, reframing.target).astype(np.float32) / 255
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_the_export_takes_the_framing_the_checkpoint_was_trained_for(tmp_path, monkeypatch):
    from export.checks import export_framing

    target = grown_downwards(MEASURED, 2.0)
    grown = tmp_path / "framing-neck.json"
    grown.write_text(json.dumps({"all": {"framing": vars(target), "measured_framing": vars(MEASURED)}}))
    measured = tmp_path / "framing.json"
    measured.write_text(json.dumps({"all": {"framing": vars(MEASURED)}}))
    trained = {"config": {"framing": str(grown)}, "data": {"reframing": Reframing(MEASURED, target).to_dict()}}
    assert export_framing("", trained)["all"]["framing"] == vars(target)
    with pytest.raises(SystemExit, match="trained for"):
        export_framing(str(measured), trained)
    monkeypatch.chdir(tmp_path)  # an older checkpoint, without a framing: results/framing.json
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "framing.json").write_text(measured.read_text())
    assert export_framing("", {"config": {}, "data": {}})["all"]["framing"] == vars(MEASURED)
