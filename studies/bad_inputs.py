"""The bad-input corpus: the odd and broken files people give the checker, each with the outcome it must get,
run through ``masklens predict`` and through the app in Chromium: ``masklens bad-inputs``.

    masklens bad-inputs --site build/site --out results/bad-inputs.json

The corpus is written at run time (nothing of it is committed): empty, truncated and renamed files, the
formats and pixel layouts phones and editors make (alpha, 16 bits, grey, CMYK, EXIF orientations 1 to 8,
animated GIF, WebP, SVG, HEIC, AVIF), sizes from 1 x 1 to a 30000 x 30000 decompression bomb, and faces too
small, cut by the edge, absent or twelve at once. The photos with faces are drawn from real-photos/test of the
shared data (read where it lies, never copied into the repository); without it those entries are left out,
and said to be. The site's own models (``app/models`` of the built site) run on both sides.

The CLI runs once over the whole folder (a folder run must report each bad file and go on); the page gets
every file through its file input, each followed by a good photo that must still get its answer. Each side's
outcome is ``{"outcome": "refused" | "no face" | "faces" | "no answer", "message", "faces", "cant_tell",
"image_size", "boxes"}``; ``judge`` holds it to the entry's ``Expected``. ``results/bad-inputs.json`` holds,
per file, what it is, what is expected, both outcomes and whether both pass; the Limitations page renders it.
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, features

from masklens.cli import parse_config
from masklens.files import write_json

from .chromium import CHROMIUM, CHROMIUM_ARGS, serving

REFUSED, NO_FACE, FACES, NO_ANSWER = "refused", "no face", "faces", "no answer"
# The face photo most entries are made of (one face, found upright; a portrait, so a rotation shows in its
# size), and the twelve tiled into one photo (MTCNN finds one face in each, twelve in the tiling).
FACE_PHOTO = "without_mask_00000.jpg"
TWELVE_FACES = (
    "without_mask_00000.jpg",
    "without_mask_00002.jpg",
    "without_mask_00003.jpg",
    "without_mask_00006.jpg",
    "without_mask_00010.jpg",
    "without_mask_00012.jpg",
    "without_mask_00013.jpg",
    "without_mask_00017.jpg",
    "without_mask_00025.jpg",
    "without_mask_00027.jpg",
    "without_mask_00028.jpg",
    "without_mask_00031.jpg",
)
# The stored pixels of an EXIF orientation: the upright photo under the inverse of the transpose that
# ImageOps.exif_transpose (and a browser's imageOrientation "from-image") applies for it.
STORED_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
REFERENCE = "orientation-1.jpg"  # the face photo as a plain JPEG: other entries must decode to the same picture
# What a message shown to a person must not look like: a stack trace, an exception's name, a leaked JS value.
NOT_PLAIN = re.compile(r"Traceback|\bat \S+:\d+|\b[A-Z]\w*(Error|Exception)\b|undefined|\[object ")
ANSWER_TIMEOUT_MS = 180_000


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
class Sources:
    """The real face photos entries are made of."""

    face: Image.Image
    twelve: list[Image.Image]

    @classmethod
    def load(cls, folder: Path) -> Sources:
        def load(name: str) -> Image.Image:
            with Image.open(folder / name) as image:
                return image.convert("RGB")

        return cls(load(FACE_PHOTO), [load(name) for name in TWELVE_FACES])


@dataclass(frozen=True)
class Entry:
    file: str
    what: str
    expected: str  # in words, for the docs table
    expect: Expected
    write: Callable[[Path, Sources | None], None]
    needs_faces: bool = True  # drawn from the shared data's face photos
    needs: Callable[[], str | None] = lambda: None  # why this machine cannot write it, or None


# --- Writing files by hand ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_rows(
    path: Path, width: int, height: int, rows: Iterable[bytes], bit_depth: int = 8, colour_type: int = 2
) -> None:
    """A PNG written a row at a time (``rows``: each row's samples, unfiltered), through one zlib stream cut
    into IDAT chunks: a picture of any size, in the memory of one row. colour_type 0 grey, 2 RGB."""
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)))
        compressor = zlib.compressobj(6)
        pending = bytearray()
        for row in rows:
            pending += compressor.compress(b"\x00" + row)  # filter type 0: the samples as they are
            if len(pending) >= 1 << 20:
                out.write(_png_chunk(b"IDAT", bytes(pending)))
                pending.clear()
        pending += compressor.flush()
        out.write(_png_chunk(b"IDAT", bytes(pending)))
        out.write(_png_chunk(b"IEND", b""))


def minimal_pdf() -> bytes:
    """A valid one-page PDF (catalog, page tree, an empty page, a cross-reference table with true offsets)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def gradient(width: int = 200, height: int = 150) -> Image.Image:
    """A sky-like gradient: no face in it."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 128)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def _oriented(orientation: int) -> Callable[[Path, Sources], None]:
    def write(path: Path, sources: Sources) -> None:
        transpose = STORED_FOR_ORIENTATION[orientation]
        stored = sources.face if transpose is None else sources.face.transpose(transpose)
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        stored.save(path, format="JPEG", quality=95, exif=exif)

    return write


def _with_alpha(path: Path, sources: Sources) -> None:
    """The photo with an alpha channel: opaque, but for a transparent band round the edge."""
    alpha = np.zeros((sources.face.height, sources.face.width), np.uint8)
    alpha[8:-8, 8:-8] = 255
    photo = sources.face.convert("RGBA")
    photo.putalpha(Image.fromarray(alpha))
    photo.save(path)


def _sixteen_bit(path: Path, sources: Sources) -> None:
    samples = np.asarray(sources.face).astype(">u2") * 257  # each 8-bit value v as 16 bits, v * 257 exactly
    write_png_rows(path, sources.face.width, sources.face.height, (row.tobytes() for row in samples), bit_depth=16)


def _sixteen_bit_grey(path: Path, sources: Sources) -> None:
    samples = np.asarray(sources.face.convert("L")).astype(">u2") * 257
    write_png_rows(
        path, sources.face.width, sources.face.height, (row.tobytes() for row in samples), bit_depth=16, colour_type=0
    )


def _animated(path: Path, sources: Sources) -> None:
    """Two frames: the face, then a blank grey; only the first may be read."""
    blank = Image.new("RGB", sources.face.size, (128, 128, 128))
    sources.face.save(path, format="GIF", save_all=True, append_images=[blank], duration=500, loop=0)


def _heic(path: Path, sources: Sources) -> None:
    import pillow_heif  # the test extras; its encoder only, never registered as a Pillow opener

    pillow_heif.from_pillow(sources.face).save(path, quality=90)


def _heic_writer_missing() -> str | None:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return "pillow-heif (the test extras) is not installed: no HEIC encoder on this machine"
    return None


def _avif_writer_missing() -> str | None:
    return None if features.check("avif") else "this Pillow was built without AVIF: no AVIF encoder on this machine"


def _svg(path: Path, _: Sources | None) -> None:
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200" viewBox="0 0 200 200">\n'
        '  <circle cx="100" cy="100" r="80" fill="#f1c27d"/>\n'
        '  <circle cx="70" cy="80" r="10"/><circle cx="130" cy="80" r="10"/>\n'
        '  <rect x="55" y="110" width="90" height="45" rx="12" fill="#4a90d9"/>\n'
        "</svg>\n"
    )


def _huge(path: Path, sources: Sources) -> None:
    """9000 x 9000 (81 megapixels, under the limit): the face photo large on a gradient. Written from a scene
    of 1286 x 1286 whose every pixel becomes a 7 x 7 block, a row at a time."""
    scale, side = 7, 9000
    scene = gradient(1286, 1286)
    face = sources.face.resize((400, round(400 * sources.face.height / sources.face.width)), Image.Resampling.BILINEAR)
    scene.paste(face, (440, 380))
    rows = np.asarray(scene).repeat(scale, axis=1)[:, :side]
    write_png_rows(path, side, side, (rows[y // scale].tobytes() for y in range(side)))


def _bomb(path: Path, _: Sources | None) -> None:
    """A decompression bomb: a 30000 x 30000 black PNG (3.6 GB as RGBA pixels) in about 100 kB, one bit a
    pixel, the same row 30000 times."""
    side = 30000
    row = bytes(side // 8)
    write_png_rows(path, side, side, (row for _ in range(side)), bit_depth=1, colour_type=0)


def _small_face(path: Path, sources: Sources) -> None:
    """The photo 40 pixels wide on a plain 200 x 150: a face of about 13 pixels, under the abstention's limit."""
    canvas = Image.new("RGB", (200, 150), (120, 140, 160))
    canvas.paste(sources.face.resize((40, round(40 * sources.face.height / sources.face.width))), (80, 45))
    canvas.save(path, quality=95)


def _cut_face(path: Path, sources: Sources) -> None:
    """The photo with its left part cut off through the face: about a third of the face lies past the edge."""
    sources.face.crop((72, 0, sources.face.width, sources.face.height)).save(path, quality=95)


def _twelve_faces(path: Path, sources: Sources) -> None:
    """Twelve face photos, each 150 pixels high, in a 4 x 3 grid on white."""
    height, gap, columns = 150, 20, 4
    faces = [
        im.resize((round(im.width * height / im.height), height), Image.Resampling.BILINEAR) for im in sources.twelve
    ]
    width = max(sum(im.width for im in faces[r : r + columns]) for r in range(0, len(faces), columns))
    rows = -(-len(faces) // columns)
    sheet = Image.new("RGB", (width + gap * (columns + 1), rows * height + gap * (rows + 1)), (255, 255, 255))
    for r in range(rows):
        x = gap
        for im in faces[r * columns : (r + 1) * columns]:
            sheet.paste(im, (x, gap + r * (height + gap)))
            x += im.width + gap
    sheet.save(path, quality=92)


def _save(kind: str, **options) -> Callable[[Path, Sources], None]:
    def write(path: Path, sources: Sources) -> None:
        sources.face.save(path, format=kind, **options)

    return write


def _truncated(path: Path, _: Sources | None) -> None:
    buffer = io.BytesIO()
    gradient(400, 300).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # a download cut off half way


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
        _truncated,
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
    Entry("alpha.png", "PNG with an alpha channel", SAME_FACE, Expected(FACES, 1, like=REFERENCE), _with_alpha),
    Entry("16-bit.png", "16-bit RGB PNG", SAME_FACE, Expected(FACES, 1, like=REFERENCE), _sixteen_bit),
    Entry("16-bit-grey.png", "16-bit grey PNG", SAME_FACE, Expected(FACES, 1, like=REFERENCE), _sixteen_bit_grey),
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
            _oriented(o),
        )
        for o in STORED_FOR_ORIENTATION
    ),
    Entry(
        "animated.gif",
        "animated GIF (the face, then a blank frame)",
        "1 face, from the first frame",
        Expected(FACES, 1, like=REFERENCE),
        _animated,
    ),
    Entry("photo.webp", "WebP", SAME_FACE, Expected(FACES, 1, like=REFERENCE), _save("WEBP", quality=90)),
    Entry(
        "drawing.svg",
        "SVG drawing",
        "refused: an SVG drawing, named",
        Expected(REFUSED, words=("SVG",)),
        _svg,
        needs_faces=False,
    ),
    Entry(
        "photo.heic",
        "HEIC (an iPhone's photo format)",
        "refused, naming HEIC (Pillow and Chromium on Linux have no HEIC decoder)",
        Expected(REFUSED, words=("HEIC",)),
        _heic,
        needs=_heic_writer_missing,
    ),
    Entry(
        "photo.avif",
        "AVIF",
        SAME_FACE,
        Expected(FACES, 1, like=REFERENCE),
        _save("AVIF", quality=90),
        needs=_avif_writer_missing,
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
        _huge,
    ),
    Entry(
        "30000x30000.png",
        "30000 x 30000 PNG, a decompression bomb",
        "refused before decoding: too large",
        Expected(REFUSED, words=("too large", "megapixels")),
        _bomb,
        needs_faces=False,
    ),
    Entry(
        "small-face.jpg",
        "a face of about 13 pixels",
        "1 face, can't tell: too small",
        Expected(FACES, 1, cant_tell="too_small"),
        _small_face,
    ),
    Entry("cut-face.jpg", "a face cut by the image edge", "1 face", Expected(FACES, 1), _cut_face),
    Entry(
        "no-face.png",
        "a gradient, no face",
        "no face",
        Expected(NO_FACE),
        lambda path, _: gradient().save(path),
        needs_faces=False,
    ),
    Entry("12-faces.jpg", "12 faces in one photo", "12 faces", Expected(FACES, 12), _twelve_faces),
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


