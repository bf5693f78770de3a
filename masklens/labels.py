"""The class and reason names, in order: the single definition of the label order.

Checkpoints and the export manifest copy it from here; the runtime, the browser and every report read
it back from the manifest.
"""

from __future__ import annotations

import re
from pathlib import Path

CLASSES: tuple[str, ...] = ("covered", "incorrect", "uncovered")
INCORRECT = CLASSES.index("incorrect")

# What is left uncovered when a mask is worn incorrectly, keyed by MaskedFace-Net's file-name suffix.
REASONS: tuple[str, ...] = ("nose", "chin", "nose_and_mouth")
REASON_SUFFIXES: dict[str, str] = {
    "_Mask_Mouth_Chin": "nose",
    "_Mask_Nose_Mouth": "chin",
    "_Mask_Chin": "nose_and_mouth",
}
NO_REASON = -1
_REASON_PATTERN = re.compile("(" + "|".join(sorted(REASON_SUFFIXES, key=len, reverse=True)) + r")$")


def reason_from_name(name: str) -> str | None:
    """The uncovered part encoded in a MaskedFace-Net file name, or None when it has no reason suffix."""
    match = _REASON_PATTERN.search(Path(name).stem)
    return REASON_SUFFIXES[match.group(1)] if match else None
