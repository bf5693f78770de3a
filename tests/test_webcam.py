"""The webcam mode in Debian's chromium with a fake camera that plays a y4m scene of real faces.

The scene (tests/scenes.py) shows two MaskedFace-Net holdout faces whose classes change every three
seconds; Chromium loops it as the camera (``--use-file-for-fake-video-capture``). The site is built
with the shipped models, since the labels must be right. The labels the page shows must follow the
scene's classes in order, one track per face, the Python video predictor must give the same classes
per track (tests/test_video.py runs it on the same scene against the same classes), and stopping must
release the camera (every track of the stream ``ended``). The screenshots on the Try-it page come from
here too.

Skipped without chromium, playwright or the shared data, except under CI=true, where that fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from export.quantize import INT8_BOUNDS
from masklens.predict import Predictor
from studies.chromium import CHROMIUM, CHROMIUM_ARGS, WEBGPU_ARGS, serving

from .conftest import REPO, shared_data_or_skip, skip_or_fail
from .scenes import FPS, PLACES, SCHEDULE, SEGMENT_FRAMES, expected_classes, make_scene, runs
from .test_browser import TIMEOUT_MS, build_site

pytestmark = pytest.mark.slow

SHIPPED = REPO / "models" / "onnx"
SCENE_SECONDS = len(SCHEDULE[0]) * SEGMENT_FRAMES / FPS
# getUserMedia wrapped before the app runs, so the test can look at the streams the app opened.
RECORD_STREAMS = """
window.__streams = [];
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await original(constraints);
  window.__streams.push(stream);
  return stream;
};
"""


def place_of(box) -> int:
    """The scene place whose face holds the box's centre."""
    cx = (box[0] + box[2]) / 2
    return min(range(len(PLACES)), key=lambda p: abs(PLACES[p][0] + 128 - cx))


def follows_cycle(observed: list[str], cycle: list[str]) -> bool:
    """True when observed is a stretch of the cycle repeated, starting anywhere in it."""
    return any(
        observed == [cycle[(start + i) % len(cycle)] for i in range(len(observed))] for start in range(len(cycle))
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    holdout = shared_data_or_skip("maskedface-net", "holdout")
    return make_scene(Predictor(SHIPPED, threads=2), holdout, tmp_path_factory.mktemp("scene") / "scene.y4m")


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    with serving(build_site(SHIPPED, tmp_path_factory.mktemp("webcam") / "site")) as base:
        yield base


def _chromium(playwright, *extra: str):
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra])


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed")
    return sync_playwright()


def _open_app(context, server, query: str = ""):
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.add_init_script(RECORD_STREAMS)
    page.goto(f"{server}/app/{query}")
    page.wait_for_selector("body[data-state=ready]", state="attached", timeout=TIMEOUT_MS)
    return page, errors


def test_webcam_labels_follow_the_scene_and_stop_releases_the_camera(scene, shipped_server):
    with _playwright() as playwright:
        browser = _chromium(
            playwright, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={scene}"
        )
        context = browser.new_context(permissions=["camera"], viewport={"width": 1000, "height": 900})
        page, errors = _open_app(context, shipped_server)
        page.click("#camera-start")
        page.wait_for_selector("body[data-camera=on]", state="attached", timeout=TIMEOUT_MS)
        # Two passes of the looping scene: every class change is seen at least once.
        deadline = time.monotonic() + 2 * SCENE_SECONDS + 60
        while time.monotonic() < deadline:
            if page.evaluate("(window.__masklens_live.log.at(-1) || {t: 0}).t") > 2 * SCENE_SECONDS * 1000:
                break
            time.sleep(1)
        live = page.evaluate("window.__masklens_live")
        page.click("#camera-stop")
        page.wait_for_selector("body[data-camera=off]", state="attached", timeout=TIMEOUT_MS)
        states = page.evaluate("window.__streams.flatMap((s) => s.getTracks().map((t) => t.readyState))")
        shown_after_stop = page.locator("#live-faces li").count()
        browser.close()
    assert states and all(state == "ended" for state in states), states
    assert shown_after_stop == 0
    assert not errors, errors
    assert live["steps"] >= 20, live["steps"]
    # Besides each step's, the overlay is redrawn at every camera frame (follow.js moves the boxes between steps).
    assert len(live["redraws"]) > live["steps"] and live["detections"] > 0, (len(live["redraws"]), live["steps"])
    per_place = {p: [] for p in range(len(PLACES))}
    ids = {p: set() for p in range(len(PLACES))}
    for step in live["log"]:
        for track in step["tracks"]:
            per_place[place_of(track["box"])].append(track["class"])
            ids[place_of(track["box"])].add(track["id"])
    for place, labels in per_place.items():
        observed = runs(labels, min_length=2)
        cycle = expected_classes(place)
        assert len(observed) >= len(cycle) + 1 and follows_cycle(observed, cycle), (place, observed, cycle)
        assert len(ids[place]) <= 2, ids  # one track per face (a second only if the loop's restart lost it)


def test_a_refused_camera_gives_a_plain_message_and_the_page_stays_usable(shipped_server):
    with _playwright() as playwright:
        browser = _chromium(playwright, "--use-fake-device-for-media-stream")
        context = browser.new_context()  # no camera permission: the request is refused
        page, errors = _open_app(context, shipped_server)
        page.click("#camera-start")
        page.wait_for_selector("#camera-error:not([hidden])", timeout=TIMEOUT_MS)
        message = page.inner_text("#camera-error")
        start_enabled = page.is_enabled("#camera-start")
        camera = page.get_attribute("body", "data-camera")
        browser.close()
    assert "not allowed" in message, message
    assert start_enabled and camera is None
    assert not errors, errors