# --- Running it -----------------------------------------------------------------------------------------------


def _faces_outcome(image_size: list[int], faces: list[dict]) -> dict:
    return {
        "outcome": FACES,
        "message": None,
        "faces": len(faces),
        "cant_tell": [face["cant_tell"] for face in faces],
        "image_size": image_size,
        "boxes": [[round(float(v), 1) for v in face["box"]] for face in faces],
    }


def _refusal(outcome: str, message: str | None) -> dict:
    return {"outcome": outcome, "message": message, "faces": 0, "cant_tell": [], "image_size": None, "boxes": []}


def cli_outcomes(folder: Path, models: Path, work: Path) -> tuple[dict[str, dict], subprocess.CompletedProcess]:
    """``masklens predict`` over the folder, in a process of its own: each file's outcome, by name."""
    out = work / "predictions.jsonl"
    command = [sys.executable, "-m", "masklens", "predict", str(folder), "--models", str(models), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    outcomes = {}
    for line in out.read_text().splitlines() if out.exists() else []:
        record = json.loads(line)
        name = Path(record["file"]).name
        if record["ok"]:
            outcomes[name] = _faces_outcome(record["image_size"], record["faces"])
        elif record["error"].startswith("no face found"):
            outcomes[name] = _refusal(NO_FACE, record["error"])
        else:
            outcomes[name] = _refusal(REFUSED, record["error"])
    return outcomes, run


def _page_outcome(page, path: Path) -> dict:
    """Sets the file on the page's input and waits for the check to finish: the page's outcome."""
    done = int(page.get_attribute("body", "data-checks") or 0) + 1
    page.set_input_files("#file", str(path))
    try:
        page.wait_for_selector(f"body[data-checks='{done}']", state="attached", timeout=ANSWER_TIMEOUT_MS)
    except Exception:  # playwright's TimeoutError: a spinner that never ends
        return _refusal(NO_ANSWER, page.inner_text("#status"))
    last = page.evaluate("window.__masklens_last")
    if last["state"] == "error":
        shown = page.inner_text("#error") if page.is_visible("#error") else ""
        return _refusal(REFUSED, shown)  # what the person sees: nothing if the message is not shown
    if last["state"] == "noface":
        return _refusal(NO_FACE, page.inner_text("#status"))
    return _faces_outcome([last["photo"]["width"], last["photo"]["height"]], last["faces"])


def browser_outcomes(browser, base: str, folder: Path, entries: list[Entry], follow_up: Entry) -> dict[str, dict]:
    """Every entry through the app's file input on one page, each followed by ``follow_up`` (a good photo),
    whose outcome goes in the entry's as ``then``; ``page_errors``: uncaught errors and console errors."""
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.goto(f"{base}/app/")
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=ANSWER_TIMEOUT_MS)
        outcomes = {}
        for entry in entries:
            errors.clear()
            outcome = _page_outcome(page, folder / entry.file)
            outcome["then"] = _page_outcome(page, folder / follow_up.file)
            outcome["page_errors"] = list(errors)
            outcomes[entry.file] = outcome
        return outcomes
    finally:
        context.close()


