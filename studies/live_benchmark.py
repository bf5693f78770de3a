"""How fast the webcam mode runs: headless Chromium against onnxruntime in Python, on the same graphs.

    masklens live-benchmark --site build/site --out results/live-benchmark.json

For one face and for four, a 640 x 480 scene of MaskedFace-Net holdout faces plays as Chromium's fake
camera (``--use-file-for-fake-video-capture``); the built site's webcam mode runs for ``seconds`` (the
first ``warmup`` not counted), and its own log (``window.__masklens_live``) gives:

- ``overlay_fps``: overlay redraws per second (one per video frame, the boxes moved with the faces by
  site/js/follow.js between steps);
- ``steps_per_second``: loop steps (a detection or the followed boxes, then the classifications due) per
  second; ``detections_per_second``: the steps that ran the detector;
- ``classifications_per_face``: re-classifications per second per tracked face;
- ``frame_ms``: the median time to detect the faces of a frame plus classify every one of them (the
  median detection time of the steps that detected plus faces x the median classification time per
  face), the unit compared with Python; ``classify_run_ms_per_face``: of a classification, the median
  time of the onnxruntime-web run alone (the rest is cropping, Grad-CAM maths, messages between the page
  and its worker, and waiting for the CPU); ``min_face_size``: the smallest face the loop settled on (it
  grows when steps are slow);
- ``page_main_thread_share``: the share of a core the page's own thread took after the warm-up (following
  the boxes and redrawing at every video frame), which the worker's threads share the cores with.

The native reference runs the same per-frame work (masklens/video.py's rule: find faces with the live
face size the browser settled on, classify all of them with the same int8 graph) with onnxruntime's CPU
provider on as many threads as the browser has; ``classify_fp32_ms_per_face`` times the fp32 live graph
on the same crops (onnxruntime's x86 kernels are faster in float than for uint8 x uint8).
The speed of these small shared machines drifts between runs (1.5x seen within minutes), so each scene
is measured ``rounds`` times, the browser and then Python in each round; every round is kept
(``rounds``), with its own ratio from two measurements made back to back; the scene's numbers are the
medians over the rounds (see ``summarise``). The result records the
machine (CPU, cores, x86 vector extensions), Chromium's version, threads, whether the page was
cross-origin isolated, and which live graph ran (``live_graph``: the distilled student or the full
model's own). The site must have been built with ``models``. Needs /usr/bin/chromium and playwright (the
test extras). ``--out results/live-benchmark-full-model.json`` with a site and models exported without
``--live-checkpoint`` measures the full model's live graph the same way, which the Results page sets
beside the shipped one.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from masklens.cli import parse_config
from masklens.framing import crop_face
from masklens.machine import cpu_name, cpu_vector_extensions
from masklens.predict import normalize_crops, session_options
from masklens.preprocess import load_rgb
from masklens.video import LivePredictor
from masklens.y4m import compose, write_y4m

from .chromium import CHROMIUM, CHROMIUM_ARGS, serving

SIZE = (640, 480)
LAYOUTS = {1: [(192, 112, 256)], 4: [(112, 32, 200), (328, 32, 200), (112, 248, 200), (328, 248, 200)]}


def scene_frame(faces: int, holdout: Path) -> np.ndarray:
    """One frame with `faces` covered and uncovered holdout faces (x, y, side from LAYOUTS)."""
    sources = [sorted((holdout / name).iterdir())[0] for name in ("covered", "uncovered")]
    placements = []
    for k, (x, y, side) in enumerate(LAYOUTS[faces]):
        photo = load_rgb(sources[k % 2]).resize((side, side))
        placements.append((np.asarray(photo), x, y))
    return compose(SIZE, placements)


def main_thread_seconds(devtools) -> float:
    """Seconds the page's main thread has spent on tasks so far (Chromium's own count)."""
    metrics = devtools.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def browser_run(site: Path, video: Path, seconds: float, warmup: float) -> dict:
    from playwright.sync_api import sync_playwright

    with serving(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"],
        )
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(f"{base}/app/")
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
        runtime = {
            "threads": int(page.get_attribute("body", "data-threads")),
            "isolated": page.evaluate("crossOriginIsolated"),
            "chromium": browser.version,
        }
        devtools = page.context.new_cdp_session(page)
        devtools.send("Performance.enable")
        page.click("#camera-start")
        page.wait_for_selector("body[data-camera=on]", state="attached", timeout=60_000)
        time.sleep(warmup)
        busy_before, busy_from = main_thread_seconds(devtools), time.perf_counter()
        time.sleep(seconds - warmup)
        runtime["page_main_thread_share"] = round(
            (main_thread_seconds(devtools) - busy_before) / (time.perf_counter() - busy_from), 3
        )
        live = page.evaluate("window.__masklens_live")
        log, redraws = live["log"], [t for t in live["redraws"] if t >= warmup * 1000]
        runtime["classify_interval_ms"] = live["classifyIntervalMs"]
        runtime["classify_share"] = live["classifyShare"]
        runtime["detect_interval_ms"] = live["detectIntervalMs"]
        page.click("#camera-stop")
        browser.close()
    steps = [s for s in log if s["t"] >= warmup * 1000]
    if len(steps) < 2:
        raise RuntimeError(f"only {len(steps)} webcam steps after the warm-up: nothing to measure")
    span = (steps[-1]["t"] - steps[0]["t"]) / 1000
    faces = statistics.median(len(s["tracks"]) for s in steps)
    detecting = [s for s in steps if s["timing"]["detectMs"] is not None]
    detect = statistics.median(s["timing"]["detectMs"] for s in detecting)
    classifying = [s["timing"] for s in steps if s["timing"]["classified"]]
    classify = statistics.median(t["classifyMs"] / t["classified"] for t in classifying) if classifying else None
    run = statistics.median(t["runMs"] / t["classified"] for t in classifying) if classifying else None
    return {
        **runtime,
        "steps": len(steps),
        "seconds": round(span, 2),
        "overlay_fps": round((len(redraws) - 1) / ((redraws[-1] - redraws[0]) / 1000), 2),
        "steps_per_second": round((len(steps) - 1) / span, 2),
        "detections_per_second": round(len(detecting) / span, 2),
        "classifications_per_face": round(sum(s["timing"]["classified"] for s in steps[1:]) / span / max(faces, 1), 2),
        "faces_tracked": faces,
        "detect_ms": round(detect, 1),
        "min_face_size": statistics.median(s["minFaceSize"] for s in steps),
        "classify_ms_per_face": round(classify, 1) if classify else None,
        "classify_run_ms_per_face": round(run, 1) if run else None,
        "frame_ms": round(detect + faces * classify, 1) if classify else None,
    }


def native_run(models: Path, frame: np.ndarray, threads: int, repeats: int, min_face_size: float) -> dict:
    """The browser's per-frame work in Python, with the smallest face the browser's loop settled on; and,
    for reference, a classification by the fp32 live graph (WebGPU's) on the same crops."""
    import onnxruntime as ort

    live = LivePredictor(models, threads)
    live.min_face_size = min_face_size
    size = live.predictor.preprocessing["size"]
    detect, classify, faces = [], [], 0
    for _ in range(repeats + 1):
        started = time.perf_counter()
        found = live.find_faces(frame)
        detected = time.perf_counter()
        crops = np.stack([crop_face(frame, face.box, live.predictor.framing, size) for face in found])
        live.predictor.predict_crops(crops, live=True)
        finished = time.perf_counter()
        detect.append(1000 * (detected - started))
        classify.append(1000 * (finished - detected) / len(found))
        faces = len(found)
    detect_ms, classify_ms = statistics.median(detect[1:]), statistics.median(classify[1:])
    fp32 = ort.InferenceSession(
        str(models / live.predictor.manifest["classifier"]["webcam"]["gpu"]["file"]),
        session_options(threads),
        providers=["CPUExecutionProvider"],
    )
    inputs = normalize_crops(crops, live.predictor.preprocessing)
    fp32_ms = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        fp32.run(None, {"image": inputs})
        fp32_ms.append(1000 * (time.perf_counter() - started) / len(inputs))
    return {
        "threads": threads,
        "min_face_size": min_face_size,
        "faces_found": faces,
        "detect_ms": round(detect_ms, 1),
        "classify_ms_per_face": round(classify_ms, 1),
        "frame_ms": round(detect_ms + faces * classify_ms, 1),
        "classify_fp32_ms_per_face": round(statistics.median(fp32_ms[1:]), 1),
    }


def median_of_rounds(rounds: list[dict]) -> dict:
    """Field by field, the median of the rounds' numbers; other values (versions, flags) from the first round."""
    merged = {}
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        merged[key] = round(statistics.median(values), 1) if numeric else value
    return merged


def summarise(rounds: list[dict]) -> dict:
    """A scene's browser and native numbers, the medians over its rounds (a frame's time made of the median
    parts, so that the parts add up to it), and the median of the rounds' own browser / native ratios,
    each from two measurements made back to back."""
    browser = median_of_rounds([r["browser"] for r in rounds])
    native = median_of_rounds([r["native"] for r in rounds])
    if browser["classify_ms_per_face"] is not None:
        browser["frame_ms"] = round(
            browser["detect_ms"] + browser["faces_tracked"] * browser["classify_ms_per_face"], 1
        )
    native["frame_ms"] = round(native["detect_ms"] + native["faces_found"] * native["classify_ms_per_face"], 1)
    ratios = [r["browser_over_native"] for r in rounds if r["browser_over_native"] is not None]
    return {
        "browser": browser,
        "native": native,
        "browser_over_native": round(statistics.median(ratios), 2) if ratios else None,
    }


def live_graph(manifest: dict) -> dict:
    """Which graph the webcam mode ran: its file and sha256, and the distilled student's file and depths
    (None for the full model's own live graph)."""
    live = manifest["classifier"]["webcam"]
    student = live.get("student")
    return {
        "file": live["file"],
        "sha256": manifest["files"][live["file"]]["sha256"],
        "student": {key: student[key] for key in ("file", "depths", "widths") if key in student} if student else None,
    }


def benchmark(site: Path, models: Path, data: Path, seconds: float, warmup: float, repeats: int, rounds: int) -> dict:
    manifest = json.loads((models / "manifest.json").read_text())
    if json.loads((site / "app" / "models" / "manifest.json").read_text()) != manifest:
        raise SystemExit(
            f"{site} was built with other models than {models}: the browser and Python would run different graphs"
        )
    holdout = data / "maskedface-net" / "holdout"
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "vector_extensions": cpu_vector_extensions()},
        "live_graph": live_graph(manifest),
        "rounds": rounds,
        "scenes": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for faces in LAYOUTS:
            frame = scene_frame(faces, holdout)
            video = Path(work) / f"faces-{faces}.y4m"
            write_y4m(video, [frame] * 30, 30)
            measured = []
            for number in range(1, rounds + 1):
                browser = browser_run(site, video, seconds, warmup)
                native = native_run(models, frame, browser["threads"], repeats, browser["min_face_size"])
                ratio = round(browser["frame_ms"] / native["frame_ms"], 2) if browser["frame_ms"] else None
                measured.append({"browser": browser, "native": native, "browser_over_native": ratio})
                print(
                    f"{faces} face(s), round {number}: browser {browser['overlay_fps']} overlay fps, "
                    f"{browser['classifications_per_face']} classifications/s per face, "
                    f"frame {browser['frame_ms']} ms ({browser['threads']} threads); "
                    f"native frame {native['frame_ms']} ms; ratio {ratio}",
                    flush=True,
                )
            result["scenes"][str(faces)] = {"faces": faces, **summarise(measured), "rounds": measured}
    first = result["scenes"]["1"]["browser"]
    for key in ("chromium", "classify_interval_ms", "classify_share", "detect_interval_ms"):
        result[key] = first[key]
    result["tracking"] = manifest["tracking"]
    return result


@dataclass(frozen=True)
class LiveBenchmarkConfig:
    site: str = field(default="build/site", metadata={"help": "built site (scripts/build_site.py)"})
    models: str = "models/onnx"
    data: str = "../shared/data"
    seconds: float = 25.0
    warmup: float = 5.0
    repeats: int = 20
    rounds: int = field(default=3, metadata={"help": "measurements of each scene (medians reported)"})
    out: str = "results/live-benchmark.json"


def main(argv: list[str] | None = None) -> None:
    config = parse_config(LiveBenchmarkConfig, argv, description=__doc__.splitlines()[0])
    payload = benchmark(
        Path(config.site),
        Path(config.models),
        Path(config.data),
        config.seconds,
        config.warmup,
        config.repeats,
        config.rounds,
    )
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
