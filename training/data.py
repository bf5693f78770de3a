"""Dataset index and loading for MaskedFace-Net-style folders.

Layout read here: ``<root>/{train,validation,holdout}/{covered,incorrect,uncovered}/<name>.jpg``.
The class order is ``masklens.labels``' (the single definition).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from masklens.files import IMAGE_SUFFIXES
from masklens.labels import CLASSES, INCORRECT, NO_REASON, REASONS, reason_from_name

SPLITS: tuple[str, ...] = ("train", "validation", "holdout")
# A face crop of a photo known to show a mask, not whether it is worn correctly (training.faces' index).
MASKED = "masked"


class DatasetLayoutError(ValueError):
    """The folder does not have the expected split/class layout."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    reason: int  # index into REASONS, or NO_REASON


@dataclass(frozen=True)
class SplitIndex:
    """The readable samples of one split, plus the files that could not be read."""

    root: Path
    split: str
    samples: tuple[Sample, ...]
    unreadable: tuple[Path, ...]

    def class_counts(self) -> dict[str, int]:
        return {name: sum(s.label == i for s in self.samples) for i, name in enumerate(CLASSES)}

    def reason_counts(self) -> dict[str, int]:
        return {name: sum(s.reason == i for s in self.samples) for i, name in enumerate(REASONS)}

    def fingerprint(self) -> str:
        """sha256 over the sorted relative paths and labels: changes when the split's membership does."""
        digest = hashlib.sha256()
        for sample in self.samples:
            rel = sample.path.relative_to(self.root).as_posix()
            digest.update(f"{rel}\t{sample.label}\t{sample.reason}\n".encode())
        return digest.hexdigest()

    def summary(self) -> dict:
        return {
            "split": self.split,
            "images": len(self.samples),
            "classes": self.class_counts(),
            "reasons": self.reason_counts(),
            "unreadable": [p.relative_to(self.root).as_posix() for p in self.unreadable],
            "fingerprint": self.fingerprint(),
        }


def is_readable_image(path: Path) -> bool:
    """Fully decodes the file: header checks alone let truncated JPEGs through."""
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def index_split(root: str | Path, split: str, check_images: bool = True) -> SplitIndex:
    """Indexes ``root/split/<class>/`` for every class in CLASSES (see ``index_folder``)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DatasetLayoutError(f"missing split folder: {split_dir}")
    return index_folder(split_dir, check_images, root=Path(root), split=split)


def index_folder(
    folder: str | Path, check_images: bool = True, root: Path | None = None, split: str = ""
) -> SplitIndex:
    """Indexes ``folder/<class>/`` for every class in CLASSES.

    Raises DatasetLayoutError naming the first missing class folder. Files that are not decodable
    images are kept out of ``samples`` and listed in ``unreadable``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"missing folder: {folder}")
    samples: list[Sample] = []
    unreadable: list[Path] = []
    for label, class_name in enumerate(CLASSES):
        class_dir = folder / class_name
        if not class_dir.is_dir():
            raise DatasetLayoutError(f"missing class folder: {class_dir}")
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            if check_images and not is_readable_image(path):
                unreadable.append(path)
                continue
            reason_name = reason_from_name(path.name) if label == INCORRECT else None
            reason = REASONS.index(reason_name) if reason_name else NO_REASON
            samples.append(Sample(path=path, label=label, reason=reason))
    return SplitIndex(
        root=root or folder, split=split or folder.name, samples=tuple(samples), unreadable=tuple(unreadable)
    )


@dataclass(frozen=True)
class BinaryFolderIndex:
    """A real-photo folder with two weak labels: ``with_mask`` and ``without_mask``."""

    root: Path
    samples: tuple[tuple[Path, bool], ...]  # (path, has_mask)
    unreadable: tuple[Path, ...]


def index_mask_folder(root: str | Path, check_images: bool = True) -> BinaryFolderIndex:
    root = Path(root)
    samples: list[tuple[Path, bool]] = []
    unreadable: list[Path] = []
    for folder, has_mask in (("with_mask", True), ("without_mask", False)):
        class_dir = root / folder
        if not class_dir.is_dir():
            raise DatasetLayoutError(f"missing class folder: {class_dir}")
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            if check_images and not is_readable_image(path):
                unreadable.append(path)
            else:
                samples.append((path, has_mask))
    return BinaryFolderIndex(root=root, samples=tuple(samples), unreadable=tuple(unreadable))
