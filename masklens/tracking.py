"""Faces followed across video frames: the rule the webcam mode (``site/js/tracking.js``) and the video
predictor (``masklens/video.py``) share, so that both give a face the same track and the same label.

The export writes ``TrackingRule`` into the manifest (``tracking``); both sides read it from there.

- Faces are found with the manifest's face-finder rule on the frame scaled down to ``detect_max_side``
  (Pillow's ``thumbnail``, bilinear), looking for faces of ``min_face_size`` frame pixels (no second
  look for smaller ones), and their boxes scaled back to the frame; each face is then cropped from the full
  frame, as photos are.

- After each detection round, detections continue tracks by box overlap: every (track, detection) pair
  with IoU >= ``iou_threshold`` is a candidate, taken greedily from the highest IoU (ties: lower track
  index, then lower detection index), each track and detection at most once. A matched track takes the
  detection's box; a detection left over starts a new track (ids count up from 1, in detection order);
  a track left over is kept, box unchanged, for ``max_missed`` rounds, then dropped.
- A track's label is the mean of its last ``window`` class probability vectors (and reason vectors),
  so one odd frame does not flip it; the class is their argmax (the first on ties), the reason only
  for ``incorrect``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrackingRule:
    """How webcam frames and video frames are followed; the export writes it as the manifest's ``tracking``."""

    min_face_size: float = 40.0  # in frame pixels; live faces are near the camera: a coarser pyramid is cheaper
    detect_max_side: int = 320  # faces are found on the frame scaled down to this (Pillow's thumbnail), for speed
    iou_threshold: float = 0.3
    window: int = 5
    max_missed: int = 3


def box_iou(a, b) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes (0 when either is empty)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_boxes(track_boxes, detection_boxes, iou_threshold: float) -> list[tuple[int, int]]:
    """(track index, detection index) pairs, greedy from the highest IoU; see the module docstring."""
    candidates = []
    for t, track_box in enumerate(track_boxes):
        for d, detection_box in enumerate(detection_boxes):
            overlap = box_iou(track_box, detection_box)
            if overlap >= iou_threshold:
                candidates.append((-overlap, t, d))
    candidates.sort()
    used_tracks, used_detections, pairs = set(), set(), []
    for _, t, d in candidates:
        if t not in used_tracks and d not in used_detections:
            used_tracks.add(t)
            used_detections.add(d)
            pairs.append((t, d))
    return pairs


def first_argmax(values) -> int:
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best


@dataclass
class Track:
    id: int
    box: list[float]
    missed: int = 0
    probabilities: list[list[float]] = field(default_factory=list)  # the last `window` classifications
    reason_probabilities: list[list[float]] = field(default_factory=list)

    def smoothed(self) -> tuple[list[float], list[float]] | None:
        """Mean class and reason probabilities over the window, summed in order (as the browser does)."""
        if not self.probabilities:
            return None

        def mean(rows):
            return [sum(row[k] for row in rows) / len(rows) for k in range(len(rows[0]))]

        return mean(self.probabilities), mean(self.reason_probabilities)


class Tracker:
    """The tracks of one video; ``update`` after each detection round, ``observe`` per classification."""

    def __init__(self, rule: TrackingRule, classes: list[str], reasons: list[str]):
        self.rule, self.classes, self.reasons = rule, classes, reasons
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes) -> list[Track]:
        """Matches a detection round's boxes to the tracks; returns the track of each box, in box order."""
        boxes = [[float(v) for v in box] for box in boxes]
        pairs = match_boxes([t.box for t in self.tracks], boxes, self.rule.iou_threshold)
        of_box: list[Track | None] = [None] * len(boxes)
        matched = set()
        for t, d in pairs:
            track = self.tracks[t]
            track.box, track.missed = boxes[d], 0
            of_box[d] = track
            matched.add(t)
        kept = []
        for t, track in enumerate(self.tracks):
            if t not in matched:
                track.missed += 1
            if track.missed <= self.rule.max_missed:
                kept.append(track)
        for d, box in enumerate(boxes):
            if of_box[d] is None:
                of_box[d] = Track(id=self.next_id, box=box)
                self.next_id += 1
                kept.append(of_box[d])
        self.tracks = kept
        return of_box  # type: ignore[return-value]

    def observe(self, track: Track, probabilities, reason_probabilities) -> None:
        track.probabilities = (track.probabilities + [[float(p) for p in probabilities]])[-self.rule.window :]
        track.reason_probabilities = (track.reason_probabilities + [[float(p) for p in reason_probabilities]])[
            -self.rule.window :
        ]

    def label(self, track: Track) -> dict | None:
        """{class, probabilities, reason, reason_probabilities} smoothed over the window, or None."""
        smoothed = track.smoothed()
        if smoothed is None:
            return None
        probabilities, reason_probabilities = smoothed
        predicted = self.classes[first_argmax(probabilities)]
        return {
            "class": predicted,
            "probabilities": dict(zip(self.classes, probabilities)),
            "reason": self.reasons[first_argmax(reason_probabilities)] if predicted == "incorrect" else None,
            "reason_probabilities": dict(zip(self.reasons, reason_probabilities)),
        }
