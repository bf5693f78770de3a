"""The complete static site in a real browser (Debian's chromium, driven by Playwright).

The site is built with scripts/build_site.py from the session's random-weights export and tiny
results (test_docs' ``results``), served from a local port, and used as a person would: photos are
uploaded through the file input. The app's answers are compared with masklens/predict.py's Predictor on
the same pixels (PNG copies of real photos, decoded by Pillow as the predictor decodes them, so both
sides start from identical pixels), and every request the pages make is recorded.

Skipped without chromium (/usr/bin/chromium) or the playwright package, except under CI=true, where
that fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masklens.files import sha256_of
from masklens.predict import Predictor, open_photo
from studies.chromium import serving

from .conftest import REPO, assert_same_faces, shared_data_or_skip, site_builder

TIMEOUT_MS = 60_000
# Three photos of ../shared/data/real-photos/test/without_mask in which MTCNN finds one face each.
SEVERAL_FACES = ("without_mask_00002.jpg", "without_mask_00006.jpg", "without_mask_00012.jpg")


def build_site(models: Path, out: Path, results: Path | None = None) -> Path:
    """scripts/build_site.py's build; skips (fails under CI=true) without site/node_modules."""
    return site_builder().build(models, out, results)


@pytest.fixture(scope="module")
def site(exported_models, results, tmp_path_factory) -> Path:
    return build_site(exported_models, tmp_path_factory.mktemp("browser") / "site", results)


@pytest.fixture(scope="module")
def server(site):
    with serving(site) as base:
        yield base


