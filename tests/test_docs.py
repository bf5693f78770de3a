"""The documentation site: a real ``mkdocs build --strict`` against a tiny but real results folder; and the
README's results table, rendered from the committed results/ like the pages.

The results come from a one-epoch training run on a generated tree, evaluated like the real ones
(holdout with figures, and a real-photos-style mask folder), plus the committed results/framing.json.

``.venv/bin/python -m tests.test_docs`` rewrites the README's results table from results/.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from studies.report import load_context, render_template

from .conftest import REPO

MKDOCS = Path(sys.executable).with_name("mkdocs")
TEMPLATES = REPO / "docs" / "templates"
README = REPO / "README.md"
README_TABLE = TEMPLATES / "readme-results.j2"
# The README holds the rendered table between these two lines (the first one's comment runs to its line's end).
README_START, README_END = "<!-- results-table:", "<!-- /results-table -->"

# Attributes through which a page makes the browser fetch something (a plain <a href> is only a link).
FETCHING = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
    "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
    "form": ("action",),
}


def build_site(results: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASKLENS_RESULTS": str(results), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def site(results, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    built = build_site(results, site)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    return site


def readme_table(results: Path = REPO / "results") -> str:
    """The README's results table as docs/templates/readme-results.j2 renders it from ``results``."""
    return render_template(README_TABLE, load_context(results))


def readme_with_table(readme: str, table: str) -> str:
    """``readme`` with the lines between its two results-table markers replaced by ``table``."""
    start = readme.index("\n", readme.index(README_START)) + 1
    end = readme.index(README_END, start)
    return readme[:start] + table + readme[end:]


def metrics(results: Path, name: str) -> dict:
    return json.loads((results / "default" / f"metrics-{name}.json").read_text())


