"""How often the face finder finds a face in real photos, for several detection rules.

    masklens detection-study --data ../shared/data --models models/onnx --out results/detection.json

Masked faces are hard for MTCNN (trained before masks were common), and many photos are already
tight face crops, which its pyramid cannot find. Each rule (``RULES``) sets the cascade thresholds,
the smallest face looked for (and a second look for smaller ones when none is found), the padding added
around the photo and the whole-photo fallback (``masklens.mtcnn.find_faces``); each
is run on every photo of the real test sets and of the no-face pictures (cloth textures), and
the JSON gives, per rule and set: ``photos``, ``found`` (photos with at least one face),
``found_rate``, ``several`` (photos with more than one face) and ``faces`` (faces in all). The rule
the export ships is the manifest's ``face_detector``; this file is the evidence for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from masklens.cli import parse_config
from masklens.face_finder import DetectionRule
from masklens.mtcnn import FaceDetector
from masklens.predict import session_options
from masklens.preprocess import load_rgb

from .answers import list_images

RULES = {
    "facenet_default": DetectionRule(),
    "padded": DetectionRule(padding=0.3),
    "padded_low_thresholds": DetectionRule(thresholds=(0.5, 0.6, 0.6), padding=0.3),
    "padded_low_thresholds_fallback_0.5": DetectionRule(
        thresholds=(0.5, 0.6, 0.6), padding=0.3, fallback_threshold=0.5
    ),
    "padded_low_thresholds_fallback_0.2": DetectionRule(
        thresholds=(0.5, 0.6, 0.6), padding=0.3, fallback_threshold=0.2
    ),
    "padded_low_thresholds_fallback_0.2_min_face_12": DetectionRule(
        thresholds=(0.5, 0.6, 0.6), padding=0.3, fallback_threshold=0.2, min_face_size=12.0
    ),
    "padded_low_thresholds_retry_12_fallback_0.2": DetectionRule(
        thresholds=(0.5, 0.6, 0.6), padding=0.3, fallback_threshold=0.2, retry_min_face_size=12.0
    ),
}

SETS = {
    "real-photos/with_mask": "real-photos/test/with_mask",
    "real-photos/without_mask": "real-photos/test/without_mask",
    "real-masks/cloth": "real-masks/test/cloth",
    "real-masks/n95": "real-masks/test/n95",
    "real-masks/n95-valve": "real-masks/test/n95-valve",
    "real-masks/surgical": "real-masks/test/surgical",
    "no-face/textures": "mask-templates/textures",
}


def count_faces(detector: FaceDetector, rule: DetectionRule, photos: list[np.ndarray]) -> dict:
    counts = [len(rule.find(detector, rgb)) for rgb in photos]
    found = sum(c > 0 for c in counts)
    return {
        "photos": len(counts),
        "found": found,
        "found_rate": round(found / max(len(counts), 1), 4),
        "several": sum(c > 1 for c in counts),
        "faces": sum(counts),
    }


def study(data: Path, models: Path, rules: dict[str, DetectionRule], threads: int = 0) -> dict:
    options = session_options(threads)
    photos = {
        name: [np.asarray(load_rgb(p)) for p in list_images(data / folder, recursive=True)]
        for name, folder in SETS.items()
    }
    results = {}
    for rule_name, rule in rules.items():
        detector = rule.detector(models, options)
        results[rule_name] = {
            "rule": asdict(rule),
            "sets": {name: count_faces(detector, rule, images) for name, images in photos.items()},
        }
        print(rule_name, {name: s["found_rate"] for name, s in results[rule_name]["sets"].items()}, flush=True)
    return {"rules": results, "sets": SETS}


@dataclass(frozen=True)
class DetectionStudyConfig:
    data: str = "../shared/data"
    models: str = "models/onnx"
    out: str = "results/detection.json"
    rules: tuple[str, ...] = field(default=tuple(RULES), metadata={"help": "names of RULES to run"})
    threads: int = 0
    keep: bool = field(
        default=False, metadata={"help": "keep the other rules' results already in --out (same sets), run only --rules"}
    )


def run(config: DetectionStudyConfig) -> dict:
    rules = {name: RULES[name] for name in config.rules}
    payload = study(Path(config.data), Path(config.models), rules, config.threads)
    out = Path(config.out)
    if config.keep and out.exists():
        previous = json.loads(out.read_text())
        if previous["sets"] != payload["sets"]:
            raise SystemExit(f"{out} measured other sets; run every rule instead of --keep")
        merged = {**previous["rules"], **payload["rules"]}
        payload["rules"] = {name: merged[name] for name in RULES if name in merged}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return payload


def main(argv: list[str] | None = None) -> None:
    run(parse_config(DetectionStudyConfig, argv, description=__doc__.splitlines()[0]))
