"""The bad-input corpus: the odd and broken files people give the checker, each with the outcome it must get
(``ENTRIES``), and ``write_corpus``, which writes into a folder every entry this machine can write.

The corpus is written at run time (nothing of it is committed): empty, truncated and renamed files, the
formats and pixel layouts phones and editors make (alpha, 16 bits, grey, CMYK, EXIF orientations 1 to 8,
animated GIF, WebP, SVG, HEIC, AVIF), sizes from 1 x 1 to a 30000 x 30000 decompression bomb, and faces too
small, cut by the edge, absent or twelve at once. The photos with faces are drawn from real-photos/test of the
shared data (read where it lies, never copied into the repository); without it those entries are left out,
and said to be. The files themselves are made by ``studies.bad_input_files``; ``studies.bad_inputs`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .bad_input_files import (
    STORED_FOR_ORIENTATION,
    Sources,
    animated,
    avif_writer_missing,
    bomb,
    cut_face,
    gradient,
    heic,
    heic_writer_missing,
    huge,
    minimal_pdf,
    oriented,
    save_as,
    sixteen_bit,
    sixteen_bit_grey,
    small_face,
    svg,
    truncated,
    twelve_faces,
    with_alpha,
)

REFUSED, NO_FACE, FACES, NO_ANSWER = "refused", "no face", "faces", "no answer"
REFERENCE = "orientation-1.jpg"  # the face photo as a plain JPEG: other entries must decode to the same picture


@dataclass(frozen=True)
class Expected:
    """What an entry must get on both sides."""

    outcome: str  # REFUSED, NO_FACE or FACES
    faces: int = 0
    words: tuple[str, ...] = ()  # a refusal's message holds each (either case)
    cant_tell: str | None = None  # every face's cant_tell
    like: str | None = None  # the same image size and face box (IoU >= LIKE_IOU) as that entry's
    scaled: bool = False  # brought down to the manifest's max_side


LIKE_IOU = 0.7
# An entry's expected outcome, in words, when it is like=REFERENCE (the plain JPEG: EXIF orientation 1).
SAME_FACE = "1 face, as in the plain JPEG"


@dataclass(frozen=True)
class Entry:
    file: str
    what: str
    expected: str  # in words, for the docs table
    expect: Expected
    write: Callable[[Path, Sources | None], None]
    needs_faces: bool = True  # drawn from the shared data's face photos
    needs: Callable[[], str | None] = lambda: None  # why this machine cannot write it, or None


ENTRIES: tuple[Entry, ...] = (
    Entry(
        "empty.jpg",
        "0-byte file",
        "refused: empty",
        Expected(REFUSED, words=("empty",)),
        lambda path, _: path.write_bytes(b""),
        needs_faces=False,
    ),
    Entry(
        "truncated.jpg",
        "JPEG cut off half way",
        "refused: damaged",
        Expected(REFUSED, words=("image",)),
        truncated,
        needs_faces=False,
    ),
    Entry(
        "text.jpg",
        "text file named .jpg",
        "refused: not an image",
        Expected(REFUSED, words=("image",)),
        lambda path, _: path.write_text("Shopping list: masks, soap.\n" * 20),
        needs_faces=False,
    ),
    Entry(
        "document.jpg",
        "PDF named .jpg",
        "refused: a PDF document, named",
        Expected(REFUSED, words=("PDF",)),
        lambda path, _: path.write_bytes(minimal_pdf()),
        needs_faces=False,
    ),
    Entry("alpha.png", "PNG with an alpha channel", SAME_FACE, Expected(FACES, 1, like=REFERENCE), with_alpha),
    Entry("16-bit.png", "16-bit RGB PNG", SAME_FACE, Expected(FACES, 1, like=REFERENCE), sixteen_bit),
    Entry("16-bit-grey.png", "16-bit grey PNG", SAME_FACE, Expected(FACES, 1, like=REFERENCE), sixteen_bit_grey),
    Entry(
        "grey.jpg",
        "greyscale JPEG",
        SAME_FACE,
        Expected(FACES, 1, like=REFERENCE),
        lambda path, sources: sources.face.convert("L").save(path, quality=95),
    ),
    Entry(
        "cmyk.jpg",
        "CMYK JPEG",
        SAME_FACE,
        Expected(FACES, 1, like=REFERENCE),
        lambda path, sources: sources.face.convert("CMYK").save(path, quality=95),
    ),
    *(
        Entry(
            f"orientation-{o}.jpg",
            f"JPEG with EXIF orientation {o}",
            "1 face, upright: as in the plain JPEG" if o > 1 else "1 face (the plain JPEG others are compared with)",
            Expected(FACES, 1, like=None if o == 1 else REFERENCE),
            oriented(o),
        )
        for o in STORED_FOR_ORIENTATION
    ),
    Entry(
        "animated.gif",
        "animated GIF (the face, then a blank frame)",
        "1 face, from the first frame",
        Expected(FACES, 1, like=REFERENCE),
        animated,
    ),
    Entry("photo.webp", "WebP", SAME_FACE, Expected(FACES, 1, like=REFERENCE), save_as("WEBP", quality=90)),
    Entry(
        "drawing.svg",
        "SVG drawing",
        "refused: an SVG drawing, named",
        Expected(REFUSED, words=("SVG",)),
        svg,
        needs_faces=False,
    ),
    Entry(
        "photo.heic",
        "HEIC (an iPhone's photo format)",
        "refused, naming HEIC (Pillow and Chromium on Linux have no HEIC decoder)",
        Expected(REFUSED, words=("HEIC",)),
        heic,
        needs=heic_writer_missing,
    ),
    Entry(
        "photo.avif",
        "AVIF",
        SAME_FACE,
        Expected(FACES, 1, like=REFERENCE),
        save_as("AVIF", quality=90),
        needs=avif_writer_missing,
    ),
    Entry(
        "1x1.png",
        "1 x 1 pixel",
        "no face",
        Expected(NO_FACE),
        lambda path, _: Image.new("RGB", (1, 1), (200, 180, 160)).save(path),
        needs_faces=False,
    ),
    Entry(
        "9000x9000.png",
        "9000 x 9000 PNG (81 megapixels)",
        "1 face, scaled down",
        Expected(FACES, 1, scaled=True),
        huge,
    ),
    Entry(
        "30000x30000.png",
        "30000 x 30000 PNG, a decompression bomb",
        "refused before decoding: too large",
        Expected(REFUSED, words=("too large", "megapixels")),
        bomb,
        needs_faces=False,
    ),
    Entry(
        "small-face.jpg",
        "a face of about 13 pixels",
        "1 face, can't tell: too small",
        Expected(FACES, 1, cant_tell="too_small"),
        small_face,
    ),
    Entry("cut-face.jpg", "a face cut by the image edge", "1 face", Expected(FACES, 1), cut_face),
    Entry(
        "no-face.png",
        "a gradient, no face",
        "no face",
        Expected(NO_FACE),
        lambda path, _: gradient().save(path),
        needs_faces=False,
    ),
    Entry("12-faces.jpg", "12 faces in one photo", "12 faces", Expected(FACES, 12), twelve_faces),
)


def write_corpus(folder: Path, faces: Path | None) -> tuple[list[Entry], dict[str, str]]:
    """Writes every entry that can be written here into ``folder``; ``faces``: the folder of FACE_PHOTO and
    TWELVE_FACES (real-photos/test/without_mask), or None. Returns the entries written and, for the others,
    why not."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = Sources.load(faces) if faces is not None else None
    written, left_out = [], {}
    for entry in ENTRIES:
        reason = entry.needs() or (
            "needs the face photos of the shared data (real-photos/test)"
            if entry.needs_faces and sources is None
            else None
        )
        if reason:
            left_out[entry.file] = reason
        else:
            entry.write(folder / entry.file, sources)
            written.append(entry)
    return written, left_out