@pytest.fixture(scope="module")
def photos(exported_models, tmp_path_factory) -> dict[str, Path]:
    """PNG copies of real photos (one per class folder) as the predictor decodes them, a photo
    without a face, and a PDF named .jpg."""
    manifest = Predictor(exported_models, threads=1).manifest
    limits = manifest["input_limits"]
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name in ("with_mask", "without_mask"):
        source = sorted(shared_data_or_skip("real-photos", "test", name).iterdir())[0]
        out[name] = folder / f"{name}.png"
        Image.fromarray(open_photo(source, limits["max_side"], limits["max_pixels"])).save(out[name])
        out[f"{name}_jpeg"] = source
    y, x = np.mgrid[0:150, 0:200]
    gradient = np.stack([x * 255 // 199, y * 255 // 149, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    out["no_face"] = folder / "sky.png"
    Image.fromarray(gradient).save(out["no_face"])
    out["pdf"] = folder / "document.jpg"
    out["pdf"].write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    jpeg = out["with_mask_jpeg"].read_bytes()
    out["truncated"] = folder / "truncated.jpg"  # a download cut off half way
    out["truncated"].write_bytes(jpeg[: len(jpeg) // 2])
    out["text"] = folder / "notes.jpg"
    out["text"].write_text("Shopping list: masks, soap.\n" * 20)
    # 8000 x 6000 (48 megapixels, under the limit): the face photo, blown up, on the gradient.
    huge = Image.fromarray(gradient).resize((8000, 6000), Image.Resampling.NEAREST)
    face = Image.open(out["without_mask"]).convert("RGB")
    huge.paste(face.resize((3000, round(3000 * face.height / face.width)), Image.Resampling.BILINEAR), (2500, 1000))
    out["huge"] = folder / "huge.jpg"
    huge.save(out["huge"], quality=80)
    # Several faces side by side (photos where MTCNN finds exactly one face each), under max_side.
    height, gap = 240, 24
    faces = [
        Image.open(shared_data_or_skip("real-photos", "test", "without_mask", name)).convert("RGB")
        for name in SEVERAL_FACES
    ]
    faces = [im.resize((round(im.width * height / im.height), height), Image.Resampling.BILINEAR) for im in faces]
    group = Image.new("RGB", (sum(im.width for im in faces) + gap * (len(faces) + 1), height + 2 * gap), (255,) * 3)
    x = gap
    for im in faces:
        group.paste(im, (x, gap))
        x += im.width + gap
    out["group"] = folder / "group.png"
    group.save(out["group"])
    return out


class App:
    """One page of the app, with every request it makes recorded."""

    def __init__(self, context, base: str):
        self.base = base
        self.page = context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.errors: list[str] = []  # uncaught exceptions and console errors
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.failed: list[str] = []  # requests answered with an error status, or not answered
        self.page.on("requestfailed", lambda request: self.failed.append(request.url))
        self.page.on("response", lambda response: response.status >= 400 and self.failed.append(response.url))

    def open(self) -> App:
        self.page.goto(f"{self.base}/app/")
        # Selectors, not wait_for_function: the page's CSP forbids the eval that one needs.
        self.page.wait_for_selector(
            "body[data-state=ready], body[data-state=error]", state="attached", timeout=TIMEOUT_MS
        )
        assert self.page.get_attribute("body", "data-state") == "ready", self.page.inner_text("#error")
        return self

    def runtime(self) -> dict:
        """What runs the models, as the page reports it, and whether the page is cross-origin isolated."""
        body = self.page.locator("body")
        return {
            "backend": body.get_attribute("data-backend"),
            "threads": int(body.get_attribute("data-threads")),
            "isolated": self.page.evaluate("crossOriginIsolated"),
            "footer": self.page.inner_text("#runtime-info"),
        }

    def checks(self) -> int:
        return int(self.page.get_attribute("body", "data-checks") or 0)

    def _after(self, action) -> dict:
        done = self.checks() + 1
        action()
        self.page.wait_for_selector(f"body[data-checks='{done}']", state="attached", timeout=TIMEOUT_MS)
        return self.page.evaluate("window.__masklens_last")

    def upload(self, path: Path) -> dict:
        return self._after(lambda: self.page.set_input_files("#file", str(path)))

    def whole_image(self) -> dict:
        return self._after(lambda: self.page.click("#whole"))


@pytest.fixture(scope="module")
def context(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="module")
def predictor(exported_models):
    return Predictor(exported_models, threads=1)


def test_photos_get_the_predictors_answers_without_any_request(context, server, photos, predictor, tmp_path):
    app = App(context, server).open()
    loaded = len(app.requests)
    for name in ("with_mask", "without_mask"):
        last = app.upload(photos[name])
        assert last["state"] == "result", last
        rgb = np.asarray(Image.open(photos[name]).convert("RGB"))
        assert [last["photo"]["width"], last["photo"]["height"]] == [rgb.shape[1], rgb.shape[0]]
        assert_same_faces(last["faces"], predictor.predict_photo(rgb), predictor)
    # The original JPEG, decoded by the browser itself, also gets an answer.
    assert app.upload(photos["with_mask_jpeg"])["state"] == "result"
    # Looking at the details of a face: a button per face, the heatmap controls.
    app.page.click("#faces button[data-face='0']")
    assert app.page.is_visible("#detail") and app.page.inner_text("#bars").count("%") == 3
    app.page.select_option("#layer", "repeat_2")
    app.page.select_option("#explain", "uncovered")
    app.page.fill("#opacity", "80")
    assert app.page.inner_text("#opacity-value") == "80%"
    # The line under the heatmap says what it shows (this site's results have no explanations.json: no numbers).
    assert app.page.inner_text("#heatmap-note").startswith("The map is Grad-CAM at repeat_2: where the network")
    app.page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
    assert app.requests[loaded:] == [], "checking a photo made network requests"
    assert not app.errors and not app.failed, (app.errors, app.failed)


def test_not_an_image_gives_a_plain_error_and_changes_nothing_else(context, server, photos):
    app = App(context, server).open()
    app.upload(photos["with_mask"])
    faces_before = app.page.inner_text("#faces")
    last = app.upload(photos["pdf"])
    assert last["state"] == "error"
    assert app.page.inner_text("#error") == "This file is a PDF document, not an image."  # named from its header
    assert app.page.is_visible("#error")
    assert app.page.inner_text("#faces") == faces_before and app.page.is_visible("#result")


def test_no_face_offers_the_whole_image_as_one_face(context, server, photos, predictor):
    app = App(context, server).open()
    last = app.upload(photos["no_face"])
    assert last["state"] == "noface" and last["faces"] == []
    assert "No face found" in app.page.inner_text("#status")
    assert app.page.is_visible("#whole")
    last = app.whole_image()
    assert last["state"] == "result" and last["wholeImage"] and len(last["faces"]) == 1
    rgb = np.asarray(Image.open(photos["no_face"]).convert("RGB"))
    assert_same_faces(last["faces"], predictor.predict_photo(rgb, whole_image=True), predictor)
    assert not app.page.is_visible("#noface")


def test_a_second_visit_reads_the_models_from_the_cache(context, server):
    App(context, server).open()  # fills the cache, if an earlier test has not already
    app = App(context, server).open()
    assert not [url for url in app.requests if url.endswith(".onnx")]
    assert "cache" in app.page.inner_text("#status")


def test_photo_mode_downloads_only_what_a_photo_check_needs(browser, server, photos, exported_models):
    """A first visit and a photo check fetch the face detector's stock nets, the one classifier and the wasm
    build of onnxruntime-web: never the webcam's graphs, the WebGPU graph or the WebGPU build; the second
    look's nets only once a photo needs them (no face found by the stock nets)."""
    manifest = json.loads((exported_models / "manifest.json").read_text())
    classifier = manifest["classifier"]
    detector = manifest["face_detector"]
    second_look = {detector["nets"][net]["file"] for net in detector["second_look"]["nets"].values()}
    stock = {net["file"] for net in detector["nets"].values()} - second_look
    webcam_only = {classifier["webcam"]["file"], classifier["webcam"]["gpu"]["file"], classifier["gpu"]["file"]}
    context = browser.new_context()  # a fresh cache
    try:
        app = App(context, server).open()
        assert app.upload(photos["with_mask"])["state"] == "result"
        fetched = {url.rsplit("/", 1)[-1] for url in app.requests}
        assert {name for name in fetched if name.endswith(".onnx")} == {classifier["file"], *stock}
        assert not fetched & webcam_only
        assert {url.rsplit("/", 1)[-1] for url in app.requests if "/ort/" in url} == {
            "ort.wasm.min.mjs",
            "ort-wasm-simd-threaded.mjs",
            "ort-wasm-simd-threaded.wasm",
        }
        assert app.upload(photos["no_face"])["state"] == "noface"
        fetched = {url.rsplit("/", 1)[-1] for url in app.requests}
        assert {name for name in fetched if name.endswith(".onnx")} == {classifier["file"], *stock, *second_look}
        assert not app.errors and not app.failed, (app.errors, app.failed)
    finally:
        context.close()


def test_visits_are_measured_in_bytes_until_the_first_result(browser, server, site, photos, exported_models):
    from studies.visits import first_and_second_visit

    manifest = json.loads((exported_models / "manifest.json").read_text())
    classifier = manifest["classifier"]["file"]
    visits = first_and_second_visit(browser, server, photos["with_mask"])
    first, second = visits["first"], visits["second"]
    photo_models = sum(manifest["files"][f]["bytes"] for f in manifest["files"] if f.endswith("net.onnx"))
    photo_models += manifest["files"][classifier]["bytes"]
    wasm = (site / "app" / "ort" / "ort-wasm-simd-threaded.wasm").stat().st_size
    assert first["bytes"] > photo_models + wasm and f"/app/models/{classifier}" in first["largest"]
    # The second visit reads the models from Cache Storage and the rest from the HTTP cache (or a 304).
    assert second["bytes"] < 1_000_000 and not any(name.endswith(".onnx") for name in second["largest"])
    assert 0 < first["seconds_to_ready"] <= first["seconds_to_first_result"]


def flip_last_byte(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 0xFF])


def cut_in_half(body: bytes) -> bytes:
    return body[: len(body) // 2]


@pytest.mark.parametrize("damage", [flip_last_byte, cut_in_half])
def test_a_model_that_differs_from_the_manifest_is_refused(browser, server, damage):
    context = browser.new_context()  # a fresh cache
    try:
        page = context.new_page()

        def tampered(route):
            body = damage(route.fetch().body())
            route.fulfill(status=200, body=body, headers={"content-type": "application/octet-stream"})

        page.route("**/models/rnet.onnx", tampered)
        page.goto(f"{server}/app/")
        page.wait_for_selector("body[data-state=ready], body[data-state=error]", state="attached", timeout=TIMEOUT_MS)
        assert page.get_attribute("body", "data-state") == "error"
        assert "rnet.onnx" in page.inner_text("#error") and "checksum" in page.inner_text("#error")
    finally:
        context.close()


def test_a_manifest_of_another_format_is_refused_naming_the_field(browser, server, site):
    manifest = json.loads((site / "app" / "models" / "manifest.json").read_text())
    manifest["format"] = "masklens-manifest/1"
    # No service worker: page.route does not see the requests it makes on the page's behalf (coi-sw.js
    # fetches the app's own files, manifest.json among them, to keep copies for offline use).
    context = browser.new_context(service_workers="block")
    try:
        page = context.new_page()
        models = []
        page.on("request", lambda request: request.url.endswith(".onnx") and models.append(request.url))
        page.route(
            "**/models/manifest.json",
            lambda route: route.fulfill(
                status=200, body=json.dumps(manifest), headers={"content-type": "application/json"}
            ),
        )
        page.goto(f"{server}/app/")
        page.wait_for_selector("body[data-state=ready], body[data-state=error]", state="attached", timeout=TIMEOUT_MS)
        assert page.get_attribute("body", "data-state") == "error"
        assert page.inner_text("#error") == (
            'The model description manifest.json cannot be used: field `format` is "masklens-manifest/1": '
            'this MaskLens reads "masklens-manifest/2" only (re-export the model with masklens export).'
        )
        assert page.inner_text("#status") == "The checker could not start."
        assert not models  # refused before any model is downloaded
    finally:
        context.close()


def test_the_site_build_refuses_a_manifest_of_another_format(exported_models, tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(exported_models, models)
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["format"] = "masklens-manifest/1"
    (models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match='field `format` is "masklens-manifest/1"'):
        build_site(models, tmp_path / "site")


def test_no_page_requests_anything_from_another_origin(browser, server, site):
    context = browser.new_context()
    try:
        app = App(context, server)
        for path in ("/", "/try/", "/method/", "/results/"):
            app.page.goto(server + path)
            app.page.wait_for_load_state("networkidle")
            if path == "/try/":
                assert app.page.locator("a.md-button[href='../app/']").count() == 1
        app.page.goto(server + "/")
        app.page.click("a.md-button[href='app/']")  # the home page's "Try it" button
        app.page.wait_for_selector("body[data-state=ready]", state="attached", timeout=TIMEOUT_MS)
        off_site = [url for url in app.requests if not url.startswith(server + "/")]
        assert not off_site
        assert not app.failed, app.failed
    finally:
        context.close()
    assert 'http-equiv="Content-Security-Policy"' in (site / "app" / "index.html").read_text()


def test_the_service_worker_isolates_the_page_for_threads_with_the_same_answers(browser, server, photos, predictor):
    rgb = np.asarray(Image.open(photos["without_mask"]).convert("RGB"))
    faces = predictor.predict_photo(rgb)
    answers = {}
    for mode in ("allow", "block"):
        context = browser.new_context(service_workers=mode)
        try:
            app = App(context, server).open()  # first visit: registers the service worker, reloads once
            runtime = app.runtime()
            if mode == "allow":
                app.open()  # a second load stays isolated, without another reload
                runtime = app.runtime()
                cores = app.page.evaluate("navigator.hardwareConcurrency")
                assert runtime["isolated"] is True
                assert runtime["threads"] == min(4, cores) > 1, (runtime, cores)
            else:
                assert runtime["isolated"] is False and runtime["threads"] == 1
            assert runtime["backend"] == "wasm"
            assert runtime["footer"] == f"Runs on this device: wasm, {runtime['threads']} thread" + (
                "s." if runtime["threads"] > 1 else "."
            )
            last = app.upload(photos["without_mask"])
            assert last["state"] == "result"
            assert_same_faces(last["faces"], faces, predictor)
            answers[mode] = last["faces"]
            assert not app.errors and not app.failed, (app.errors, app.failed)
        finally:
            context.close()
    for threaded, single in zip(answers["allow"], answers["block"]):
        assert threaded["class"] == single["class"]
        for name, p in single["probabilities"].items():
            assert threaded["probabilities"][name] == pytest.approx(p, abs=1e-3)


def test_bad_inputs_give_plain_messages_and_the_page_stays_usable(context, server, photos):
    app = App(context, server).open()
    for name, words in (("truncated", "could not be opened as an image"), ("text", "could not be opened as an image")):
        last = app.upload(photos[name])
        assert last["state"] == "error", (name, last)
        assert words in app.page.inner_text("#error") and app.page.is_visible("#error"), name
    last = app.upload(photos["huge"])  # scaled down before anything else: an answer, not a hang
    assert last["state"] in ("result", "noface"), last
    assert max(last["photo"]["width"], last["photo"]["height"]) <= 1280
    assert not app.page.is_visible("#error")
    last = app.upload(photos["no_face"])
    assert last["state"] == "noface" and "No face found" in app.page.inner_text("#status")
    assert app.page.is_visible("#noface")
    last = app.upload(photos["without_mask"])
    assert last["state"] == "result" and len(last["faces"]) == 1
    assert not app.page.is_visible("#error") and not app.page.is_visible("#noface")
    assert not app.errors, app.errors


def test_a_photo_with_several_faces_labels_each(context, server, photos, predictor):
    rgb = np.asarray(Image.open(photos["group"]).convert("RGB"))
    faces = sorted(predictor.predict_photo(rgb), key=lambda face: face.box[0])
    assert len(faces) == len(SEVERAL_FACES)
    app = App(context, server).open()
    last = app.upload(photos["group"])
    assert last["state"] == "result"
    assert_same_faces(sorted(last["faces"], key=lambda face: face["box"][0]), faces, predictor)
    labels = app.page.locator("#faces button").all_inner_texts()
    assert len(labels) == len(faces)
    by_position = sorted(range(len(last["faces"])), key=lambda i: last["faces"][i]["box"][0])
    for face, i in zip(faces, by_position):
        assert labels[i].startswith(f"Face {i + 1}: {predictor.describe(face)['class']} ")
    assert not app.errors, app.errors


# Run in every page before its own scripts: records each directive the page's Content-Security-Policy enforced.
WATCH_POLICY = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " (event) => window.__violations.push(event.violatedDirective));"
)
INJECTED = '<script>window.__injected = true;</script><img src="http://127.0.0.2:9/pixel.png" alt="">'


def test_each_pages_policy_holds_and_refuses_an_inline_script_and_another_origin(browser, server, site):
    """The docs pages (their policy from docs_hooks/csp.py) and the app (site/index.html) as built break no rule
    of their Content-Security-Policy; a copy of each with an inline script and an image from another origin
    added: the script does not run, the image is blocked before any connection, and the page reports both."""
    context = browser.new_context(service_workers="block")  # the app's first visit would reload itself
    context.add_init_script(WATCH_POLICY)
    try:
        page = context.new_page()
        elsewhere: list[str] = []  # why each request to the other origin failed
        page.on("requestfailed", lambda request: "127.0.0.2" in request.url and elsewhere.append(request.failure))
        for path in ("index.html", "try/index.html", "limitations/index.html", "404.html", "app/index.html"):
            html = (site / path).read_text()
            assert html.count('http-equiv="Content-Security-Policy"') == 1, path
            page.goto(f"{server}/{path}")
            if path.startswith("app/"):
                page.wait_for_selector("body[data-state=ready]", state="attached", timeout=TIMEOUT_MS)
            page.wait_for_load_state("networkidle")
            assert page.evaluate("window.__violations") == [], path
            copy = (site / path).with_name("policy-check.html")
            copy.write_text(html.replace("</body>", INJECTED + "</body>", 1))
            try:
                page.goto(f"{server}/{copy.relative_to(site).as_posix()}")
                page.wait_for_load_state("networkidle")
                assert page.evaluate("window.__injected") is None, path
                assert {"script-src-elem", "img-src"} <= set(page.evaluate("window.__violations")), path
            finally:
                copy.unlink()
        # Stopped by the policy, before any connection was tried.
        assert elsewhere and set(elsewhere) == {"csp"}, elsewhere
    finally:
        context.close()


def test_after_a_first_visit_the_app_checks_photos_offline(browser, site, photos):
    """The service worker keeps the app's own files, worker.js the models and the runtime: with the server
    gone (every request fails to connect), a reload still starts the app and checks a photo."""
    context = browser.new_context()
    try:
        with serving(site) as base:
            app = App(context, base).open()  # first visit: registers the service worker, reloads once
            assert app.runtime()["isolated"] is True
            assert app.upload(photos["with_mask"])["state"] == "result"
        app.page.reload()
        app.page.wait_for_selector(
            "body[data-state=ready], body[data-state=error]", state="attached", timeout=TIMEOUT_MS
        )
        assert app.page.get_attribute("body", "data-state") == "ready", app.page.inner_text("#error")
        assert "cache" in app.page.inner_text("#status")
        last = app.upload(photos["without_mask"])
        assert last["state"] == "result" and len(last["faces"]) == 1
        assert app.runtime()["isolated"] is True  # the kept page keeps its isolation headers
        assert not app.errors, app.errors
    finally:
        context.close()


def test_a_worker_that_fails_mid_run_is_replaced_and_the_next_photo_is_checked(context, server, photos):
    app = App(context, server).open()
    assert app.upload(photos["with_mask"])["state"] == "result"
    (worker,) = [w for w in app.page.workers if w.url.endswith("/js/worker.js")]
    # A fault inside the worker from now on: every canvas it makes fails to give a context, as when the
    # browser runs out of memory for one. A real exception in the middle of the next check, not a test hook.
    worker.evaluate(
        "() => { OffscreenCanvas.prototype.getContext = () => { throw new RangeError('Out of memory'); }; }"
    )
    last = app.upload(photos["without_mask"])
    assert last["state"] == "error", last
    message = app.page.inner_text("#error")
    assert message == "This photo could not be checked (Out of memory). The checker was restarted: try again."
    assert app.page.inner_text("#status") == "Ready. Choose a photo."
    last = app.upload(photos["without_mask"])
    assert last["state"] == "result" and len(last["faces"]) == 1
    assert not app.page.is_visible("#error")
    assert not app.errors, app.errors


@pytest.mark.slow
def test_the_benchmark_measures_every_budget_in_the_browser_and_out(site, exported_models, tmp_path):
    """``masklens benchmark`` on the test site with one run of everything: the report's structure, and every
    number in it positive and finite (no time is judged here: the benchmark is the place for that). Run as the
    command, in its own process: it drives its own Chromium, beside this module's."""
    from .test_predict import assert_positive_and_finite

    out = tmp_path / "benchmark.json"
    flags = {
        "models": exported_models,
        "photos": shared_data_or_skip("real-photos", "test", "without_mask"),
        "photo-count": 1,
        "repeats": 1,
        "site": site,
        "checkpoint": exported_models.parent / "model.pt",
        "browser-repeats": 1,
        "folder-sizes": 2,
        "video-minutes": 0.05,
        "train-steps": 1,
        "train-batch-size": 2,
        # Any graph with the classifier's input stands in for an earlier release's.
        "reference-classifier": exported_models / "classifier.onnx",
        "out": out,
    }
    arguments = [item for name, value in flags.items() for item in (f"--{name}", str(value))]
    subprocess.run([sys.executable, "-m", "masklens", "benchmark", *arguments], cwd=REPO, check=True)
    result = json.loads(out.read_text())
    assert {k: (v["threads"], v["isolated"]) for k, v in result["browser_classifier"].items()} == {
        "1": (1, False),
        "2": (2, True),
    }
    end_to_end = result["photo_to_result"]
    assert end_to_end["faces"] == 3 and end_to_end["isolated"] is True
    assert end_to_end["photo"] == {"width": 4000, "height": 3000, "faces_pasted": 3}
    tab = result["memory"]["browser"]
    assert set(tab) == {"4000x3000", "9000x9000"} and all(m["state"] == "result" for m in tab.values())
    assert all(m["renderer_peak_rss_bytes"] >= m["renderer_peak_rss_ready_bytes"] for m in tab.values())
    reference = result["browser_classifier_reference"]
    assert (reference["file"], reference["threads"]) == (str(flags["reference-classifier"]), 2)
    assert reference["sha256"] == sha256_of(flags["reference-classifier"]) and reference["median_ms"] > 0
    assert not (site / "app" / "models" / "reference-classifier.onnx").exists()  # the site is left as it was
    training = result["training"]
    assert (training["batch_size"], training["steps"], training["bf16"]) == (2, 1, True)
    assert set(result["visits"]) == {"photo", "first", "second"}
    assert_positive_and_finite({k: v for k, v in result.items() if k != "visits"})  # a second visit may send 0 bytes
