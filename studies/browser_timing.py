"""The app in headless Chromium, measured for ``masklens benchmark``: the classifier's run per face in
onnxruntime-web, a photo from the file input to its drawn result, and the tab's memory.

- ``classifier_run_ms``: the photo classifier (manifest ``classifier.file``, logits and both Grad-CAM
  layers) run at batch 1 on a random crop in the app's own worker, by the onnxruntime-web module and wasm
  binary the app loaded, with the app's session options, so the time is onnxruntime-web's alone (no
  cropping, no messages). One thread without cross-origin isolation (service workers blocked), the app's
  threads (two on two cores) with it (the service worker, app.js's isolate()).
- ``photo_to_result``: from the file input's change event to the page's record of the finished check
  (``data-checks``), after which every face's label and the first face's heatmap are drawn (app.js draws
  them before it counts the check), timed by the page's own clock.
- ``tab_memory``: a fresh browser opens the app and checks one photo; the renderer's peak resident memory
  (VmHWM of Chromium's renderer processes, read from /proc: the page, its worker and onnxruntime's threads
  live there) once the app is ready and after the check, and the page's JavaScript heap (CDP
  Performance.getMetrics).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from .chromium import CHROMIUM, CHROMIUM_ARGS
from .visits import TIMEOUT_MS

# Runs in the app's worker (worker.evaluate): its onnxruntime-web module (already loaded and set up by
# worker.js, so the same instance and wasm binary) runs the classifier `repeats` times after a warm-up, with
# the app's session options (site/js/ortoptions.js).
CLASSIFIER_RUNS = """async ([ortUrl, optionsUrl, modelUrl, inputName, size, repeats]) => {
  const ort = await import(ortUrl);
  const { sessionOptions } = await import(optionsUrl);
  const bytes = new Uint8Array(await (await fetch(modelUrl)).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, sessionOptions('wasm'));
  const data = new Float32Array(3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i);
  const feeds = { [inputName]: new ort.Tensor('float32', data, [1, 3, size, size]) };
  await session.run(feeds);
  const times = [];
  for (let k = 0; k < repeats; k++) {
    const started = performance.now();
    await session.run(feeds);
    times.push(performance.now() - started);
  }
  await session.release();
  return { times, threads: ort.env.wasm.numThreads };
}"""

# Runs in the page: times the next check from the file input's change event to data-checks' change.
WATCH_NEXT_CHECK = """() => {
  const watch = { start: null, end: null };
  window.__masklens_benchmark = watch;
  document.getElementById('file').addEventListener('change', () => { watch.start = performance.now(); },
    { capture: true, once: true });
  const observer = new MutationObserver(() => { watch.end = performance.now(); observer.disconnect(); });
  observer.observe(document.body, { attributes: true, attributeFilter: ['data-checks'] });
}"""


def timing(times_ms: list[float]) -> dict:
    return {"median_ms": statistics.median(times_ms), "min_ms": min(times_ms), "runs": len(times_ms)}


def open_app(context, base: str):
    """A page of the app at ``base``, its models loaded: -> (page, {threads, isolated})."""
    page = context.new_page()
    page.goto(f"{base}/app/")
    page.wait_for_selector("body[data-state=ready], body[data-state=error]", state="attached", timeout=TIMEOUT_MS)
    if page.get_attribute("body", "data-state") != "ready":
        raise SystemExit(f"the app did not start: {page.inner_text('#error')}")
    threads = int(page.get_attribute("body", "data-threads"))
    return page, {"threads": threads, "isolated": page.evaluate("crossOriginIsolated")}


def classifier_run_ms(page, base: str, manifest: dict, repeats: int, file: str = "") -> dict:
    """The photo classifier's onnxruntime-web run at batch 1 in the page's app worker (CLASSIFIER_RUNS);
    ``file``: another graph in the site's models folder with the same input, in its place."""
    (worker,) = [w for w in page.workers if w.url.endswith("/js/worker.js")]
    classifier = manifest["classifier"]
    result = worker.evaluate(
        CLASSIFIER_RUNS,
        [
            f"{base}/app/ort/ort.wasm.min.mjs",
            f"{base}/app/js/ortoptions.js",
            f"{base}/app/models/{file or classifier['file']}",
            classifier["input"]["name"],
            classifier["preprocessing"]["size"],
            repeats,
        ],
    )
    return {**timing(result["times"]), "threads": result["threads"]}


def check(page, photo: Path) -> dict:
    """One check of ``photo`` through the file input: the page's state, faces and time to the drawn result."""
    done = int(page.get_attribute("body", "data-checks") or 0) + 1
    page.evaluate(WATCH_NEXT_CHECK)
    page.set_input_files("#file", str(photo))
    page.wait_for_selector(f"body[data-checks='{done}']", state="attached", timeout=TIMEOUT_MS)
    watch = page.evaluate("window.__masklens_benchmark")
    last = page.evaluate("({state: window.__masklens_last.state, faces: window.__masklens_last.faces.length})")
    return {**last, "ms": watch["end"] - watch["start"]}


def photo_to_result(page, photo: Path, repeats: int) -> dict:
    """``check`` of the photo ``repeats`` times after one warm-up check: median and quickest time, faces found."""
    check(page, photo)
    checks = [check(page, photo) for _ in range(repeats)]
    states = {c["state"] for c in checks}
    if states != {"result"}:
        raise SystemExit(f"checking {photo.name} in the app gave {states}")
    return {**timing([c["ms"] for c in checks]), "faces": checks[-1]["faces"]}


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(parent, []).append(int(entry.name))
    return children


def renderer_peak_rss() -> int:
    """The largest peak resident memory (VmHWM, bytes) of the Chromium renderer processes started by this
    process (through Playwright's driver); Linux only."""
    children, peak, stack = _children(), 0, [os.getpid()]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)
    return peak


def tab_memory(playwright, base: str, photo: Path) -> dict:
    """A fresh browser's tab checking ``photo``: renderer peak RSS when ready and after, the page's JS heap."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        page, runtime = open_app(browser.new_context(), base)
        ready = renderer_peak_rss()
        checked = check(page, photo)
        devtools = page.context.new_cdp_session(page)
        devtools.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in devtools.send("Performance.getMetrics")["metrics"]}
        return {
            **runtime,
            "state": checked["state"],
            "faces": checked["faces"],
            "renderer_peak_rss_ready_bytes": ready,
            "renderer_peak_rss_bytes": renderer_peak_rss(),
            "page_js_heap_used_bytes": int(metrics["JSHeapUsedSize"]),
        }
    finally:
        browser.close()
