"""Predictor over the exported ONNX graphs (no torch): the reference the browser is tested against.

    masklens predict --models models/onnx photo.jpg photos/ --out predictions.jsonl --overlays overlays/

Reads ``manifest.json`` in the model folder and refuses a model file whose sha256 differs from it.
For every photo: find faces (MTCNN cascade on the padded photo, with the whole-photo fallback: the
manifest's ``face_detector`` rule, see ``masklens.mtcnn.find_faces``), crop each as the training images
are framed, classify, and compute Grad-CAM for every class on every target layer. One JSON line per input file:
``{"file", "ok": true, "image_size": [w, h], "faces": [...]}`` or ``{"file", "ok": false, "error"}``.
A face is ``{"box", "score", "landmarks", "crop_box", "class", "cant_tell", "probabilities", "reason",
"reason_probabilities", "heatmaps": {layer: [class 0 map, class 1 map, class 2 map]}}`` with boxes in
pixels of the photo as stored (after EXIF rotation), coarse maps in [0, 1], probabilities calibrated and
``cant_tell`` null, or why the face gets no verdict (``masklens.abstention``: "too_small" or "unsure").
A file that fails (not an image, truncated, empty, too large, no face) gets an error line; the others go on, and the
exit status is 1 if any file failed.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

from masklens.cli import parse_config

from .abstention import AbstentionRule
from .face_finder import DetectionRule
from .framing import Framing, crop_box_for_face, crop_face, face_size
from .gradcam import gradcam_from_outputs, overlay_heatmap, upsample_cam
from .manifest import ModelIntegrityError, load_manifest


class PhotoError(ValueError):
    """One input file cannot be used; the message says why in plain words."""


def unreadable_format(head: bytes) -> str | None:
    """Why a file Pillow cannot open is no photo for us, for the formats people send (site/js/photofile.js
    recognises the same): a PDF, an SVG drawing, or a HEIC/AVIF photo this Pillow has no decoder for."""
    if head.startswith(b"%PDF-"):
        return "not an image: a PDF document"
    if head[4:8] == b"ftyp":
        brands = {head[i : i + 4] for i in range(8, min(len(head), int.from_bytes(head[:4], "big")), 4)}
        for name, known in (("AVIF", {b"avif", b"avis"}), ("HEIC", {b"heic", b"heix", b"heim", b"heis", b"mif1"})):
            if brands & known:
                return f"a {name} photo, which masklens cannot read (save it as JPEG)"
    text = head[:1024].removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<") and re.search(rb"<svg[\s>]", text, re.IGNORECASE):
        return "not a photo: an SVG drawing (save it as PNG or JPEG)"
    return None


def open_photo(path: str | Path, max_side: int, max_pixels: int) -> np.ndarray:
    """Decodes a photo to RGB uint8 [H, W, 3], EXIF-rotated, its longer side at most ``max_side``.

    JPEGs are decoded at a reduced scale (``draft``), so a 50-megapixel photo never needs its full
    size in memory; a photo over ``max_pixels`` is refused from its header, before decoding. Raises
    PhotoError with a plain-words reason for anything unusable.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise PhotoError("empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise PhotoError(
                    f"photo too large: {image.width} x {image.height} pixels (limit {max_pixels / 1e6:.0f} megapixels)"
                )
            image.draft("RGB", (max_side, max_side))
            image.load()
            upright = ImageOps.exif_transpose(image)
            if upright.mode.startswith("I;16") or upright.mode == "I":
                # 16-bit grey: Pillow's convert clips it at 255 (a white photo); keep the high byte instead,
                # as Pillow does for 16-bit colour.
                upright = Image.fromarray((np.asarray(upright, np.uint32).clip(0, 65535) >> 8).astype(np.uint8))
            photo = upright.convert("RGB")
    except UnidentifiedImageError:
        with open(path, "rb") as handle:
            named = unreadable_format(handle.read(4096))
        raise PhotoError(named or "not an image (the file's format is not a known image format)") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"photo too large (over {max_pixels / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"truncated or corrupt image ({error})") from None
    photo.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(photo)


def rule_from_manifest(manifest: dict) -> DetectionRule:
    """The face finder's settings, from the manifest's ``face_detector``."""
    settings = manifest["face_detector"]
    second_look = settings.get("second_look")
    return DetectionRule(
        thresholds=tuple(settings["thresholds"]),
        padding=settings["padding"],
        fallback_threshold=settings["fallback_threshold"],
        min_face_size=settings["min_face_size"],
        factor=settings["factor"],
        retry_min_face_size=settings["retry_min_face_size"],
        second_look=None
        if second_look is None
        else tuple(settings["nets"][second_look["nets"][net]]["file"] for net in ("rnet", "onet")),
    )