class _Page(HTMLParser):
    """Table rows (cell texts), image sources and fetching attributes of one HTML page."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.rows, self.images, self.fetches, self.styles = [], [], [], []
        self._row = self._cell = self._style = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in FETCHING.get(tag, ()):
            if attrs.get(name):
                self.fetches.append((tag, name, attrs[name]))
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            self.fetches.append((tag, "content", attrs.get("content", "")))
        if attrs.get("style"):
            self.styles.append(attrs["style"])
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "style":
            self._style = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "style" and self._style is not None:
            self.styles.append("".join(self._style))
            self._style = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._style is not None:
            self._style.append(data)


def page(site: Path, name: str) -> _Page:
    return _Page((site / name / "index.html").read_text())


def off_site(url: str) -> bool:
    url = url.strip()
    return bool(
        urlsplit(url).scheme in ("http", "https")
        or url.startswith("//")
        or re.search(r"(?:^|[\s,;])(?:https?:)?//", url)
    )


def test_results_page_shows_the_numbers_of_the_metrics_json(site, results):
    holdout = metrics(results, "holdout")
    rows = page(site, "results").rows
    row = next(r for r in rows if r[:2] == ["default", "80 px"])
    assert row[3] == f"{100 * holdout['accuracy']:.2f}%"
    assert row[5] == f"{100 * holdout['per_class']['incorrect']['recall']:.2f}%"
    real = metrics(results, "real-photos")
    assert ["default", "real-photos/test", str(real["images"]), f"{100 * real['mask_accuracy']:.2f}%"] == next(
        r for r in rows if r[1:2] == ["real-photos/test"]
    )[:4]
    end_to_end = metrics(results, "end-to-end")
    side_by_side = next(r for r in rows if r[0] == "default (shipped)")
    assert side_by_side[1] == f"{100 * holdout['accuracy']:.2f}%"
    assert side_by_side[3] == f"{100 * end_to_end['real-photos']['found_rate']:.2f}%"
    assert side_by_side[7] == f"{100 * end_to_end['real-video-frames']['detected']['balanced_accuracy']:.2f}%"
    with_mask = end_to_end["real-photos"]["with_mask"]
    assert [
        "default",
        "with_mask",
        str(with_mask["photos"]),
        f"{with_mask['found']} ({100 * with_mask['found_rate']:.2f}%)",
    ] == next(r for r in rows if r[1:2] == ["with_mask"])[:4]
    detection = json.loads((results / "detection.json").read_text())
    rule = next(r for r in rows if r[0] == "padded")
    assert rule[1:5] == ["20 px", "0.6 / 0.7 / 0.7", "30%", "no"]
    assert rule[5].startswith(
        f"{100 * detection['rules']['padded']['sets']['real-photos/with_mask']['found_rate']:.1f}%"
    )
    # Optional artifacts that are absent leave no trace: no paper preset was evaluated here.
    assert not any(r[0] == "paper" for r in rows)


def test_other_pages_render_their_numbers_from_the_json(site, results):
    holdout = metrics(results, "holdout")
    dataset = page(site, "dataset").rows
    for name in holdout["classes"]:
        assert [name, str(holdout["data"]["classes"][name])] == [r for r in dataset if r[0] == name][-1][:2]
    framing = json.loads((results / "framing.json").read_text())["all"]
    method = page(site, "method").rows
    assert next(r for r in method if r[0] == "all (used)")[3] == str(framing["framing"]["side"])
    assert next(r for r in method if r[0] == "input (square, px)") == ["input (square, px)", "80"]
    limitations = (site / "limitations" / "index.html").read_text()
    assert f"{100 * metrics(results, 'end-to-end')['real-photos']['mask_accuracy']:.2f}%" in limitations
    assert "Weight compression" not in (site / "method" / "index.html").read_text()  # no compression.json


def test_figures_are_in_the_site_and_every_image_resolves(site, results):
    for png in (results / "default" / "figures").glob("*.png"):
        assert (site / "results" / "default" / "figures" / png.name).read_bytes() == png.read_bytes()
    shown = set()
    for html in site.rglob("*.html"):
        for src in _Page(html.read_text()).images:
            target = (html.parent / src).resolve()
            assert target.is_file(), f"{html.relative_to(site)}: {src}"
            shown.add(target.name)
    assert {"confusion-holdout.png", "dataset-classes.png", "dataset-reasons.png"} <= shown


def test_no_page_fetches_anything_from_another_origin(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 6
    for html in pages:
        parsed = _Page(html.read_text())
        fetched = [f for f in parsed.fetches if off_site(f[2])]
        assert not fetched, f"{html.relative_to(site)} fetches {fetched}"
        assert not [s for s in parsed.styles if re.search(r"url\(\s*['\"]?(?:https?:)?//|@import", s)], html
        # Material's bundle loads mermaid from unpkg.com only for mermaid diagrams: keep them out.
        assert 'class="mermaid"' not in html.read_text(), html
    for css in site.rglob("*.css"):
        text = css.read_text()
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//|@import\s+(?:url\()?\s*['\"]?(?:https?:)?//", text), css
    for path in [*pages, *site.rglob("*.css"), *site.rglob("*.js"), *site.rglob("*.json")]:
        assert not re.search(r"fonts\.(googleapis|gstatic)\.com", path.read_text(errors="replace")), path


def test_the_build_fails_without_the_default_holdout_metrics(tmp_path):
    results = tmp_path / "results"
    (results / "default").mkdir(parents=True)
    shutil.copy(REPO / "results" / "framing.json", results / "framing.json")
    built = build_site(results, tmp_path / "site")
    assert built.returncode != 0
    assert "default/metrics-holdout.json" in built.stdout + built.stderr


def test_optional_sections_render_only_when_their_artifact_exists(results):
    context = load_context(results)
    assert context["compression"] is None
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "## Weight compression" not in method
    layers = {"median_spearman": 0.999, "p5_spearman": 0.91, "median_top_iou": 0.95, "p5_top_iou": 0.9}
    measured = {"faces": 9, "same_class": 1.0, "max_probability_difference": 0.001, "layers": {"block8": layers}}
    formats = {
        name: {
            "bytes": size,
            "export_seconds": 1.0,
            "accuracy": 0.5,
            "sets": {"holdout": measured, "real-wear/test": {**measured, "max_probability_difference": 0.004}},
            "failures": [] if name != "int8" else ["real-wear/test: probability difference 0.0300 > 0.02"],
            "within_bounds": name != "int8",
        }
        for name, size in (("fp32", 92_000_000), ("fp16", 46_000_000), ("int8", 23_456_789))
    }
    context["compression"] = {
        "split": "holdout",
        "images": 9,
        "sets": {"holdout": 9, "real-wear/test": 9},
        "chosen": "fp16",
        "formats": formats,
        "bounds": {
            "min_same_class": 0.995,
            "max_probability_difference": 0.02,
            "min_median_spearman": 0.95,
            "min_p5_spearman": 0.8,
            "min_median_top_iou": 0.7,
        },
        "top_area": 0.2,
    }
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "## Weight compression" in method and "on 1 real sets as whole images\n(`real-wear/test` 9 faces)" in method
    assert "| **fp16** | 46.0 MB | 50.00% | 100.00% | 0.0040 | 0.999 | 0.910 | 0.950 | yes |" in method
    assert "| int8 | 23.5 MB | 50.00% | 100.00% | 0.0040 | 0.999 | 0.910 | 0.950 | no: real-wear/test: " in method
    assert "webcam mode's int8 graph" not in method
    context["compression"]["live_int8"] = {
        "quantization": {
            "weights": "uint8 per output channel",
            "activations": "uint8",
            "calibration": "percentile 99.999",
            "calibration_images": 12,
            "calibration_split": "train",
        },
        "against_full": {
            "split": "holdout",
            "images": 9,
            "accuracy": 0.4444,
            "accuracy_full": 0.5,
            "same_class": 0.8889,
            "max_probability_difference": 0.03125,
            "p99_heatmap_difference": {"block8": 0.02},
            "max_heatmap_difference": {"block8": 0.125},
            "within_bounds": False,
            "bounds": {
                "min_same_class": 0.995,
                "max_probability_difference": 0.1,
                "p99_heatmap_difference": 0.05,
                "max_heatmap_difference": 0.25,
            },
        },
    }
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "### The webcam mode's int8 graph" in method
    assert "ranges from 12 faces of\nthe `train` split" in method and "accuracy\n44.44% (full graph 50.00%)" in method
    assert "the same\nclass for 88.89% of the images, probabilities within\n0.0312" in method
    assert "within 0.0200 on 99%\nof the images and 0.1250 on all" in method
    assert "distilled student" not in method
    own = {**context["compression"]["live_int8"]["against_full"], "same_class": 0.9999, "within_bounds": True}
    context["compression"]["live_int8"]["against_full"] = {
        **own,
        "same_class": 0.9911,
        "bounds": {"min_same_class": 0.99, "max_accuracy_drop": 0.005},
    }
    context["compression"]["live_int8"]["student"] = {
        "file": "live-student.pt",
        "sha256": "0" * 64,
        "depths": {"repeat_1": 1, "repeat_2": 2, "repeat_3": 3},
        "against_own_fp32": own,
    }
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "a **distilled student**" in method and "1, 2 and\n3 in `repeat_1`" in method
    assert "the student's graph quantized" in method and "The GPU runs this graph." not in method
    assert "the same class for 99.99%\n  of the images" in method
    assert "the full graph's class for\n  99.11% of the images" in method
    assert "within\n  0.5 points of its accuracy" in method
    assert "narrowed" not in method and "live-student-slim" not in method
    context["compression"]["live_int8"]["student"]["widths"] = {
        "conv2d_2b": 32,
        "conv2d_3b": 40,
        "conv2d_4a": 96,
        "mixed_6a": 96,
        "mixed_7a": 128,
    }
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "32, 40 and 96 out\nof `conv2d_2b`, `conv2d_3b` and `conv2d_4a`" in method
    assert "`--preset live-student-slim` then narrowed that student" in method and "3 blocks, narrowed)" in method
    paper = json.loads(json.dumps(context["results"]["default"]))
    paper["holdout"]["checkpoint"]["config"].update(image_size=256, normalization="identity", reason_weight=0.0)
    context["results"]["paper"] = paper
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "| input (square, px) | 80 | 256 |" in method
    assert "| pixel scaling | (x - 127.5) / 128 | x / 255 |" in method
    assert "| reason loss weight | 0.5 | off |" in method


def test_stub_pages_are_not_replaced_on_disk(site):
    for template in TEMPLATES.glob("*.md.j2"):
        stub = REPO / "docs" / template.name.removesuffix(".j2")
        assert f"rendered_from: {template.name}" in stub.read_text()
        assert "docs_hooks/render.py" in stub.read_text()


def without_intervals(value):
    """``value`` with every ``*_interval`` key left out, as in the metrics JSON written before them."""
    if isinstance(value, dict):
        return {k: without_intervals(v) for k, v in value.items() if not k.endswith("_interval")}
    return value


def test_end_to_end_intervals_and_confusions_render_where_measured(results):
    context = load_context(results)
    end_to_end = context["results"]["default"]["end-to-end"]
    with_mask = end_to_end["real-photos"]["with_mask"]
    lo, hi = with_mask["accuracy_of_found_interval"]
    right = f"{100 * with_mask['accuracy_of_found']:.2f}%"
    page = render_template(TEMPLATES / "results.md.j2", context)
    assert f"| {right} ({100 * lo:.1f}%–{100 * hi:.1f}%) |" in page
    assert "`default` (shipped), both folders: mask vs no mask right for" in page
    cloth = end_to_end["real-masks"]["cloth"]
    lo, hi = cloth["masked_rate_interval"]
    assert f"| {100 * cloth['masked_rate']:.2f}% ({100 * lo:.1f}%–{100 * hi:.1f}%) |" in page
    frames = end_to_end["real-video-frames"]["detected"]
    lo, hi = frames["recall_interval"]["covered"]
    assert f"| {100 * frames['recall']['covered']:.2f}% ({100 * lo:.1f}%–{100 * hi:.1f}%) |" in page
    assert f"| `default` | through the face finder | {' / '.join(map(str, frames['confusion'][0]))} |" in page
    # A metrics JSON written before the intervals renders the same tables without them.
    for name in ("real-photos", "real-masks", "real-video-frames"):
        end_to_end[name] = without_intervals(end_to_end[name])
    older = render_template(TEMPLATES / "results.md.j2", context)
    answered = " / ".join(str(with_mask["classes"][c]) for c in ("covered", "incorrect", "uncovered"))
    assert f"| {right} | {answered} |" in older and "both folders" not in older
    assert f"| `default` | through the face finder | {' / '.join(map(str, frames['confusion'][0]))} |" in older


def test_recipe_sweep_and_fine_tuning_ablation_render_from_their_json(results):
    context = load_context(results)
    assert context["sweep"] is None and context["ablations"] == {}
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "How `default` was chosen" not in method
    context["sweep"] = {
        "preset": "default",
        "rule": "highest mean of the final val_accuracy",
        "chosen": "epochs=8",
        "variants": [
            {"variant": v, "device": "GPU X", "seconds": s, "val_accuracy": a, "val_loss": [0.1, loss]}
            for v, s, a, loss in (("epochs=3", 48.8, [0.9, 0.995], 0.0835), ("epochs=8", 117.6, [0.99, 1.0], 0.0723))
        ],
    }
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "| **epochs=8** (chosen) | 99.00% · 100.00% | 0.0723 | 118 s |" in method
    assert "| epochs=3 | 90.00% · 99.50% | 0.0835 | 49 s |" in method

    default = context["results"]["default"]
    real = json.loads(json.dumps(default))
    real["holdout"]["checkpoint"]["init_from"] = {"file": "models/default.pt", "sha256": "ab" * 32}
    real["holdout"]["checkpoint"]["config"]["init_from"] = "runs/real-base/model.pt"
    context["results"]["real"] = real
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert "| starts from | - | an earlier `models/default.pt` (sha256 abababababab, not committed) |" in method
    real["holdout"]["checkpoint"]["init_from"]["sha256"] = default["holdout"]["checkpoint"]["sha256"]
    assert "| starts from | - | `default` |" in render_template(TEMPLATES / "method.md.j2", context)
    # A weight mean is named by its ingredients and left out of the recipe table.
    soup = json.loads(json.dumps(real))
    soup["holdout"]["checkpoint"]["sha256"] = "cd" * 32
    soup["holdout"]["checkpoint"]["epochs"] = 0
    soup["holdout"]["checkpoint"]["soup"] = [
        {"file": "models/default.pt", "sha256": default["holdout"]["checkpoint"]["sha256"], "weight": 0.5},
        {"file": "runs/x/model.pt", "sha256": "ef" * 32, "weight": 0.5},
    ]
    context["results"]["real-soup"] = soup
    method = render_template(TEMPLATES / "method.md.j2", context)
    assert (
        "`real-soup` is not trained: it is the mean of the weights of `default` (50%) and an earlier "
        "`runs/x/model.pt` (sha256 efefefefefef, not committed) (50%)"
    ) in method
    assert "| setting | `default` | `real` |\n" in method
    assert "| `real-soup` | 80 px | none: a weight mean |" in render_template(TEMPLATES / "results.md.j2", context)
    del context["results"]["real-soup"]
    ablation = {
        "holdout": json.loads(json.dumps(default["holdout"])),
        "end-to-end": json.loads(json.dumps(default["end-to-end"])),
    }
    ablation["holdout"]["accuracy"] = 0.123456
    context["ablations"] = {"real-from-default": ablation}
    page = render_template(TEMPLATES / "results.md.j2", context)
    assert "### Which model to fine-tune" in page
    assert "| `default` | 12.35% |" in page
    context["shipped"] = "real"
    assert "| `real-base` (shipped) |" in render_template(TEMPLATES / "results.md.j2", context)
    assert f"| `real-base` | {100 * default['holdout']['accuracy']:.2f}% |" in page


def test_webcam_speed_and_app_screenshots_render_from_their_artifacts(results):
    context = load_context(results)
    assert context["live_benchmark"] is None
    assert "Real time" not in render_template(TEMPLATES / "results.md.j2", context)
    assert "What it looks like" not in render_template(TEMPLATES / "try.md.j2", context)
    scene = {
        "faces": 1,
        "browser_over_native": 2.95,
        "browser": {
            "threads": 2,
            "isolated": True,
            "overlay_fps": 32.84,
            "detections_per_second": 1.66,
            "classifications_per_face": 3.53,
            "min_face_size": 80,
            "frame_ms": 279.3,
            "detect_ms": 103.9,
            "faces_tracked": 1,
            "classify_ms_per_face": 175.4,
        },
        "native": {"frame_ms": 94.8, "detect_ms": 61.9, "faces_found": 1, "classify_ms_per_face": 33.0},
    }
    context["live_benchmark"] = {
        "scenes": {"1": scene},
        "chromium": "150.0",
        "classify_interval_ms": 200,
        "classify_share": 0.8,
        "detect_interval_ms": 500,
        "machine": {"cpu": "CPU X", "cores": 2},
        "tracking": {"iou_threshold": 0.3, "window": 5, "min_face_size": 40.0},
    }
    page = render_template(TEMPLATES / "results.md.j2", context)
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    order = [
        "## MaskedFace-Net holdout",
        "## Synthetic and real, side by side",
        "## Real photos, whole photo resized",
        "## Real time: the webcam mode",
        "## Ablations",
        "## Training cost",
    ]
    assert [next(i for i, h in enumerate(headings) if h.startswith(o)) for o in order] == sorted(
        next(i for i, h in enumerate(headings) if h.startswith(o)) for o in order
    ), headings
    assert headings[0].startswith("## MaskedFace-Net holdout")
    assert "| 1 | 32.8 | 1.7 | 3.5 | 80 px | 279.3 ms (103.9 + 1 × 175.4) | 94.8 ms (61.9 + 1 × 33.0) | 2.95× |" in page
    assert "every\n500 ms" in page and "at most every 200 ms" in page and "at most 80% of the time" in page
    assert (
        "(here\nmet: 32.8)" in page and "(not met with 1 face: 3.5)" in page and "(not met with 1 face: 2.95×)" in page
    )
    assert "256-bit AVX2 or wider" in page and "rounds themselves" not in page
    assert "With 1 face, a classification takes 175.4 ms" in page and "is within 1.7×." in page
    assert "own run" not in page
    context["live_benchmark"]["machine"]["vector_extensions"] = ["AVX2", "AVX-512"]
    context["live_benchmark"]["rounds"] = 2
    scene["rounds"] = [{"browser_over_native": 2.9}, {"browser_over_native": 3.01}]
    page = render_template(TEMPLATES / "results.md.j2", context)
    assert "native x86 kernels\n(this CPU has AVX2, AVX-512)" in page
    assert "each scene was measured 2 times" in page and "ratios, which were\n2.9×, 3.01× with 1 face." in page
    assert "The page's own thread" not in page
    scene["browser"]["page_main_thread_share"] = 0.306
    page = render_template(TEMPLATES / "results.md.j2", context)
    assert "took 31% of a core with 1 face, besides" in page and "time the worker's 2 threads did not have" in page
    scene["browser"]["classify_run_ms_per_face"] = 80.5
    assert "of which onnxruntime-web's own run is 80.5 ms" in render_template(TEMPLATES / "results.md.j2", context)
    scene["browser_over_native"] = 1.9
    assert "a classification takes" not in render_template(TEMPLATES / "results.md.j2", context)
    assert "with the fp32 one" not in render_template(TEMPLATES / "results.md.j2", context)
    scene["native"]["classify_fp32_ms_per_face"] = 31.5
    assert "takes 33.0 ms per face with the int8\nlive graph and 31.5 ms with the fp32 one" in render_template(
        TEMPLATES / "results.md.j2", context
    )
    assert "full model's own live graph" not in render_template(TEMPLATES / "results.md.j2", context)
    context["live_benchmark"]["live_graph"] = {
        "file": "classifier-live-int8.onnx",
        "sha256": "1" * 64,
        "student": {"file": "live-student.pt", "depths": {}},
    }
    before = json.loads(json.dumps(scene))
    before["browser"].update(frame_ms=300.5, classify_ms_per_face=196.6, classifications_per_face=2.04)
    before["browser_over_native"] = 3.5
    context["live_benchmark_full_model"] = {
        "rounds": 3,
        "machine": {"cpu": "CPU Y"},
        "scenes": {"1": before},
        "live_graph": {**context["live_benchmark"]["live_graph"], "student": None},
    }
    page = render_template(TEMPLATES / "results.md.j2", context)
    assert "With the full model's own live graph in place of the student (3 rounds each" in page
    assert "on CPU Y" in page
    assert "300.5 ms (103.9 + 1 × 196.6) with 1 face, 2.0 classifications per face per second, 3.5× Python." in page
    context["figures"] = [*context["figures"], "app-desktop.png", "app-phone.png"]
    assert "../results/figures/app-phone.png" in render_template(TEMPLATES / "try.md.j2", context)


def test_new_pages_render_their_numbers_from_the_json(site, results):
    holdout = metrics(results, "holdout")
    end_to_end = metrics(results, "end-to-end")
    experiments = page(site, "experiments").rows
    row = next(r for r in experiments if r[0] == "default (shipped)")
    assert row[1:4] == [
        "scratch",
        f"{100 * holdout['accuracy']:.2f}%",
        f"{100 * end_to_end['real-photos']['mask_accuracy']:.2f}%",
    ]
    assert row[6] == f"{100 * end_to_end['real-video-frames']['detected']['balanced_accuracy']:.2f}%"
    # Presets not in the results folder leave no row.
    assert [r[0] for r in experiments[1:]] == ["default (shipped)"]
    reproduce = page(site, "reproduce")
    config = holdout["checkpoint"]["config"]
    row = next(r for r in reproduce.rows if r[0] == "default (shipped)")
    assert row[1] == f"{config['image_size']} px, (x - 127.5) / 128" and row[2] == "scratch"
    assert f"{config['epochs']} epoch" in row[3] and f"batch {config['batch_size']}" in row[3]
    history = json.loads((results / "default" / "history.json").read_text())["history"]
    text = (site / "reproduce" / "index.html").read_text()
    assert f"{sum(e['seconds'] for e in history) / 60:.1f} min" in text
    assert f"the {holdout['evaluation']['mistakes']} most\nconfident mistakes" in text
    assert "masklens-" not in text.replace("masklens-manifest", "")  # one `masklens` command now


def test_readme_results_table_renders_from_the_json(results):
    table = readme_table(results)
    holdout = metrics(results, "holdout")
    end_to_end = metrics(results, "end-to-end")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 5 and "(`default`)" in rows[0]  # a header and four lines
    assert rows[1].split(" | ")[1] == f"{100 * holdout['accuracy']:.2f}%" and "96% as reported" in rows[1]
    assert "its recipe trained here" not in rows[1]  # no paper preset evaluated here
    assert rows[2].split(" | ")[1] == f"{100 * end_to_end['real-photos']['mask_accuracy']:.2f}% of the faces found"
    assert (
        rows[3]
        .split(" | ")[1]
        .startswith(f"{100 * end_to_end['real-video-frames']['detected']['balanced_accuracy']:.2f}%")
    )
    wear = end_to_end["real-wear"]["crops"]
    incorrect = wear["per_class"]["incorrect"]["recall"]
    assert (
        rows[4].split(" | ")[1] == f"{100 * wear['balanced_accuracy']:.2f}% of the faces found ({100 * incorrect:.2f}%)"
    )


def test_committed_readme_results_table_is_current():
    readme = README.read_text()
    assert readme.count(README_START) == 1 and readme.count(README_END) == 1
    assert readme == readme_with_table(readme, readme_table()), (
        "README.md's results table is stale: run .venv/bin/python -m tests.test_docs"
    )


def test_readme_first_screen_and_links():
    readme = README.read_text()
    first_screen = readme[: readme.index(README_END)]
    assert "](results/figures/app-desktop.png)" in first_screen
    assert "scripts/serve.sh" in first_screen and "scripts/test.sh" in first_screen
    assert "http://127.0.0.1:8000/app/" in first_screen
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", readme):
        if not off_site(target):
            assert (REPO / target).exists(), target


if __name__ == "__main__":
    README.write_text(readme_with_table(README.read_text(), readme_table()))
    print(f"wrote the results table of {README}")
