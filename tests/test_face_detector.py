"""The ONNX MTCNN (export/face_detector.py), its numpy cascade (masklens/mtcnn.py) and the face framing
(masklens/framing.py), checked against facenet-pytorch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from facenet_pytorch import MTCNN
from PIL import Image
from torch.nn.functional import interpolate

from export.face_detector import export_mtcnn, load_mtcnn
from masklens.framing import Framing, crop_box_for_face, crop_face
from masklens.mtcnn import FaceDetector, area_resize, nms
from studies.framing import FaceMeasurement, framing_from_measurements

from .conftest import shared_data_or_skip

# Real photos of both kinds, with one and two faces and none (both detectors miss the masked face
# in with_mask_00012), a tie in O-Net scores (without_mask_00006), and two training-style crops.
PARITY_IMAGES = [
    "real-photos/test/without_mask/without_mask_00000.jpg",
    "real-photos/test/without_mask/without_mask_00006.jpg",
    "real-photos/test/without_mask/without_mask_00049.jpg",
    "real-photos/test/without_mask/without_mask_00601.jpg",
    "real-photos/test/with_mask/with_mask_00008.jpg",
    "real-photos/test/with_mask/with_mask_00012.jpg",
    "real-photos/test/with_mask/with_mask_00055.jpg",
    "real-photos/test/with_mask/with_mask_00209.jpg",
    "maskedface-net/holdout/uncovered/09000.jpg",
    "maskedface-net/holdout/covered/04010_Mask.jpg",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("mtcnn")
    return out_dir, export_mtcnn(out_dir)


@pytest.fixture(scope="module")
def torch_mtcnn():
    return MTCNN(keep_all=True, device="cpu")


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """A made-up fine-tuning of R-Net and O-Net (the wheel's weights, slightly perturbed), exported."""
    out_dir = tmp_path_factory.mktemp("mtcnn-fine-tuned")
    stock = MTCNN(device="cpu")
    generator = torch.Generator().manual_seed(0)
    nets = {
        name: {
            k: v + 0.05 * torch.randn(v.shape, generator=generator)
            for k, v in getattr(stock, name).state_dict().items()
        }
        for name in ("rnet", "onet")
    }
    weights = out_dir / "mtcnn-masked.pt"
    torch.save({"header": {"format": "test"}, "nets": nets}, weights)
    return out_dir, export_mtcnn(out_dir, weights), load_mtcnn(weights)


@pytest.fixture(scope="module")
def detector(exported):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return FaceDetector(exported[0], session_options=options)


def test_export_description(exported):
    out_dir, description = exported
    assert description["opset"] == 17
    assert set(description["nets"]) == {"pnet", "rnet", "onet"}
    for net in description["nets"].values():
        assert (out_dir / net["file"]).is_file()
    assert list(description["nets"]["onet"]["outputs"]) == ["box_offsets", "landmarks", "probabilities"]


@pytest.mark.parametrize(
    "net, shape",
    [
        ("pnet", (1, 3, 12, 12)),
        ("pnet", (2, 3, 97, 61)),
        ("pnet", (1, 3, 260, 331)),
        ("rnet", (1, 3, 24, 24)),
        ("rnet", (5, 3, 24, 24)),
        ("onet", (1, 3, 48, 48)),
        ("onet", (4, 3, 48, 48)),
    ],
)
def test_onnx_matches_torch(exported, torch_mtcnn, net, shape):
    out_dir, description = exported
    image = np.random.default_rng(sum(shape)).uniform(-1, 1, shape).astype(np.float32)
    with torch.no_grad():
        expected = getattr(torch_mtcnn, net)(torch.from_numpy(image))
    session = ort.InferenceSession(str(out_dir / f"{net}.onnx"), providers=["CPUExecutionProvider"])
    names = list(description["nets"][net]["outputs"])
    actual = session.run(names, {"image": image})
    assert len(actual) == len(expected)
    for name, a, e in zip(names, actual, expected):
        np.testing.assert_allclose(a, e.numpy(), atol=1e-4, rtol=0, err_msg=f"{net}.{name}")


@pytest.mark.parametrize("net, shape", [("pnet", (1, 3, 40, 30)), ("rnet", (3, 3, 24, 24)), ("onet", (3, 3, 48, 48))])
def test_fine_tuned_onnx_matches_torch(fine_tuned, torch_mtcnn, net, shape):
    out_dir, description, mtcnn = fine_tuned
    image = np.random.default_rng(sum(shape)).uniform(-1, 1, shape).astype(np.float32)
    with torch.no_grad():
        expected = getattr(mtcnn, net)(torch.from_numpy(image))
        stock = getattr(torch_mtcnn, net)(torch.from_numpy(image))
    session = ort.InferenceSession(str(out_dir / f"{net}.onnx"), providers=["CPUExecutionProvider"])
    actual = session.run(list(description["nets"][net]["outputs"]), {"image": image})
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e.numpy(), atol=1e-4, rtol=0)
    # The file's nets replace the wheel's; P-Net, not in it, stays the wheel's.
    changed = not np.allclose(actual[0], stock[0].numpy(), atol=1e-3)
    assert changed == (net != "pnet")


