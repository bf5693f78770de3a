"""Latency benchmark of the exported graphs in onnxruntime: ``masklens benchmark``.

Writes ``results/benchmark.json``: per-face classifier latency (logits + both Grad-CAM layers, batch 1),
face-detector and whole-pipeline latency on real photos, with 1 and all threads, model sizes from the
manifest, the machine it ran on and, given a built site, what a first and a second visit to the app download
until the first photo's result (``studies.visits``). A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from masklens.cli import parse_config
from masklens.files import IMAGE_SUFFIXES, write_json
from masklens.machine import cpu_name
from masklens.predict import Predictor, open_photo


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
    write_json(config.out, result)
    return result


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
    for threads, timings in result["threads"].items():
        print(
            f"{threads} thread(s): classifier {timings['classifier_per_face']['median_ms']:.1f} ms/face, "
            f"detector {timings['detector_per_photo']['median_ms']:.1f} ms/photo, "
            f"pipeline {timings['pipeline_per_photo']['median_ms']:.1f} ms/photo"
        )
    for name, seen in result.get("visits", {}).items():
        if name != "photo":
            print(f"{name} visit: {seen['bytes'] / 1e6:.2f} MB, first result after {seen['seconds_to_first_result']} s")