def test_screenshots_of_a_check_for_the_docs(scene, shipped_server, tmp_path):
    """A photo of two holdout faces checked with the shipped model, screenshotted at desktop and phone
    width into results/figures (the Try-it page shows them); the page's answer is the predictor's."""
    from PIL import Image

    from masklens.y4m import read_y4m

    frames, _ = read_y4m(scene)
    photo = tmp_path / "two-faces.png"
    Image.fromarray(frames[-1]).save(photo)
    predictor = Predictor(SHIPPED, threads=2)
    expected = [predictor.classes[int(f.probabilities.argmax())] for f in predictor.predict_photo(frames[-1])]
    figures = REPO / "results" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    with _playwright() as playwright:
        browser = _chromium(playwright)
        for name, viewport, scale in (
            ("desktop", {"width": 1200, "height": 900}, 1),
            ("phone", {"width": 390, "height": 844}, 1),
        ):
            context = browser.new_context(viewport=viewport, device_scale_factor=scale)
            page, errors = _open_app(context, shipped_server)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("body[data-state=result]", state="attached", timeout=TIMEOUT_MS)
            shown = [face["class"] for face in page.evaluate("window.__masklens_last.faces")]
            page.locator("#result").scroll_into_view_if_needed()
            path = figures / f"app-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            context.close()
            assert sorted(shown) == sorted(expected) and not errors, (shown, expected, errors)
            with Image.open(path) as image:
                assert image.width == viewport["width"] * scale and image.height > viewport["height"]
        browser.close()


def test_webgpu_runs_the_classifiers_with_the_answers_of_wasm(shipped_server, tmp_path):
    """Chromium's software WebGPU (SwiftShader) stands in for a GPU. Being a fallback adapter, the app
    leaves it alone unless asked (?backend=webgpu); asked, both classifiers run on it: a photo gets the
    wasm backend's classes, probabilities within 1e-3 and heatmaps within 0.02 in the same browser, and
    the webcam mode's first classification of a still face (found by the same detection in both runs)
    the same class, its probabilities within the bound the export holds the int8 live graph (wasm's) to
    against the fp32 one (WebGPU's); wasm against Python is tests/test_js_parity.py's and test_browser.py's.
    Slow: software shaders take a while to compile."""
    from PIL import Image

    from masklens.y4m import compose, write_y4m

    face = sorted(shared_data_or_skip("maskedface-net", "holdout", "covered").iterdir())[0]
    still = compose((640, 480), [(np.asarray(Image.open(face).convert("RGB").resize((256, 256))), 192, 112)])
    video = tmp_path / "still.y4m"
    write_y4m(video, [still] * 5, 5)
    photo = tmp_path / "still.png"
    Image.fromarray(still).save(photo)
    answers = {}
    with _playwright() as playwright:
        if not CHROMIUM.exists():
            skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*WEBGPU_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"],
        )
        context = browser.new_context(permissions=["camera"])
        for query in ("", "?backend=webgpu", "?backend=wasm"):
            page, errors = _open_app(context, shipped_server, query)
            backend = page.get_attribute("body", "data-backend")
            tracks, faces = [], []
            if query:
                page.set_input_files("#file", str(photo))
                page.wait_for_selector("body[data-checks='1']", state="attached", timeout=300_000)
                faces = page.evaluate("window.__masklens_last.faces")
                page.click("#camera-start")
                deadline = time.monotonic() + 300
                while not tracks and time.monotonic() < deadline:
                    time.sleep(2)
                    tracks = next(
                        (step["tracks"] for step in page.evaluate("window.__masklens_live.log") if step["tracks"]), []
                    )
                page.click("#camera-stop")
            answers[query] = {"backend": backend, "tracks": tracks, "faces": faces, "errors": errors}
            page.close()
        browser.close()
    assert answers[""]["backend"] == "wasm"
    gpu, cpu = answers["?backend=webgpu"], answers["?backend=wasm"]
    assert gpu["backend"] == "webgpu" and cpu["backend"] == "wasm"
    assert [f["class"] for f in gpu["faces"]] == [f["class"] for f in cpu["faces"]] == ["covered"]
    for ours, theirs in zip(gpu["faces"], cpu["faces"]):
        np.testing.assert_allclose(
            list(ours["probabilities"].values()), list(theirs["probabilities"].values()), atol=1e-3
        )
        assert ours["heatmaps"].keys() == theirs["heatmaps"].keys() == {"block8", "repeat_2"}
        for layer, maps in ours["heatmaps"].items():
            np.testing.assert_allclose(maps["data"], theirs["heatmaps"][layer]["data"], atol=0.02, err_msg=layer)
    assert len(gpu["tracks"]) == len(cpu["tracks"]) == 1, (gpu["tracks"], cpu["tracks"])
    assert gpu["tracks"][0]["class"] == cpu["tracks"][0]["class"] == "covered"
    np.testing.assert_allclose(
        list(gpu["tracks"][0]["probabilities"].values()),
        list(cpu["tracks"][0]["probabilities"].values()),
        atol=INT8_BOUNDS["max_probability_difference"],
    )
    assert not any(answer["errors"] for answer in answers.values()), answers
