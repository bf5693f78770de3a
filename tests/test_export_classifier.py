"""The exported ONNX classifier: its gradients against torch autograd, its Grad-CAM against
pytorch_grad_cam, the graph's validity and the compressed weight formats."""

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from export.backward import (
    _convolution_backward,
    _max_pool2d_backward_by_matching,
    _max_pool2d_with_indices_backward,
    _threshold_backward,
)
from export.classifier import export_classifier, export_live_classifier, output_names
from export.weights import INT8_MIN_VALUES, compress_weights, weight_format
from masklens.gradcam import gradcam_from_outputs, upsample_cam
from masklens.labels import CLASSES
from masklens.preprocess import load_rgb, to_input_array
from training.model import FACENET_NORMALIZATION, Preprocessing, build_model

from .conftest import shared_data_or_skip

LAYERS = ("block8", "repeat_2")
SIZE = 160
aten = torch.ops.aten


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    """Random weights, with random batch-norm statistics so that folding them is really tested."""
    torch.manual_seed(0)
    model = build_model(Preprocessing(SIZE, **FACENET_NORMALIZATION)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    return path, export_classifier(model, path, LAYERS)


@pytest.fixture(scope="module")
def mirrored(model):
    """The same model answering with the mean over each image and its mirror image."""
    mirrored = copy.deepcopy(model)
    mirrored.mirror_average = True
    return mirrored


@pytest.fixture(scope="module")
def exported_mirrored(mirrored, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "classifier-mirrored.onnx"
    return path, export_classifier(mirrored, path, LAYERS)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(output_names(LAYERS), session(path).run(None, {"image": images})))


def random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, SIZE, SIZE)).astype(np.float32)