@pytest.mark.parametrize(
    "in_hw, out_hw", [((37, 53), (24, 24)), ((256, 256), (154, 154)), ((13, 9), (48, 48)), ((100, 71), (30, 33))]
)
def test_area_resize_matches_torch(in_hw, out_hw):
    image = np.random.default_rng(0).integers(0, 256, (3, *in_hw)).astype(np.float32)
    expected = interpolate(torch.from_numpy(image)[None], size=out_hw, mode="area")[0].numpy()
    np.testing.assert_allclose(area_resize(image, *out_hw), expected, atol=1e-3, rtol=0)


def box_iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("relative", PARITY_IMAGES)
def test_cascade_matches_facenet(detector, torch_mtcnn, relative):
    rgb = np.asarray(Image.open(shared_data_or_skip(relative)).convert("RGB"))
    faces = detector.detect(rgb)
    boxes, probs, points = torch_mtcnn.detect(rgb, landmarks=True)
    expected = [] if boxes is None else list(zip(boxes, probs, points))
    assert len(faces) == len(expected)
    # facenet orders faces by size, ours by score: pair each reference face with its best match.
    for box, prob, landmarks in expected:
        face = max(faces, key=lambda f: box_iou(f.box, box))
        assert box_iou(face.box, box) >= 0.95
        assert np.abs(face.landmarks - landmarks).max() <= 2.0
        assert face.score == pytest.approx(prob, abs=1e-4)


def test_no_face_in_uniform_image(detector):
    assert detector.detect(np.full((120, 160, 3), 128, dtype=np.uint8)) == []


def test_nms_ties_and_overlap_modes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 4, 4], [20, 20, 30, 30]], dtype=np.float32)
    scores = np.array([0.9, 0.9, 0.8, 0.7], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.5, ties="last").tolist() == [1, 2, 3]
    # The small box lies inside box 0: by intersection over the smaller area it is suppressed.
    assert nms(boxes, scores, 0.5, overlap="min").tolist() == [0, 3]


def test_crop_box_for_face():
    framing = Framing(center_dx=0.1, center_dy=-0.25, side=2.0)
    # A 40 x 60 box centred at (70, 130): face size (40 + 60) / 2 = 50.
    x1, y1, x2, y2 = crop_box_for_face((50, 100, 90, 160), framing)
    assert (x1 + x2) / 2 == pytest.approx(70 + 5)
    assert (y1 + y2) / 2 == pytest.approx(130 - 12.5)
    assert x2 - x1 == pytest.approx(100)
    assert y2 - y1 == pytest.approx(100)


def test_framing_reproduces_training_crop():
    # If every training image has its face at the same place, the rule crops exactly that image.
    box = (60.0, 80.0, 200.0, 240.0)
    framing = framing_from_measurements([FaceMeasurement(box=box, image_size=256, faces=1)] * 3)
    assert crop_box_for_face(box, framing) == pytest.approx((0, 0, 256, 256))


def test_crop_face_repeats_edges():
    y, x = np.mgrid[:40, :60]
    rgb = np.stack([x * 4, y * 6, (x + y) % 256], axis=2).astype(np.uint8)
    framing = Framing(center_dx=0.0, center_dy=0.0, side=2.0)
    # A 20 px face box at the bottom-left corner: its 40 px crop reaches 10 px past the left edge
    # and 20 px past the bottom. out_size 40 keeps the crop's own pixels.
    crop = crop_face(rgb, (0, 30, 20, 50), framing, out_size=40)
    padded = np.pad(rgb, ((0, 20), (10, 0), (0, 0)), mode="edge")
    np.testing.assert_array_equal(crop, padded[20:60, 0:40])