def _iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def judge(expect: Expected, outcome: dict, outcomes: dict[str, dict], max_side: int) -> list[str]:
    """Why an outcome is not the expected one (empty: it is); ``outcomes``: the same side's, by file."""
    if outcome["outcome"] != expect.outcome:
        return [f"expected {expect.outcome}, got {outcome['outcome']}: {outcome['message']}"]
    wrong = []
    if expect.outcome == REFUSED:
        message = outcome["message"] or ""
        if not message:
            wrong.append("refused without a message shown")
        wrong += [f"the message does not say {word!r}" for word in expect.words if word.lower() not in message.lower()]
        if NOT_PLAIN.search(message):
            wrong.append(f"the message is not plain words: {message!r}")
    if expect.outcome == FACES:
        if outcome["faces"] != expect.faces:
            wrong.append(f"expected {expect.faces} faces, got {outcome['faces']}")
        if expect.cant_tell and any(reason != expect.cant_tell for reason in outcome["cant_tell"]):
            wrong.append(f"expected can't tell ({expect.cant_tell}), got {outcome['cant_tell']}")
        if expect.scaled and (outcome["image_size"] is None or max(outcome["image_size"]) != max_side):
            wrong.append(f"expected scaled to {max_side} pixels, got {outcome['image_size']}")
        if expect.like:
            reference = outcomes.get(expect.like)
            if reference is None or reference["outcome"] != FACES:
                wrong.append(f"no face in {expect.like} to compare with")
            elif outcome["image_size"] != reference["image_size"]:
                wrong.append(f"size {outcome['image_size']}, not {expect.like}'s {reference['image_size']}")
            elif outcome["boxes"] and _iou(outcome["boxes"][0], reference["boxes"][0]) < LIKE_IOU:
                wrong.append(f"face at {outcome['boxes'][0]}, not where {expect.like}'s is {reference['boxes'][0]}")
    return wrong


