"""The budgets benchmark: ``masklens benchmark`` (about 10 minutes on 2 cores; ``repeats``,
``browser_repeats``, ``folder_sizes``, ``video_minutes`` and ``train_steps`` cut it down).

Writes ``results/benchmark.json``: per-face classifier latency (logits + both Grad-CAM layers, batch 1),
face-detector and whole-pipeline latency on real photos, with 1 and all threads, model sizes from the
manifest, the machine it ran on and, given a built site, what a first and a second visit to the app download
until the first photo's result (``studies.visits``). Then the budgets, each set against its goal (``GOALS``,
written into the JSON for the Results page):

- ``classifier``: the photo classifier's run per face at batch 1, on 1 and 2 threads, in torch eager (the
  shipped checkpoint, results/shipped.json's preset, through the same Grad-CAM function the export traces),
  in onnxruntime and, given a site, in the browser (``studies.browser_timing``: 1 thread not isolated, 2
  with the service worker's cross-origin isolation); and the compute floor, the graph's matrix work over
  this machine's peak matrix throughput on as many threads (``studies.compute_floor``). Ratios from the
  same run: browser / onnxruntime (goal ≤ 2) and onnxruntime / floor (goal ≤ 3). Given
  ``reference_classifier`` (an earlier release's photo graph), that graph is timed the same way in the same
  isolated page, right after the shipped one: a like-for-like comparison across releases.
- ``photo_to_result``: a 12-megapixel photo (4000 x 3000) of 3 real faces, made at run time from the shared
  data (never stored), from the app's file input to all labels and the first heatmap drawn (goal ≤ 1 s).
- ``memory``: the browser tab's peak on that photo and on a 9000 x 9000 one; ``masklens predict``'s peak
  resident memory (the child's, from wait4) on folders of ``folder_sizes`` photos (copies of the shared
  real photos), which streams and should stay flat in the number of photos; and ``masklens video`` on a
  ``video_minutes`` video of a face at ``video_fps`` frames a second (MPEG-4, made at run time).
- ``training``: images per second of the shipped model's training recipe (``masklens train``'s loop, bf16
  autocast, channels_last, ``train_steps`` steps of its batch on MaskedFace-Net images, its second epoch so
  that warm-up is left out) against the same model and optimiser in a bare loop on random tensors.

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from masklens.cli import parse_config
from masklens.files import IMAGE_SUFFIXES, sha256_of, write_json
from masklens.machine import cpu_name, cpu_vector_extensions
from masklens.predict import Predictor, open_photo, session_options

from .memory_budget import cli_memory

# The budgets' goals, which the Results page sets the measurements against; folder_memory_growth: the
# CLI's peak memory on the largest folder over that on the smallest, flat up to the allocator's noise.
GOALS = {
    "browser_over_native": 2.0,
    "native_over_floor": 3.0,
    "photo_to_result_ms": 1000.0,
    "folder_memory_growth": 1.1,
}
# Real photos in which MTCNN finds one face each (tests/test_browser.py's SEVERAL_FACES): the 12-megapixel
# photo's three faces.
THREE_FACES = ("without_mask_00002.jpg", "without_mask_00006.jpg", "without_mask_00012.jpg")
THREAD_COUNTS = (1, 2)
REFERENCE_FILE = "reference-classifier.onnx"  # --reference-classifier's name in the served models folder


@dataclass(frozen=True)
class BenchmarkConfig:
    models: str = "models/onnx"
    photos: str = field(
        default="../shared/data/real-photos/test/without_mask",
        metadata={"help": "folder of photos for the detector and pipeline timings"},
    )
    site: str = field(
        default="build/site",
        metadata={"help": "built site (scripts/build_site.py) of these models whose visits are measured; '' to skip"},
    )
    photo_count: int = 10
    repeats: int = 20
    data: str = field(default="../shared/data", metadata={"help": "the shared data (photos, MaskedFace-Net)"})
    shipped: str = field(default="results/shipped.json", metadata={"help": "names the shipped preset"})
    checkpoint: str = field(default="", metadata={"help": "torch checkpoint; '' for models/<shipped preset>.pt"})
    browser_repeats: int = field(default=10, metadata={"help": "timed runs of each browser measurement"})
    folder_sizes: tuple[int, ...] = field(
        default=(100, 1000), metadata={"help": "photos per folder for masklens predict's memory; none to skip"}
    )
    video_minutes: float = field(default=10.0, metadata={"help": "video length for masklens video's memory; 0 skips"})
    video_fps: int = 1
    train_steps: int = field(default=4, metadata={"help": "timed training steps (bf16 throughput); 0 skips"})
    train_batch_size: int = field(default=0, metadata={"help": "training batch; 0: the shipped recipe's"})
    reference_classifier: str = field(
        default="",
        metadata={
            "help": "another photo graph with the same input, timed in the browser beside the shipped one, e.g. an "
            "earlier release's (docs: Reproduce); '' skips"
        },
    )
    out: str = "results/benchmark.json"


def _timed(function, repeats: int) -> dict:
    function()  # first run: session warm-up and memory planning
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return {"median_ms": 1000 * statistics.median(seconds), "min_ms": 1000 * min(seconds), "runs": repeats}


def benchmark(config: BenchmarkConfig) -> dict:
    started = time.perf_counter()
    result = pipeline_timings(config)
    models = Path(config.models)
    manifest = json.loads((models / "manifest.json").read_text())
    result["machine"]["vector_extensions"] = cpu_vector_extensions()
    result["goals"] = GOALS
    result["classifier"] = classifier_timings(config, models, manifest)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        photos = {
            "4000x3000": twelve_megapixel_photo(Path(config.data), work / "three-faces-12mp.jpg"),
            "9000x9000": huge_photo(Path(config.data), work / "9000x9000.jpg"),
        }
        if config.site:
            result.update(browser_measurements(config, manifest, photos))
        face = Path(config.data) / "real-photos" / "test" / "without_mask" / THREE_FACES[0]
        result.setdefault("memory", {}).update(cli_memory(config, work, face))
    if config.train_steps:
        result["training"] = training_throughput(config)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(config.out, result)
    return result


def pipeline_timings(config: BenchmarkConfig) -> dict:
    """The photo pipeline in onnxruntime (the ``threads`` section) and, given a site, its visits."""
    photos = sorted(p for p in Path(config.photos).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[
        : config.photo_count
    ]
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "onnxruntime": ort.__version__}, "threads": {}}
    for threads in (1, os.cpu_count() or 1):
        predictor = Predictor(config.models, threads=threads)
        size = predictor.preprocessing["size"]
        crop = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        limits = predictor.manifest["input_limits"]
        rgbs = [open_photo(p, limits["max_side"], limits["max_pixels"]) for p in photos]
        faces = sum(len(predictor.rule.find(predictor.detector, rgb)) for rgb in rgbs)
        per_photo_repeats = max(1, config.repeats // max(len(rgbs), 1))
        result["threads"][str(threads)] = {
            "classifier_per_face": _timed(lambda: predictor.predict_crops(crop), config.repeats),
            "detector_per_photo": _timed(
                lambda: [predictor.rule.find(predictor.detector, rgb) for rgb in rgbs], per_photo_repeats
            ),
            "pipeline_per_photo": _timed(lambda: [predictor.predict_photo(rgb) for rgb in rgbs], per_photo_repeats),
            "photos": len(rgbs),
            "faces": faces,
            "mean_photo_pixels": float(np.mean([rgb.shape[0] * rgb.shape[1] for rgb in rgbs])),
        }
        for key in ("detector_per_photo", "pipeline_per_photo"):
            for stat in ("median_ms", "min_ms"):
                result["threads"][str(threads)][key][stat] /= max(len(rgbs), 1)
    result["files"] = {name: entry["bytes"] for name, entry in predictor.manifest["files"].items()}
    result["classifier_weights"] = predictor.manifest["classifier"]["weights"]
    if config.site:
        result["visits"] = site_visits(Path(config.site), predictor.manifest, photos[0])
    return result


def shipped_checkpoint(config: BenchmarkConfig) -> Path:
    if config.checkpoint:
        return Path(config.checkpoint)
    preset = json.loads(Path(config.shipped).read_text())["preset"]
    return Path("models") / f"{preset}.pt"


def classifier_timings(config: BenchmarkConfig, models: Path, manifest: dict) -> dict:
    """Torch eager, onnxruntime and the compute floor per face at batch 1, on each of THREAD_COUNTS."""
    import torch

    from export.classifier import _fold_batch_norms, _gradcam_function
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    from .compute_floor import graph_flops, peak_gflops

    classifier = manifest["classifier"]
    graph = models / classifier["file"]
    size = classifier["preprocessing"]["size"]
    image = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    checkpoint = shipped_checkpoint(config)
    # The export's Grad-CAM function on the model as exported (batch norms folded): the graph's outputs.
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    model.mirror_average = classifier["mirror_average"]
    model = _fold_batch_norms(model)
    gradcam = _gradcam_function(model, classifier["target_layers"])
    flops = graph_flops(graph)
    out = {"checkpoint": str(checkpoint), "graph": classifier["file"], "flops": flops, "threads": {}}
    torch_threads = torch.get_num_threads()
    for threads in THREAD_COUNTS:
        session = ort.InferenceSession(str(graph), session_options(threads), providers=["CPUExecutionProvider"])
        torch.set_num_threads(threads)
        try:
            eager = _timed(lambda: gradcam(torch.from_numpy(image)), config.repeats)
        finally:
            torch.set_num_threads(torch_threads)
        native = _timed(lambda: session.run(None, {classifier["input"]["name"]: image}), config.repeats)
        peak = peak_gflops(threads)
        floor_ms = 1000 * flops / (peak * 1e9)
        out["threads"][str(threads)] = {
            "torch_eager": eager,
            "onnxruntime": native,
            "peak_gflops": peak,
            "floor_ms": floor_ms,
            "onnxruntime_over_floor": native["median_ms"] / floor_ms,
        }
    return out


def twelve_megapixel_photo(data: Path, path: Path) -> Path:
    """A 4000 x 3000 JPEG of THREE_FACES, each 1000 pixels tall, on a soft gradient."""
    y, x = np.mgrid[0:3000:4, 0:4000:4]
    gradient = np.stack([x * 255 // 4000, y * 255 // 3000, np.full_like(x, 140)], axis=-1).astype(np.uint8)
    canvas = Image.fromarray(gradient).resize((4000, 3000), Image.Resampling.BILINEAR)
    for k, name in enumerate(THREE_FACES):
        face = Image.open(data / "real-photos" / "test" / "without_mask" / name).convert("RGB")
        face = face.resize((round(face.width * 1000 / face.height), 1000), Image.Resampling.BICUBIC)
        canvas.paste(face, (250 + 1250 * k, 1000))
    canvas.save(path, quality=90)
    return path


def huge_photo(data: Path, path: Path) -> Path:
    """A 9000 x 9000 JPEG (81 megapixels, under the manifest's limit) with one real face."""
    face = Image.open(data / "real-photos" / "test" / "without_mask" / THREE_FACES[0]).convert("RGB")
    canvas = Image.new("RGB", (9000, 9000), (120, 130, 140))
    canvas.paste(face.resize((round(face.width * 3000 / face.height), 3000), Image.Resampling.BICUBIC), (3000, 3000))
    canvas.save(path, quality=85)
    return path


def browser_measurements(config: BenchmarkConfig, manifest: dict, photos: dict[str, Path]) -> dict:
    """In Chromium: the classifier's run on 1 thread (not isolated) and on the app's threads (isolated),
    a 12-megapixel photo to its result, and the tab's memory on each photo (studies.browser_timing)."""
    from playwright.sync_api import sync_playwright

    from .browser_timing import classifier_run_ms, open_app, photo_to_result, tab_memory
    from .chromium import CHROMIUM, CHROMIUM_ARGS, serving

    browser_classifier, end_to_end, reference = {}, None, None
    if config.reference_classifier:
        shutil.copyfile(config.reference_classifier, Path(config.site) / "app" / "models" / REFERENCE_FILE)
    with serving(Path(config.site)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for workers in ("block", "allow"):
                context = browser.new_context(service_workers=workers)
                try:
                    page, runtime = open_app(context, base)
                    if workers == "allow":
                        page, runtime = open_app(context, base)  # isolated once the service worker runs
                    measured = classifier_run_ms(page, base, manifest, config.browser_repeats)
                    browser_classifier[str(measured["threads"])] = {**measured, "isolated": runtime["isolated"]}
                    if workers == "allow" and config.reference_classifier:
                        reference = {
                            "file": config.reference_classifier,
                            "sha256": sha256_of(config.reference_classifier),
                            "bytes": Path(config.reference_classifier).stat().st_size,
                            **classifier_run_ms(page, base, manifest, config.browser_repeats, REFERENCE_FILE),
                        }
                    if workers == "allow":
                        end_to_end = {
                            **photo_to_result(page, photos["4000x3000"], config.browser_repeats),
                            **runtime,
                            "photo": {"width": 4000, "height": 3000, "faces_pasted": len(THREE_FACES)},
                        }
                finally:
                    context.close()
            memory = {name: tab_memory(playwright, base, photo) for name, photo in photos.items()}
        finally:
            browser.close()
            (Path(config.site) / "app" / "models" / REFERENCE_FILE).unlink(missing_ok=True)
    measured = {"browser_classifier": browser_classifier, "photo_to_result": end_to_end, "memory": {"browser": memory}}
    return {**measured, "browser_classifier_reference": reference} if reference else measured


def training_throughput(config: BenchmarkConfig) -> dict:
    """The shipped checkpoint's training recipe for ``train_steps`` steps a (second, timed) epoch on
    MaskedFace-Net, bf16 autocast and channels_last, against a bare loop of the same model on random tensors."""
    import torch

    from training.checkpoint import load_checkpoint
    from training.config import TrainConfig, preprocessing_for
    from training.losses import compute_loss
    from training.model import Depths, Widths, build_model
    from training.optim import make_optimizer
    from training.scoring import autocast
    from training.train import train

    recipe = load_checkpoint(shipped_checkpoint(config))["config"]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    recipe = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items() if k in fields})
    batch = config.train_batch_size or recipe.batch_size
    with tempfile.TemporaryDirectory() as work:
        # The recipe's model, optimiser, augmentation and loss; its extra data sources (real faces,
        # synthesis, a teacher) need files a fresh machine does not have, and are left out.
        run = dataclasses.replace(
            recipe,
            data_root=str(Path(config.data) / "maskedface-net"),
            out_dir=work,
            epochs=2,
            batch_size=batch,
            max_images=batch * config.train_steps,
            validate=False,
            resume=False,
            init_from="",
            faces_index="",
            synthetic_per_epoch=0,
            teacher="",
            distill_weight=0.0,
            bf16=True,
            channels_last=True,
        )
        checkpoint = load_checkpoint(train(run))
    looped = checkpoint["history"][-1]["images_per_second"]
    model = build_model(
        preprocessing_for(run), dropout=run.dropout, depths=Depths(*run.depths), widths=Widths(*run.widths)
    ).to(memory_format=torch.channels_last)
    model.train()
    optimizer = make_optimizer(model, run)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, run.image_size, run.image_size, generator=generator).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.randint(0, 3, (batch,), generator=generator)
    reasons = torch.randint(0, 3, (batch,), generator=generator)

    def step():
        with autocast(torch.device("cpu"), True):
            outputs = model(images)
        loss = compute_loss(outputs, labels, reasons, run)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    bare = _timed(step, config.train_steps)
    return {
        "checkpoint": str(shipped_checkpoint(config)),
        "image_size": run.image_size,
        "batch_size": batch,
        "depths": list(run.depths),
        "widths": list(run.widths),
        "augment": run.augment,
        "bf16": True,
        "channels_last": True,
        "steps": config.train_steps,
        "torch_threads": torch.get_num_threads(),
        "train_images_per_second": looped,
        "bare_loop_images_per_second": 1000 * batch / bare["median_ms"],
    }


def site_visits(site: Path, manifest: dict, photo: Path) -> dict:
    """``studies.visits``' first and second visit, refused for a site built from other models."""
    import json

    from .visits import measure_visits

    built = site / "app" / "models" / "manifest.json"
    if not built.is_file() or json.loads(built.read_text())["files"] != manifest["files"]:
        raise SystemExit(f"{site} is not a site of these models: build it with scripts/build_site.py --models")
    return measure_visits(site, photo)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(BenchmarkConfig, argv, description=__doc__.splitlines()[0])
    result = benchmark(config)
    print(f"took {result['seconds']:.0f} s")
    for threads, timings in result["threads"].items():
        print(
            f"{threads} thread(s): classifier {timings['classifier_per_face']['median_ms']:.1f} ms/face, "
            f"detector {timings['detector_per_photo']['median_ms']:.1f} ms/photo, "
            f"pipeline {timings['pipeline_per_photo']['median_ms']:.1f} ms/photo"
        )
    for name, seen in result.get("visits", {}).items():
        if name != "photo":
            print(f"{name} visit: {seen['bytes'] / 1e6:.2f} MB, first result after {seen['seconds_to_first_result']} s")
