"""The bad-input corpus (studies/bad_input_corpus.py) through ``masklens predict`` and through the app in Chromium:
each file gets the outcome its entry documents, and the page answers the next good photo after each. The
shipped models (models/onnx) run on both sides, as in ``masklens bad-inputs``.

Entries made of face photos need ../shared/data/real-photos/test; without it the others still run, and the
test then skips saying what was left out (under CI=true, it fails).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from masklens.predict import PhotoError, open_photo
from studies.bad_input_corpus import ENTRIES, FACES, write_corpus
from studies.bad_input_files import STORED_FOR_ORIENTATION, minimal_pdf, write_png_rows
from studies.bad_inputs import cli_outcomes, describe, judge, run_corpus
from studies.report import load_context, render_template

from .conftest import REPO, SHARED_DATA, site_builder, skip_or_fail

MODELS = REPO / "models" / "onnx"
FACE_PHOTOS = SHARED_DATA / "real-photos" / "test" / "without_mask"


def _skip_if_left_out(left_out: dict[str, str]) -> None:
    """Called after the entries that were written passed: the ones this machine could not write skip the test."""
    if left_out:
        skip_or_fail("corpus entries left out: " + "; ".join(f"{name} ({why})" for name, why in left_out.items()))


def test_the_stored_pixels_of_each_exif_orientation_come_back_upright():
    upright = Image.fromarray((np.arange(5 * 3 * 3).reshape(5, 3, 3) * 5).astype(np.uint8))  # no two pixels alike
    for orientation, transpose in STORED_FOR_ORIENTATION.items():
        stored = upright if transpose is None else upright.transpose(transpose)
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        buffer = io.BytesIO()
        stored.save(buffer, format="PNG", exif=exif)
        with Image.open(buffer) as read:
            assert np.array_equal(np.asarray(ImageOps.exif_transpose(read)), np.asarray(upright)), orientation


def test_hand_written_png_and_pdf_are_what_they_claim(tmp_path):
    rgb16 = np.array([[[0, 256, 65535], [1000, 2000, 3000], [40000, 50000, 60000]]] * 2, dtype=">u2")
    write_png_rows(tmp_path / "rgb16.png", 3, 2, (row.tobytes() for row in rgb16), bit_depth=16)
    with Image.open(tmp_path / "rgb16.png") as image:
        assert image.size == (3, 2)
        assert np.array_equal(np.asarray(image.convert("RGB")), (rgb16 >> 8).astype(np.uint8))  # Pillow's high byte
    # The decompression bomb: 30000 x 30000 claimed in a small file, refused from its header.
    (bomb,) = [entry for entry in ENTRIES if entry.file == "30000x30000.png"]
    bomb.write(tmp_path / bomb.file, None)
    assert (tmp_path / bomb.file).stat().st_size < 200_000
    with pytest.raises(PhotoError, match="too large"):
        open_photo(tmp_path / bomb.file, 1280, 100_000_000)
    # The PDF's cross-reference table points at each object.
    pdf = minimal_pdf()
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[start:].startswith(b"xref\n")
    offsets = [int(line[:10]) for line in pdf[start:].split(b"\n")[3:6]]
    assert [pdf[offset:].split(b"\n")[0] for offset in offsets] == [b"1 0 obj", b"2 0 obj", b"3 0 obj"]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not on PATH")
    return node


def test_photo_headers_of_real_encoders_are_read_before_decoding(tmp_path):
    """site/js/photofile.js on files from Pillow's and pillow-heif's encoders: their format and size."""
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 1000, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    files = {
        "baseline.jpg": ("jpeg", lambda path: photo.save(path, quality=90, exif=exif)),
        "progressive.jpg": ("jpeg", lambda path: photo.save(path, quality=90, progressive=True)),
        "photo.png": ("png", lambda path: photo.save(path)),
        "photo.gif": ("gif", lambda path: photo.save(path)),
        "lossy.webp": ("webp", lambda path: photo.save(path, quality=80)),
        "lossless.webp": ("webp", lambda path: photo.save(path, lossless=True)),
        "extended.webp": ("webp", lambda path: photo.save(path, quality=80, exif=exif)),
        "photo.avif": ("avif", lambda path: photo.save(path, quality=60)),
    }
    try:
        import pillow_heif

        files["photo.heic"] = ("heic", lambda path: pillow_heif.from_pillow(photo).save(path, quality=60))
    except ImportError:
        pass
    for name, (_, write) in files.items():
        write(tmp_path / name)
    script = tmp_path / "headers.mjs"
    script.write_text(
        "import { readFileSync } from 'node:fs';\n"
        f"import {{ HEADER_BYTES, photoHeader }} from {json.dumps((REPO / 'site' / 'js' / 'photofile.js').as_uri())};\n"
        "const files = process.argv.slice(2);\n"
        "console.log(JSON.stringify(files.map((f) => photoHeader(readFileSync(f).subarray(0, HEADER_BYTES)))));\n"
    )
    names = list(files)
    result = subprocess.run(
        [_node(), str(script), *(str(tmp_path / name) for name in names)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    headers = dict(zip(names, json.loads(result.stdout)))
    for name, (format_, _) in files.items():
        assert headers[name] == {"format": format_, "width": 1000, "height": 700}, name
    if "photo.heic" not in files:
        skip_or_fail("pillow-heif (the test extras) is not installed: HEIC not checked")


def test_every_bad_input_gets_its_outcome_from_the_cli_over_the_folder(tmp_path):
    folder = tmp_path / "corpus"
    entries, left_out = write_corpus(folder, FACE_PHOTOS if FACE_PHOTOS.is_dir() else None)
    outcomes, run = cli_outcomes(folder, MODELS, tmp_path)
    # One line per file, a failing file reported on standard error, and the run went on to the end.
    assert run.returncode == 1, run.stderr
    assert set(outcomes) == {entry.file for entry in entries}
    assert "Traceback" not in run.stderr
    reported = {Path(line.split(": ", 1)[0]).name for line in run.stderr.splitlines()}
    assert reported == {name for name, outcome in outcomes.items() if outcome["outcome"] != FACES}
    max_side = json.loads((MODELS / "manifest.json").read_text())["input_limits"]["max_side"]
    wrong = {entry.file: judge(entry.expect, outcomes[entry.file], outcomes, max_side) for entry in entries}
    assert not {name: why for name, why in wrong.items() if why}, {n: describe(o) for n, o in outcomes.items()}
    _skip_if_left_out(left_out)


def test_the_limitations_page_leaves_out_the_table_without_its_json():
    context = load_context(REPO / "results") | {"bad_inputs": None}
    assert "Odd and broken files" not in render_template(REPO / "docs" / "templates" / "limitations.md.j2", context)


def build_app(models: Path, out: Path) -> Path:
    """scripts/build_site.py's app alone; skips (fails under CI=true) without site/node_modules."""
    return site_builder().build_app(models, out)


@pytest.mark.slow
def test_every_bad_input_gets_its_outcome_in_chromium_and_the_page_goes_on(browser, tmp_path):
    """``masklens bad-inputs``' run: each file through the page's file input, then a good photo, which must
    still be answered; no uncaught error, no check without an end. The CLI's side is judged again here, and
    the Limitations page shows the table."""
    site = build_app(MODELS, tmp_path / "site")
    result = run_corpus(site, SHARED_DATA, browser)
    assert result["entries"], result
    for row in result["entries"]:
        assert not row["browser"]["failures"], (row["file"], row["browser"])
        assert not row["cli"]["failures"], (row["file"], row["cli"])
        assert row["pass"]
    assert result["passed"] == len(result["entries"])
    page = render_template(
        REPO / "docs" / "templates" / "limitations.md.j2", load_context(REPO / "results") | {"bad_inputs": result}
    )
    for row in result["entries"]:
        assert re.search(rf"^\| {re.escape(row['what'])} \| .* \| yes \|$", page, re.MULTILINE), row["what"]
    _skip_if_left_out({item["file"]: item["reason"] for item in result["left_out"]})
