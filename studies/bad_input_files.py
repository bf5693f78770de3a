"""The bad-input corpus's files, made by hand: PNGs written a row at a time (a 16-bit photo, a 9000 x 9000
picture, a 30000 x 30000 decompression bomb), a minimal PDF, an SVG, a cut-off JPEG, and the face photo of the
shared data saved in the formats and pixel layouts phones and editors make (alpha, grey, CMYK, EXIF
orientations, animated GIF, HEIC) or made too small, cut by the edge or tiled twelve times.

Each writer takes the path to write and the ``Sources`` (the real face photos), and writes one file; which
entry uses which writer, and the outcome it must get, is ``studies.bad_input_corpus``'s.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, features

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


def oriented(orientation: int) -> Callable[[Path, Sources], None]:
    def write(path: Path, sources: Sources) -> None:
        transpose = STORED_FOR_ORIENTATION[orientation]
        stored = sources.face if transpose is None else sources.face.transpose(transpose)
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        stored.save(path, format="JPEG", quality=95, exif=exif)

    return write


def with_alpha(path: Path, sources: Sources) -> None:
    """The photo with an alpha channel: opaque, but for a transparent band round the edge."""
    alpha = np.zeros((sources.face.height, sources.face.width), np.uint8)
    alpha[8:-8, 8:-8] = 255
    photo = sources.face.convert("RGBA")
    photo.putalpha(Image.fromarray(alpha))
    photo.save(path)


def sixteen_bit(path: Path, sources: Sources) -> None:
    samples = np.asarray(sources.face).astype(">u2") * 257  # each 8-bit value v as 16 bits, v * 257 exactly
    write_png_rows(path, sources.face.width, sources.face.height, (row.tobytes() for row in samples), bit_depth=16)


def sixteen_bit_grey(path: Path, sources: Sources) -> None:
    samples = np.asarray(sources.face.convert("L")).astype(">u2") * 257
    write_png_rows(
        path, sources.face.width, sources.face.height, (row.tobytes() for row in samples), bit_depth=16, colour_type=0
    )


def animated(path: Path, sources: Sources) -> None:
    """Two frames: the face, then a blank grey; only the first may be read."""
    blank = Image.new("RGB", sources.face.size, (128, 128, 128))
    sources.face.save(path, format="GIF", save_all=True, append_images=[blank], duration=500, loop=0)


def heic(path: Path, sources: Sources) -> None:
    import pillow_heif  # the test extras; its encoder only, never registered as a Pillow opener

    pillow_heif.from_pillow(sources.face).save(path, quality=90)


def heic_writer_missing() -> str | None:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return "pillow-heif (the test extras) is not installed: no HEIC encoder on this machine"
    return None


def avif_writer_missing() -> str | None:
    return None if features.check("avif") else "this Pillow was built without AVIF: no AVIF encoder on this machine"


def svg(path: Path, _: Sources | None) -> None:
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200" viewBox="0 0 200 200">\n'
        '  <circle cx="100" cy="100" r="80" fill="#f1c27d"/>\n'
        '  <circle cx="70" cy="80" r="10"/><circle cx="130" cy="80" r="10"/>\n'
        '  <rect x="55" y="110" width="90" height="45" rx="12" fill="#4a90d9"/>\n'
        "</svg>\n"
    )


def huge(path: Path, sources: Sources) -> None:
    """9000 x 9000 (81 megapixels, under the limit): the face photo large on a gradient. Written from a scene
    of 1286 x 1286 whose every pixel becomes a 7 x 7 block, a row at a time."""
    scale, side = 7, 9000
    scene = gradient(1286, 1286)
    face = sources.face.resize((400, round(400 * sources.face.height / sources.face.width)), Image.Resampling.BILINEAR)
    scene.paste(face, (440, 380))
    rows = np.asarray(scene).repeat(scale, axis=1)[:, :side]
    write_png_rows(path, side, side, (rows[y // scale].tobytes() for y in range(side)))


def bomb(path: Path, _: Sources | None) -> None:
    """A decompression bomb: a 30000 x 30000 black PNG (3.6 GB as RGBA pixels) in about 100 kB, one bit a
    pixel, the same row 30000 times."""
    side = 30000
    row = bytes(side // 8)
    write_png_rows(path, side, side, (row for _ in range(side)), bit_depth=1, colour_type=0)


def small_face(path: Path, sources: Sources) -> None:
    """The photo 40 pixels wide on a plain 200 x 150: a face of about 13 pixels, under the abstention's limit."""
    canvas = Image.new("RGB", (200, 150), (120, 140, 160))
    canvas.paste(sources.face.resize((40, round(40 * sources.face.height / sources.face.width))), (80, 45))
    canvas.save(path, quality=95)


def cut_face(path: Path, sources: Sources) -> None:
    """The photo with its left part cut off through the face: about a third of the face lies past the edge."""
    sources.face.crop((72, 0, sources.face.width, sources.face.height)).save(path, quality=95)


def twelve_faces(path: Path, sources: Sources) -> None:
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


def save_as(kind: str, **options) -> Callable[[Path, Sources], None]:
    def write(path: Path, sources: Sources) -> None:
        sources.face.save(path, format=kind, **options)

    return write


def truncated(path: Path, _: Sources | None) -> None:
    buffer = io.BytesIO()
    gradient(400, 300).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # a download cut off half way
