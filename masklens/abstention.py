"""When the checker says "can't tell" instead of a verdict: site/js/abstention.js mirrors this file.

The classifier's probabilities are calibrated by temperature scaling (softmax(logits / temperature), the
temperature fitted on real faces held out of training: ``studies.calibration``), and a face gets no verdict
when it is too small to judge (its box's side under ``min_face_size`` photo pixels) or when its calibrated top
probability is under ``min_probability``. The manifest's ``abstention`` holds the rule; a manifest without one
abstains from nothing and leaves the probabilities as the graph gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOO_SMALL = "too_small"
UNSURE = "unsure"
# What the page and the CLI say for each; the page shows them in place of a verdict.
MESSAGES = {
    TOO_SMALL: "can't tell: the face is too small (move closer)",
    UNSURE: "can't tell: the face is unclear (face the camera, in good light)",
}


@dataclass(frozen=True)
class AbstentionRule:
    temperature: float = 1.0
    min_probability: float = 0.0
    min_face_size: float = 0.0

    @classmethod
    def from_manifest(cls, manifest: dict) -> AbstentionRule:
        rule = manifest.get("abstention")
        if rule is None:
            return cls()
        return cls(rule["temperature"], rule["min_probability"], rule["min_face_size"])

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities [N, K] of logits [N, K], computed in float32 as the page does."""
        scaled = logits.astype(np.float32) / np.float32(self.temperature)
        shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def reason(self, probabilities: np.ndarray, face_size: float) -> str | None:
        """TOO_SMALL, UNSURE, or None for a face that gets its verdict."""
        if face_size < self.min_face_size:
            return TOO_SMALL
        if float(np.max(probabilities)) < self.min_probability:
            return UNSURE
        return None