def normalize_crops(crops: np.ndarray, preprocessing: dict) -> np.ndarray:
    """uint8 crops [N, S, S, 3] already at the input size -> float32 network input [N, 3, S, S]."""
    scaled = crops.astype(np.float32) / 255.0
    scaled = (scaled - np.asarray(preprocessing["mean"], np.float32)) / np.asarray(preprocessing["std"], np.float32)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class FaceResult:
    box: list[float]
    score: float
    landmarks: list[list[float]]
    crop_box: list[float]
    probabilities: np.ndarray
    reason_probabilities: np.ndarray
    coarse_maps: dict[str, np.ndarray]  # layer -> [3, h, w]
    crop: np.ndarray = field(repr=False)


def session_options(threads: int = 0, integer_arithmetic: bool = False) -> ort.SessionOptions:
    """onnxruntime options for our graphs; ``threads`` 0 lets onnxruntime choose; ``integer_arithmetic`` for
    a statically quantized graph (export/quantize.py), whose quantize/dequantize pairs onnxruntime fuses into
    integer operators."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not integer_arithmetic:
        # Decode int8 weights once at load instead of on every run (same values, see compress_weights).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    # The predictor runs four sessions one after another (P-, R-, O-Net, classifier), each with its own
    # thread pool; threads left spinning after one run take the cores from the next (measured on 2
    # cores: a webcam frame's detection and classification 186 ms with spinning, 80 ms without).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class Predictor:
    def __init__(self, model_dir: str | Path, threads: int = 0):
        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(self.model_dir)
        self.threads = threads
        self.options = session_options(threads)
        classifier = self.manifest["classifier"]
        self.session = ort.InferenceSession(
            str(self.model_dir / classifier["file"]), self.options, providers=["CPUExecutionProvider"]
        )
        self.rule = rule_from_manifest(self.manifest)
        self.abstention = AbstentionRule.from_manifest(self.manifest)
        self.detector = self.rule.detector(self.model_dir, self.options)
        self.classes = self.manifest["classes"]
        self.reasons = self.manifest["reasons"]
        self.preprocessing = classifier["preprocessing"]
        self.layers = list(classifier["target_layers"])
        self.framing = Framing(**self.manifest["face_crop"]["framing"])
        self.colormap = np.array(
            [[int(entry[i : i + 2], 16) for i in (1, 3, 5)] for entry in self.manifest["drawing"]["colormap"]],
            dtype=np.uint8,
        )

    @functools.cached_property
    def live_session(self) -> ort.InferenceSession:
        """The webcam mode's forward-only graph (block8 only), opened on first use."""
        webcam = self.manifest["classifier"]["webcam"]
        return ort.InferenceSession(
            str(self.model_dir / webcam["file"]),
            session_options(self.threads, integer_arithmetic="quantization" in webcam),
            providers=["CPUExecutionProvider"],
        )

    def classify(self, inputs: np.ndarray, live: bool = False) -> dict[str, np.ndarray]:
        """Network input [N, 3, S, S] -> every output of the full graph, or of the live one, by name."""
        session = self.live_session if live else self.session
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {self.manifest["classifier"]["input"]["name"]: inputs})))

    def predict_crops(
        self, crops: np.ndarray, live: bool = False
    ) -> list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """uint8 crops [N, S, S, 3] -> per crop (class probabilities, reason probabilities, coarse maps);
        ``live``: through the webcam mode's graph, whose maps are block8's only."""
        outputs = self.classify(normalize_crops(crops, self.preprocessing), live)
        probabilities = self.abstention.probabilities(outputs["logits"])
        reason_probabilities = softmax(outputs["reason_logits"])
        layers = self.manifest["classifier"]["webcam"]["target_layers"] if live else self.layers
        maps = {
            layer: np.stack(
                [
                    gradcam_from_outputs(outputs[f"{layer}_activations"], outputs[f"{layer}_weights"], k)
                    for k in range(len(self.classes))
                ],
                axis=1,
            )
            for layer in layers
        }
        return [
            (probabilities[i], reason_probabilities[i], {layer: maps[layer][i] for layer in layers})
            for i in range(len(crops))
        ]

    def predict_photo(self, rgb: np.ndarray, whole_image: bool = False, live: bool = False) -> list[FaceResult]:
        """Faces found in an RGB photo; ``whole_image`` treats the photo itself as one face crop; ``live``
        classifies them with the webcam mode's graph (block8 maps only)."""
        size = self.preprocessing["size"]
        height, width = rgb.shape[:2]
        if whole_image:
            full = [0.0, 0.0, float(width), float(height)]
            crop = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
            faces = [(full, 1.0, [], full, crop)]
        else:
            faces = []
            for face in self.rule.find(self.detector, rgb):
                crop_box = [float(v) for v in crop_box_for_face(face.box, self.framing)]
                faces.append(
                    (
                        [float(v) for v in face.box],
                        float(face.score),
                        face.landmarks.tolist(),
                        crop_box,
                        crop_face(rgb, face.box, self.framing, size),
                    )
                )
        if not faces:
            return []
        predictions = self.predict_crops(np.stack([f[4] for f in faces]), live=live)
        return [
            FaceResult(
                box=box,
                score=score,
                landmarks=landmarks,
                crop_box=crop_box,
                probabilities=p,
                reason_probabilities=rp,
                coarse_maps=maps,
                crop=crop,
            )
            for (box, score, landmarks, crop_box, crop), (p, rp, maps) in zip(faces, predictions)
        ]

    def describe(self, face: FaceResult) -> dict:
        predicted = int(face.probabilities.argmax())
        reason = self.reasons[int(face.reason_probabilities.argmax())]
        return {
            "box": _rounded(face.box),
            "score": round(face.score, 6),
            "landmarks": _rounded(face.landmarks),
            "crop_box": _rounded(face.crop_box),
            "class": self.classes[predicted],
            "cant_tell": self.abstention.reason(face.probabilities, face_size(face.box)),
            "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, face.probabilities)},
            "reason": reason if self.classes[predicted] == "incorrect" else None,
            "reason_probabilities": {r: round(float(p), 6) for r, p in zip(self.reasons, face.reason_probabilities)},
            "heatmaps": {layer: _rounded(maps.tolist()) for layer, maps in face.coarse_maps.items()},
        }

    def overlays(self, face: FaceResult) -> dict[str, np.ndarray]:
        """Per target layer, the predicted class's heatmap blended on the face crop (uint8 RGB)."""
        predicted = int(face.probabilities.argmax())
        size = face.crop.shape[0]
        weight = self.manifest["drawing"]["image_weight"]
        return {
            layer: overlay_heatmap(face.crop, upsample_cam(maps[predicted][None], size)[0], self.colormap, weight)
            for layer, maps in face.coarse_maps.items()
        }


