"""Finding the faces of a photo: the rule the predictor, the video predictor and the site share.

The manifest's ``face_detector`` section holds the rule (``DetectionRule``); ``find_faces`` runs the MTCNN
cascade (``masklens.mtcnn.FaceDetector``) on the padded photo, looks again for smaller faces where none was
found, and lets O-Net judge the photo itself as a face crop as a last resort. Where all of that finds no
face and the rule has a second look (R-Net and O-Net fine-tuned on masked faces, ``masklens
train-detector``), the same steps run once more with those nets: a face the stock nets find keeps their
box, so the classifier sees the framing it was trained on. site/js/mtcnn.js's findFaces follows it step
for step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .mtcnn import Face, FaceDetector


@dataclass(frozen=True)
class DetectionRule:
    """Cascade settings plus what ``find_faces`` adds; the export writes it into the manifest."""

    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    padding: float = 0.0  # of the photo's longer side, added on every side
    fallback_threshold: float | None = None  # O-Net's threshold for the whole photo when nothing is found
    min_face_size: float = 20.0
    factor: float = 0.709
    retry_min_face_size: float | None = None  # when nothing is found, the cascade once more for smaller faces
    # Where nothing is found: the files of the R-Net and O-Net that take the stock ones' place for a second look.
    second_look: tuple[str, str] | None = None

    def detector(self, model_dir: str | Path, session_options: ort.SessionOptions | None = None) -> FaceDetector:
        detector = FaceDetector(model_dir, self.min_face_size, self.thresholds, self.factor, session_options)
        if self.second_look is not None:  # P-Net shared
            files = dict(zip(("rnet", "onet"), self.second_look))
            detector.second_look = detector.with_nets(model_dir, files, session_options)
        return detector

    def find(self, detector: FaceDetector, rgb: np.ndarray, min_face_size: float | None = None) -> list[Face]:
        """``find_faces`` with this rule; ``min_face_size`` replaces the detector's for this photo."""
        second_look = None if self.second_look is None else detector.second_look
        return find_faces(
            detector, rgb, self.padding, self.fallback_threshold, self.retry_min_face_size, min_face_size, second_look
        )


# The rule the export ships (evidence: results/detection.json, made by studies/detection_study.py).
# Always looking for faces down to 12 px instead of 20 found 2 more of 628 masked photos and more false
# faces; looking again at 12 px only where nothing is found at 20 finds 8 more and no false face more
# on the unmasked photos. The export adds the second look when given its nets (--second-look-weights;
# evidence: results/detector-finetune.json).
SHIPPED_RULE = DetectionRule(thresholds=(0.5, 0.6, 0.6), padding=0.3, fallback_threshold=0.2, retry_min_face_size=12.0)


def pad_photo(rgb: np.ndarray, padding: float) -> tuple[np.ndarray, int]:
    """Surrounds a photo with ``round(padding * longer side)`` pixels of its edge pixels, repeated.

    Returns the padded photo and the margin. MTCNN cannot find a face that fills the photo (its
    pyramid needs context around a face, and P-Net's boxes start inside the image), which is how
    many selfies and cropped photos of masked faces are framed.
    """
    margin = round(padding * max(rgb.shape[:2]))
    if margin == 0:
        return rgb, 0
    return np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), mode="edge"), margin


def whole_photo_boxes(height: int, width: int) -> np.ndarray:
    """Three squares centred on the photo, of side its shorter side, its longer side and their mean.

    A photo that is already a face crop frames the face anywhere between the first (a wide photo
    of a face) and the second (a tall close-up that cuts off the top of the head or the chin).
    """
    boxes = []
    for side in (min(height, width), max(height, width), (height + width) / 2):
        x1, y1 = (width - side) / 2, (height - side) / 2
        boxes.append([x1, y1, x1 + side, y1 + side])
    return np.array(boxes, dtype=np.float32)


def find_faces(
    detector: FaceDetector,
    rgb: np.ndarray,
    padding: float = 0.0,
    fallback_threshold: float | None = None,
    retry_min_face_size: float | None = None,
    min_face_size: float | None = None,
    second_look: FaceDetector | None = None,
) -> list[Face]:
    """The faces of an RGB photo, in its pixels: the cascade run on the padded photo, looking for faces
    down to ``min_face_size`` (by default the detector's).

    When the cascade finds nothing and ``retry_min_face_size`` is set, it runs once more looking for
    faces down to that size (small people in small photos), so photos it finds faces in keep them.
    When it still finds nothing and ``fallback_threshold`` is set, O-Net alone judges the
    squares of ``whole_photo_boxes``, the ways a photo that is already a face crop frames its face;
    a probability above the threshold makes one a face (its box regressed by O-Net, and overlaps
    suppressed, as in the cascade's last stage, so at most one survives). When all that finds nothing
    and ``second_look`` is given (a detector with other R-Net and O-Net), the same steps run with it.
    """
    padded, margin = pad_photo(rgb, padding)
    faces: list[Face] = []
    for cascade in (detector, second_look):
        if cascade is None or faces:
            break
        faces = cascade.detect(padded, min_face_size)
        if not faces and retry_min_face_size is not None:
            faces = cascade.detect(padded, retry_min_face_size)
        if not faces and fallback_threshold is not None:
            image = np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)
            candidate = whole_photo_boxes(*rgb.shape[:2]) + np.float32(margin)
            boxes, scores, landmarks = cascade.output(image, candidate, threshold=fallback_threshold)
            faces = [Face(box=b, score=float(s), landmarks=p) for b, s, p in zip(boxes, scores, landmarks)]
    offset = np.float32(margin)
    return [Face(box=face.box - offset, score=face.score, landmarks=face.landmarks - offset) for face in faces]