def judge_browser(expect: Expected, outcome: dict, outcomes: dict[str, dict], follow_up: Expected, max_side: int):
    """``judge`` plus what the page owes after any input: no uncaught error, and the next good photo answered."""
    wrong = judge(expect, outcome, outcomes, max_side)
    wrong += [f"page error: {error}" for error in outcome["page_errors"]]
    then = judge(follow_up, outcome["then"], {}, max_side)
    if then:
        wrong.append("the next good photo failed: " + "; ".join(then))
    return wrong


def describe(outcome: dict) -> str:
    """An outcome in a few words, for the table."""
    if outcome["outcome"] != FACES:
        return outcome["outcome"] if outcome["outcome"] == NO_FACE else f"{outcome['outcome']}: {outcome['message']}"
    text = f"{outcome['faces']} face{'s' if outcome['faces'] != 1 else ''}"
    unsure = {reason for reason in outcome["cant_tell"] if reason}
    if unsure:
        text += ", can't tell (" + ", ".join(sorted(unsure)).replace("_", " ") + ")"
    return text + f", {outcome['image_size'][0]} x {outcome['image_size'][1]}"


def run_corpus(site: Path, data: Path, browser=None) -> dict:
    """Writes the corpus, runs it through the CLI and the page of the built ``site``, and judges both.
    ``browser``: a launched Playwright Chromium, or None to launch one."""
    models = site / "app" / "models"
    manifest = json.loads((models / "manifest.json").read_text())
    max_side = manifest["input_limits"]["max_side"]
    faces = data / "real-photos" / "test" / "without_mask"
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "corpus"
        entries, left_out = write_corpus(folder, faces if faces.is_dir() else None)
        cli, run = cli_outcomes(folder, models, Path(work))
        by_file = {entry.file: entry for entry in entries}
        follow_up = by_file.get(REFERENCE) or by_file["no-face.png"]
        with serving(site) as base:
            if browser is None:
                from playwright.sync_api import sync_playwright

                with sync_playwright() as playwright:
                    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                    page = browser_outcomes(launched, base, folder, entries, follow_up)
                    version = launched.version
                    launched.close()
            else:
                page = browser_outcomes(browser, base, folder, entries, follow_up)
                version = browser.version
    rows = []
    for entry in entries:
        cli_wrong = judge(entry.expect, cli.get(entry.file, _refusal(NO_ANSWER, None)), cli, max_side)
        page_wrong = judge_browser(entry.expect, page[entry.file], page, follow_up.expect, max_side)
        rows.append(
            {
                "file": entry.file,
                "what": entry.what,
                "expected": entry.expected,
                "cli": {**cli.get(entry.file, _refusal(NO_ANSWER, None)), "failures": cli_wrong},
                "browser": {**page[entry.file], "failures": page_wrong},
                "cli_text": describe(cli.get(entry.file, _refusal(NO_ANSWER, None))),
                "browser_text": describe(page[entry.file]),
                "pass": not cli_wrong and not page_wrong,
            }
        )
    return {
        "model_version": manifest["model_version"],
        "input_limits": manifest["input_limits"],
        "chromium": version,
        "cli_exit_status": run.returncode,
        "cli_stderr_lines": len(run.stderr.splitlines()),
        "entries": rows,
        "left_out": [
            {"file": entry.file, "what": entry.what, "reason": left_out[entry.file]}
            for entry in ENTRIES
            if entry.file in left_out
        ],
        "passed": sum(row["pass"] for row in rows),
    }


@dataclass(frozen=True)
class BadInputsConfig:
    site: str = field(
        default="build/site", metadata={"help": "built site (scripts/build_site.py): its app/models run on both sides"}
    )
    data: str = field(default="../shared/data", metadata={"help": "root holding real-photos/test"})
    out: str = "results/bad-inputs.json"


def main(argv: list[str] | None = None) -> None:
    config = parse_config(BadInputsConfig, argv, description=__doc__.splitlines()[0])
    result = run_corpus(Path(config.site), Path(config.data))
    write_json(config.out, result)
    for row in result["entries"]:
        failures = row["cli"]["failures"] + row["browser"]["failures"]
        print(f"{'pass' if row['pass'] else 'FAIL'}  {row['file']:<20} {'; '.join(failures)}")
    for item in result["left_out"]:
        print(f"left out  {item['file']}: {item['reason']}")
    print(f"{result['passed']} of {len(result['entries'])} pass; wrote {config.out}")
    sys.exit(0 if result["passed"] == len(result["entries"]) else 1)