def _rounded(value, digits: int = 4):
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return round(float(value), digits)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, and every non-hidden file under each folder, sorted."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        else:
            paths.append(path)
    return paths


@dataclass(frozen=True)
class PredictConfig:
    models: str = field(default="models/onnx", metadata={"help": "folder with manifest.json and the ONNX files"})
    out: str = field(default="-", metadata={"help": "JSON-lines output file; - for standard output"})
    overlays: str = field(default="", metadata={"help": "folder for heatmap overlay PNGs (none if empty)"})
    whole_image: bool = field(default=False, metadata={"help": "treat each photo as one face crop (no detector)"})
    threads: int = 0


def run(config: PredictConfig, inputs: list[str]) -> int:
    """Predicts every input; returns the number of files that failed."""
    predictor = Predictor(config.models, config.threads)
    limits = predictor.manifest["input_limits"]
    failures = 0
    with nullcontext(sys.stdout) if config.out == "-" else open(config.out, "w") as out:
        for path in expand_inputs(inputs):
            record: dict = {"file": str(path)}
            try:
                if not path.exists():
                    raise PhotoError("no such file")
                rgb = open_photo(path, limits["max_side"], limits["max_pixels"])
                faces = predictor.predict_photo(rgb, config.whole_image)
                if not faces:
                    raise PhotoError("no face found (try --whole-image true if the photo is already a face crop)")
                record.update(
                    ok=True,
                    image_size=[int(rgb.shape[1]), int(rgb.shape[0])],
                    faces=[predictor.describe(face) for face in faces],
                )
                if config.overlays:
                    _write_overlays(predictor, faces, Path(config.overlays), path.stem)
            except PhotoError as error:
                failures += 1
                record.update(ok=False, error=str(error))
                print(f"{path}: {error}", file=sys.stderr)
            out.write(json.dumps(record) + "\n")
            out.flush()
    return failures


def _write_overlays(predictor: Predictor, faces: list[FaceResult], folder: Path, stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(faces):
        for layer, image in predictor.overlays(face).items():
            Image.fromarray(image).save(folder / f"{stem}-face{i}-{layer}.png")


def main(argv: list[str] | None = None) -> None:
    config, inputs = parse_config(
        PredictConfig, argv, description=__doc__.splitlines()[0], positional=("inputs", "photos or folders of photos")
    )
    try:
        failures = run(config, inputs)
    except ModelIntegrityError as error:
        sys.exit(f"masklens predict: {error}")
    sys.exit(1 if failures else 0)