def torch_reference(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """The same outputs from the original (unfolded) torch model, gradients from autograd."""
    activations = {}
    handles = [
        model.gradcam_layer(layer).register_forward_hook(
            lambda module, inputs, output, layer=layer: activations.__setitem__(layer, output)
        )
        for layer in LAYERS
    ]
    try:
        logits, reason_logits = model(torch.from_numpy(images))
    finally:
        for handle in handles:
            handle.remove()
    gradients = [
        torch.autograd.grad(logits[:, k].sum(), [activations[layer] for layer in LAYERS], retain_graph=True)
        for k in range(len(CLASSES))
    ]
    outputs = {"logits": logits, "reason_logits": reason_logits}
    for i, layer in enumerate(LAYERS):
        outputs[f"{layer}_activations"] = activations[layer]
        outputs[f"{layer}_weights"] = torch.stack([per_class[i].mean((2, 3)) for per_class in gradients], 1)
    return {name: value.detach().numpy() for name, value in outputs.items()}


class LogitsOnly(nn.Module):
    """pytorch_grad_cam needs a model with a single output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def assert_gradcam_matches(model, path: Path, images: np.ndarray) -> None:
    outputs = run(path, images)
    for layer in LAYERS:
        with GradCAM(model=LogitsOnly(model), target_layers=[model.gradcam_layer(layer)]) as cam:
            for k in range(len(CLASSES)):
                expected = cam(input_tensor=torch.from_numpy(images), targets=[ClassifierOutputTarget(k)] * len(images))
                coarse = gradcam_from_outputs(outputs[f"{layer}_activations"], outputs[f"{layer}_weights"], k)
                assert coarse.shape == (len(images), *outputs[f"{layer}_activations"].shape[2:])
                actual = upsample_cam(coarse, SIZE)
                assert actual.shape == expected.shape
                np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-3, err_msg=f"{layer}, class {k}")


def test_backward_rewrites_match_aten():
    """Each forward-op rewrite of a backward op gives aten's input gradient, including a strided
    convolution that skipped a row (output_padding) and max-pool windows with tied maxima, with and
    without the pool's indices."""
    torch.manual_seed(0)
    for kernel, stride, padding, size in [
        ((3, 3), 2, (0, 0), 8),
        ((3, 3), 2, (0, 0), 9),
        ((1, 7), 1, (0, 3), 8),
        ((3, 1), 1, (1, 0), 5),
        ((3, 3), 1, (1, 1), 6),
    ]:
        x, weight = torch.randn(2, 4, size, size), torch.randn(5, 4, *kernel)
        conv = ([stride] * 2, list(padding), [1, 1], False, [0, 0], 1)
        grad = torch.randn_like(aten.convolution(x, weight, None, *conv))
        expected = aten.convolution_backward(grad, x, weight, None, *conv, [True, False, False])[0]
        actual = _convolution_backward(grad, x, weight, None, *conv, [True, False, False])[0]
        torch.testing.assert_close(actual, expected, msg=f"kernel {kernel}, stride {stride}, size {size}")

    for size in (8, 9):  # 8: the last row and column are in no window
        x = torch.relu(torch.randn(2, 4, size, size))  # many windows are all zero: ties
        pool = ([3, 3], [2, 2], [0, 0], [1, 1], False)
        output, indices = aten.max_pool2d_with_indices(x, *pool)
        grad = torch.randn_like(output)
        expected = aten.max_pool2d_with_indices_backward(grad, x, *pool, indices)
        torch.testing.assert_close(_max_pool2d_with_indices_backward(grad, x, *pool, indices), expected)
        # Without the indices: the first maximum of each window (in the order indices count) takes the gradient.
        torch.testing.assert_close(_max_pool2d_backward_by_matching(grad, x, *pool, None), expected)
    grad = torch.randn_like(x)
    torch.testing.assert_close(_threshold_backward(grad, x, 0), aten.threshold_backward(grad, x, 0))


def test_graph_is_valid_standard_onnx(exported):
    path, description = exported
    onnx.checker.check_model(str(path), full_check=True)
    graph_model = onnx.load(str(path))
    assert {node.domain for node in graph_model.graph.node} <= {"", "ai.onnx"}
    assert [(o.domain, o.version) for o in graph_model.opset_import if o.domain in ("", "ai.onnx")] == [("", 18)]
    # The gradients are computed in the graph: transposed convolutions mirror the trunk's.
    assert any(node.op_type == "ConvTranspose" for node in graph_model.graph.node)

    assert description["input"] == {"name": "image", "shape": ["batch", 3, SIZE, SIZE]}
    assert description["outputs"] == {
        "logits": ["batch", 3],
        "reason_logits": ["batch", 3],
        "block8_activations": ["batch", 1792, 3, 3],
        "block8_weights": ["batch", 3, 1792],
        "repeat_2_activations": ["batch", 896, 8, 8],
        "repeat_2_weights": ["batch", 3, 896],
    }
    assert description["maps"] == {"block8": [3, 3], "repeat_2": [8, 8]}
    io = session(path)
    assert [i.name for i in io.get_inputs()] == ["image"]
    assert [o.name for o in io.get_outputs()] == list(description["outputs"])


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_match_torch_autograd(model, exported, batch):
    path, _ = exported
    images = random_images(batch, seed=batch)
    actual, expected = run(path, images), torch_reference(model, images)
    for name in ("logits", "reason_logits", "block8_activations", "repeat_2_activations"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-4, err_msg=name)
    for layer in LAYERS:
        name = f"{layer}_weights"
        scale = np.abs(expected[name]).max()
        assert scale > 0
        assert np.abs(actual[name] - expected[name]).max() <= 1e-4 * scale, name


def test_gradcam_matches_pytorch_grad_cam_on_random_images(model, exported):
    assert_gradcam_matches(model, exported[0], random_images(2, seed=7))


def test_gradcam_matches_pytorch_grad_cam_on_holdout_faces(model, exported):
    holdout = shared_data_or_skip("maskedface-net", "holdout")
    preprocessing = model.preprocessing
    files = [path for name in CLASSES for path in sorted((holdout / name).glob("*.jpg"))[:2]]
    assert len(files) == 2 * len(CLASSES)
    images = np.stack([to_input_array(load_rgb(path), SIZE, preprocessing.mean, preprocessing.std) for path in files])
    assert_gradcam_matches(model, exported[0], images)


def assert_close_to(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], tolerance: float) -> None:
    for name, expected in reference.items():
        error = np.abs(outputs[name] - expected).max() / np.abs(expected).max()
        assert error <= tolerance, f"{name}: {error}"


