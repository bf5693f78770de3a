"""The manifest's versioned schema: the committed manifest follows it, our validator agrees with a full JSON
Schema implementation, and a manifest of another version or shape is refused with the field named."""

import copy
import json
import shutil

import jsonschema
import pytest

from masklens.manifest import ManifestError, load_manifest, manifest_format, schema, validate
from masklens.predict import Predictor

from .conftest import REPO

SHIPPED = REPO / "models" / "onnx"


@pytest.fixture(scope="module")
def shipped_manifest() -> dict:
    return json.loads((SHIPPED / "manifest.json").read_text())


def broken(manifest: dict, path: str, value=None, delete: bool = False) -> dict:
    """A copy of ``manifest`` with the field at ``path`` (keys joined by /) set to ``value`` (or deleted)."""
    changed = copy.deepcopy(manifest)
    *parents, last = path.split("/")
    node = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return changed


CASES = [  # (path, keys joined by /; new value or "DELETE"; the message's words)
    ("format", "masklens-manifest/1", 'field `format` is "masklens-manifest/1": this MaskLens reads'),
    ("tracking", "DELETE", "field `tracking` is missing"),
    ("classifier/webcam/file", "DELETE", "field `classifier.webcam.file` is missing"),
    ("classifier/input/name", 3, "field `classifier.input.name` is integer, expected string"),
    ("tracking/window", 1.5, "field `tracking.window` is number, expected integer"),
    ("input_limits/max_side", True, "field `input_limits.max_side` is boolean, expected integer"),
    ("classifier/live", {}, "field `classifier.live` is not in the schema"),
    ("face_detector/thresholds", [0.5, 0.6], "field `face_detector.thresholds` has 2 items, expected at least 3"),
    ("checkpoint/sha256", "abc", 'field `checkpoint.sha256` is "abc", which does not match ^[0-9a-f]{64}$'),
    ("tracking/min_face_size", -4, "field `tracking.min_face_size` is -4, expected more than 0"),
    (
        "classifier/preprocessing/interpolation",
        "nearest",
        'field `classifier.preprocessing.interpolation` is "nearest", expected one of "bilinear", "bicubic"',
    ),
    ("drawing/colormap/7", "red", 'field `drawing.colormap[7]` is "red", which does not match'),
    ("files/pnet.onnx", {"bytes": 0, "sha256": "0" * 64}, "field `files.pnet.onnx.bytes` is 0, expected at least 1"),
]


def test_the_committed_manifest_follows_its_schema(shipped_manifest):
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.Draft202012Validator(schema()).validate(shipped_manifest)
    validate(shipped_manifest)
    assert shipped_manifest["format"] == manifest_format() == schema()["$id"]


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[case[0] for case in CASES])
def test_a_broken_manifest_is_refused_naming_the_field(shipped_manifest, path, value, message):
    manifest = (
        broken(shipped_manifest, path, delete=True) if value == "DELETE" else broken(shipped_manifest, path, value)
    )
    with pytest.raises(ManifestError) as error:
        validate(manifest)
    assert message in str(error.value)
    # A full implementation of JSON Schema refuses it too: our subset says no more than the schema does.
    assert not jsonschema.Draft202012Validator(schema()).is_valid(manifest)


def test_the_predictor_refuses_an_old_manifest_before_opening_a_model(shipped_manifest, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("classifier*.onnx"))
    old = broken(shipped_manifest, "format", "masklens-manifest/1")
    old["live"] = old.pop("tracking")
    (folder / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(ManifestError, match='field `format` is "masklens-manifest/1"'):
        Predictor(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="is not JSON"):
        load_manifest(folder)
