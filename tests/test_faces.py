"""training.faces: real training photos cropped as the site crops them, landmarks carried into the crop."""

import json

import numpy as np
from PIL import Image

from masklens.face_finder import SHIPPED_RULE
from masklens.framing import Framing, crop_box_for_face
from masklens.mtcnn import Face
from training.faces import FaceSource, largest_face_crop, prepare

from .conftest import REPO, shared_data_or_skip


def test_the_largest_face_is_cropped_and_its_landmarks_follow_it():
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[60:70, 150:160] = 255  # a white square where the big face's nose tip is
    small = Face(box=np.array([10, 10, 30, 30], np.float32), score=0.99, landmarks=np.zeros((5, 2), np.float32))
    big_landmarks = np.array([[130, 40], [180, 40], [155, 65], [135, 90], [175, 90]], np.float32)
    big = Face(box=np.array([110, 10, 200, 120], np.float32), score=0.9, landmarks=big_landmarks)
    framing = Framing(center_dx=0.0, center_dy=0.0, side=1.5)
    crop, landmarks, score = largest_face_crop(rgb, [small, big], framing, 96)
    assert crop.shape == (96, 96, 3) and score == 0.9
    x1, y1, x2, _ = crop_box_for_face(big.box, framing)
    scale = 96 / round(x2 - x1)
    np.testing.assert_allclose(landmarks, (big_landmarks - [round(x1), round(y1)]) * scale)
    nose_x, nose_y = np.round(landmarks[2]).astype(int)
    assert crop[nose_y, nose_x].min() > 200  # the nose tip's landmark lands on the white square


def test_prepare_indexes_faces_and_lists_photos_without_one(tmp_path):
    photos = shared_data_or_skip("real-photos", "test", "without_mask")
    data = tmp_path / "data"
    (data / "faces").mkdir(parents=True)
    for photo in sorted(photos.iterdir())[:2]:
        (data / "faces" / photo.name).write_bytes(photo.read_bytes())
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(data / "faces" / "blank.png")
    (data / "faces" / "broken.jpg").write_bytes(b"not a jpeg")
    framing = Framing(**json.loads((REPO / "results" / "framing.json").read_text())["all"]["framing"])
    index = prepare(
        data,
        REPO / "models" / "onnx",
        tmp_path / "out",
        framing,
        SHIPPED_RULE,
        64,
        {"test": FaceSource("faces", "uncovered", synth_source=True)},
    )
    assert len(index["faces"]) == 2
    assert sorted(p.rsplit("/", 1)[1] for p in index["no_face"]) == ["blank.png", "broken.jpg"]
    for entry in index["faces"]:
        assert (entry["label"], entry["synth_source"]) == ("uncovered", True)
        assert Image.open(tmp_path / "out" / entry["file"]).size == (64, 64)
        assert np.asarray(entry["landmarks"]).shape == (5, 2)