@pytest.mark.parametrize("batch", [1, 3])
def test_mirror_averaged_outputs_match_torch_autograd(mirrored, exported_mirrored, batch):
    """Grad-CAM of the mirror-averaged logits, at each layer's aligned pair (training.model.MirrorPair)."""
    path, description = exported_mirrored
    assert description["mirror_average"] is True
    assert description["outputs"]["repeat_2_activations"] == ["batch", 2 * 896, 8, 8]
    assert description["maps"] == {"block8": [3, 3], "repeat_2": [8, 8]}
    images = random_images(batch, seed=10 + batch)
    actual, expected = run(path, images), torch_reference(mirrored, images)
    for name in ("logits", "reason_logits", "block8_activations", "repeat_2_activations"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-4, err_msg=name)
    for layer in LAYERS:
        name = f"{layer}_weights"
        assert np.abs(actual[name] - expected[name]).max() <= 1e-4 * np.abs(expected[name]).max(), name


def test_mirror_average_is_the_mean_of_two_looks(exported, exported_mirrored):
    """The mirrored graph's logits are the plain graph's for the image and for its mirror image, averaged; its
    maps are the mean of the two looks' Grad-CAM sums, the mirror's flipped back, before the ReLU."""
    images = random_images(2, seed=3)
    plain, mirror = run(exported[0], images), run(exported[0], images[..., ::-1].copy())
    both = run(exported_mirrored[0], images)
    np.testing.assert_allclose(both["logits"], (plain["logits"] + mirror["logits"]) / 2, rtol=0, atol=1e-4)
    for layer in LAYERS:
        for k in range(len(CLASSES)):
            looks = [
                np.einsum("nc,nchw->nhw", outputs[f"{layer}_weights"][:, k], outputs[f"{layer}_activations"])
                for outputs in (plain, mirror)
            ]
            expected = np.maximum((looks[0] + looks[1][..., ::-1]) / 2, 0)
            expected -= expected.min((1, 2), keepdims=True)
            expected /= 1e-7 + expected.max((1, 2), keepdims=True)  # scaled per image, as pytorch_grad_cam does
            actual = gradcam_from_outputs(both[f"{layer}_activations"], both[f"{layer}_weights"], k)
            np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-3, err_msg=f"{layer}, class {k}")


def test_mirror_averaged_model_answers_the_mean_of_two_looks(model, mirrored):
    images = torch.from_numpy(random_images(2, seed=5))
    with torch.no_grad():
        looks = [model(images), model(images.flip(-1))]
        both = mirrored(images)
    for k, name in enumerate(("logits", "reason_logits")):
        torch.testing.assert_close(both[k], (looks[0][k] + looks[1][k]) / 2, msg=name)
    assert mirrored.state_dict().keys() == model.state_dict().keys()  # checkpoints are the same


@pytest.mark.parametrize("weights", ["fp32", "int8"])
def test_a_graph_sharing_weights_computes_what_the_full_one_does(mirrored, tmp_path, weights):
    """The webcam graph reads its weights from the full graph's file by byte offset. The exporter names small
    constants val_N afresh in each graph, and in the mirrored int8 graphs one name holds a different scalar in
    each: taken by name, the webcam graph's logits were inf."""
    full = tmp_path / "classifier.onnx"
    export_classifier(mirrored, full, LAYERS, weights=weights)
    export_live_classifier(mirrored, full, tmp_path / "classifier-live.onnx")
    images = random_images(2, seed=4)
    expected = run(full, images)
    live = dict(zip(output_names(("block8",)), session(tmp_path / "classifier-live.onnx").run(None, {"image": images})))
    for name, value in live.items():
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-4, err_msg=name)


def test_mirror_averaged_gradcam_matches_pytorch_grad_cam(mirrored, exported_mirrored):
    assert_gradcam_matches(mirrored, exported_mirrored[0], random_images(2, seed=8))


def test_fp16_weights(exported, tmp_path):
    path, _ = exported
    fp16_path = tmp_path / "fp16.onnx"
    onnx.save(compress_weights(onnx.load(str(path)), "fp16"), fp16_path)
    onnx.checker.check_model(str(fp16_path), full_check=True)
    assert 0.45 < fp16_path.stat().st_size / path.stat().st_size < 0.55
    images = random_images(2)
    outputs = run(fp16_path, images)
    assert all(value.dtype == np.float32 for value in outputs.values())
    assert_close_to(run(path, images), outputs, tolerance=0.05)


def test_int8_weights_with_a_fixed_batch(model, exported, tmp_path):
    path, _ = exported
    int8_path = tmp_path / "int8.onnx"
    description = export_classifier(model, int8_path, LAYERS, batch_size=2, weights="int8")
    assert description["input"]["shape"] == [2, 3, SIZE, SIZE]
    assert description["outputs"]["repeat_2_weights"] == [2, 3, 896]
    graph_model = onnx.load(str(int8_path))
    assert all(node.domain in ("", "ai.onnx") for node in graph_model.graph.node)
    assert int8_path.stat().st_size < 0.3 * path.stat().st_size
    images = random_images(2)
    assert_close_to(run(path, images), run(int8_path, images), tolerance=0.15)


def test_int8_weights_keep_the_smallest_tensors_fp16():
    """int8 storage rounds the large weights per output channel; tensors under INT8_MIN_VALUES values (the stem's,
    whose rounding costs the most) stay fp16, and the graph's outputs stay float32 and close to fp32's."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    large = rng.normal(size=(INT8_MIN_VALUES // 64, 64)).astype(np.float32)  # [in, out] for MatMul
    small = rng.normal(size=(64, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "large"], ["h"]), helper.make_node("MatMul", ["h", "small"], ["y"])],
        "two_layers",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, large.shape[0]])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(large, "large"), numpy_helper.from_array(small, "small")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compressed = compress_weights(proto, "int8")
    stored = {tensor.name: tensor.data_type for tensor in compressed.graph.initializer}
    assert stored == {
        "large.int8": onnx.TensorProto.INT8,
        "large.scale": onnx.TensorProto.FLOAT,
        "small.fp16": onnx.TensorProto.FLOAT16,
    }
    assert weight_format(compressed) == "int8" and weight_format(compress_weights(proto, "fp16")) == "fp16"
    x = rng.normal(size=(1, large.shape[0])).astype(np.float32)
    reference = x @ large @ small
    session = ort.InferenceSession(compressed.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    assert y.dtype == np.float32 and np.abs(y - reference).max() < 0.02 * np.abs(reference).max()


@pytest.mark.slow
def test_weight_formats_are_compared_on_a_whole_split(model, tiny_tree, tmp_path, monkeypatch):
    """masklens export --weights auto: every format exported and measured against fp32 on the split and each
    real set; the smallest within bounds ships, and a format asked for outside them is refused by name."""
    from export.build import ExportConfig, compare_formats
    from export.checks import split_inputs
    from training.data import index_split

    samples = index_split(tiny_tree, "holdout").samples
    inputs = split_inputs(samples, model.preprocessing)
    labels = np.array([s.label for s in samples])
    real = {"real-like": inputs[::-1].copy()}
    report = compare_formats(model, ExportConfig(data_root=str(tiny_tree), threads=1), tmp_path, inputs, labels, real)
    assert report["images"] == 12 and list(report["formats"]) == ["fp32", "fp16", "int8"]
    assert report["sets"] == {"holdout": 12, "real-like": 12}
    fp32 = report["formats"]["fp32"]
    for measured in fp32["sets"].values():
        assert measured["same_class"] == 1.0 and measured["max_probability_difference"] == 0.0
        assert all(
            layer["median_spearman"] == 1.0 and layer["median_top_iou"] == 1.0 for layer in measured["layers"].values()
        )
    assert fp32["within_bounds"] and fp32["failures"] == []
    passing = [w for w, entry in report["formats"].items() if entry["within_bounds"]]
    assert report["chosen"] == min(passing, key=lambda w: report["formats"][w]["bytes"])
    assert report["formats"]["int8"]["bytes"] < report["formats"]["fp16"]["bytes"] < fp32["bytes"]
    # A format asked for outside the bounds is refused, naming the set, layer, measure and value.
    broken = lambda name, measured: [f"{name}: block8 median spearman 0.5000 < 0.95"]
    monkeypatch.setattr("export.build.failures", broken)
    asked = ExportConfig(data_root=str(tiny_tree), threads=1, weights="int8")
    with pytest.raises(SystemExit, match=r"int8 weights stray from fp32.*holdout: block8 median spearman 0\.5000"):
        compare_formats(model, asked, tmp_path, inputs, labels, real)
