"""Where the face finder loses masked faces, and how often it finds them, stock against fine-tuned nets.

    masklens detector-study --stock build/detector --fine-tuned build/detector-masked

``stages``: on ``real-wear/train`` crops (the labelled box is the crop's central part,
``training.detector.central_box``) and ``real-masks/train`` photos (no boxes: any face counts), the stage
at which the face's candidate disappears in the manifest's rule's first pass (padded photo, faces down to
``min_face_size``): no P-Net candidate with IoU >= ``STAGE_IOU`` (``pnet``), none left after R-Net
(``rnet``: its threshold, NMS and regression), none after O-Net (``onet``), or ``found``; then whether the
smaller-face retry and the whole-photo fallback (the full rule) still find it. Only train photos are read.

``found``: the full rule (``masklens.face_finder``) on the test sets, for each model folder: ``real-wear/test``
crops as uploads per class, ``real-wear/test-scenes`` labelled faces per class (matched as
``studies.real_wear.match_faces`` does), ``real-masks/test`` per kind, ``real-photos/test`` per class,
and the false faces on the no-face textures (``studies.detection_study``), also on the half that
``training.detector`` never trains on.

``end_to_end`` (only when asked for, ``--parts end_to_end``): ``masklens eval-real`` with the shipped models,
the face finder's nets replaced by the stock ones and by the fine-tuned ones, without the second look.
The shipped face finder (stock nets, fine-tuned ones as the second look) is the shipped model's own
``metrics-end-to-end.json``.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from masklens.cli import parse_config
from masklens.face_finder import DetectionRule, pad_photo
from masklens.mtcnn import FaceDetector
from masklens.predict import Predictor, open_photo, rule_from_manifest, session_options
from masklens.preprocess import load_rgb
from masklens.tracking import box_iou
from training.detector import TEXTURES, central_box, texture_halves

from .answers import list_images
from .detection_study import SETS as DETECTION_SETS
from .detection_study import count_faces
from .real_eval import RealEvalConfig, evaluate_predictor
from .real_wear import MATCH_IOU, _original_width, match_faces

STAGE_IOU = 0.4
WEAR_CLASSES = ("covered", "incorrect", "uncovered")
MASK_KINDS = ("cloth", "n95", "n95-valve", "surgical")
assert DETECTION_SETS["no-face/textures"] == TEXTURES  # false faces are counted where the detection study does


def _hits(boxes: np.ndarray, box: list[float] | None) -> bool:
    if box is None:
        return len(boxes) > 0
    return any(box_iou(b, box) >= STAGE_IOU for b in boxes)


def lost_at(detector: FaceDetector, rgb: np.ndarray, box: list[float] | None, min_face_size: float) -> str:
    """The cascade stage after which no candidate for the face is left (``found`` when one is)."""
    image = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
    candidates = detector.propose(image, min_face_size)
    if not _hits(candidates, box):
        return "pnet"
    refined = detector.refine(image, candidates)
    if not _hits(refined, box):
        return "rnet"
    if not _hits(detector.output(image, refined)[0], box):
        return "onet"
    return "found"


def stage_counts(detector: FaceDetector, rule: DetectionRule, photos: list[tuple[np.ndarray, list | None]]) -> dict:
    """Per photo the first pass's stage; for those lost, the retry's; and the full rule's outcome."""
    first, retry, rule_found = Counter(), Counter(), 0
    for rgb, box in photos:
        padded, margin = pad_photo(rgb, rule.padding)
        shifted = None if box is None else [v + margin for v in box]
        stage = lost_at(detector, padded, shifted, rule.min_face_size)
        first[stage] += 1
        if stage != "found" and rule.retry_min_face_size is not None:
            retry[lost_at(detector, padded, shifted, rule.retry_min_face_size)] += 1
        faces = rule.find(detector, rgb)
        rule_found += _hits(np.array([f.box for f in faces]).reshape(-1, 4), box)
    return {
        "photos": len(photos),
        "first_pass": dict(sorted(first.items())),
        "retry_of_lost": dict(sorted(retry.items())),
        "found_by_rule": rule_found,
        "not_found_rate": round(1 - rule_found / max(len(photos), 1), 4),
    }


def stage_study(data: Path, models: Path, rule: DetectionRule, threads: int = 0) -> dict:
    detector = rule.detector(models, session_options(threads))
    results = {}
    for name in WEAR_CLASSES:
        photos = []
        for path in list_images(data / "real-wear/train" / name):
            rgb = np.asarray(load_rgb(path))
            photos.append((rgb, central_box(*rgb.shape[:2])))
        results[f"real-wear/train/{name}"] = stage_counts(detector, rule, photos)
    for kind in MASK_KINDS:
        photos = [(np.asarray(load_rgb(p)), None) for p in list_images(data / "real-masks/train" / kind)]
        results[f"real-masks/train/{kind}"] = stage_counts(detector, rule, photos)
    for name, counts in results.items():
        print(name, counts, flush=True)
    return {"rule": asdict(rule), "stage_iou": STAGE_IOU, "sets": results}


def _rate(found: int, total: int) -> dict:
    return {"faces": total, "found": found, "found_rate": round(found / max(total, 1), 4)}


def scene_found(detector: FaceDetector, rule: DetectionRule, root: Path, limits: dict, every: int = 1) -> dict:
    """Labelled faces of the test scenes (every ``every``-th scene) found, per class (studies.real_wear's
    matching), and the detections matched to no labelled face."""
    found, totals, unmatched = Counter(), Counter(), 0
    for scene in json.loads((root / "boxes.json").read_text())[::every]:
        rgb = open_photo(root / scene["image"], limits["max_side"], limits["max_pixels"])
        scale = rgb.shape[1] / _original_width(root / scene["image"])
        detected = [[v / scale for v in face.box] for face in rule.find(detector, rgb)]
        matched = match_faces([face["box"] for face in scene["faces"]], detected)
        unmatched += len(detected) - sum(j is not None for j in matched)
        for face, j in zip(scene["faces"], matched):
            totals[face["label"]] += 1
            found[face["label"]] += j is not None
    return {**{name: _rate(found[name], totals[name]) for name in WEAR_CLASSES}, "unmatched_detections": unmatched}


def found_rates(data: Path, nets: Path, rule: DetectionRule, limits: dict, threads: int = 0, every: int = 1) -> dict:
    """The rule with the nets in ``nets`` on every test set (every ``every``-th photo of each; see the module
    docstring)."""
    detector = rule.detector(nets, session_options(threads))

    def photos(folder: Path) -> list[np.ndarray]:
        return [np.asarray(load_rgb(p)) for p in list_images(folder)[::every]]

    def rate(folder: Path) -> dict:
        counts = count_faces(detector, rule, photos(folder))
        return _rate(counts["found"], counts["photos"])

    result = {
        "real-wear/test crops": {name: rate(data / "real-wear/test" / name) for name in WEAR_CLASSES},
        "real-wear/test-scenes": scene_found(detector, rule, data / "real-wear/test-scenes", limits, every),
        "real-masks/test": {kind: rate(data / "real-masks/test" / kind) for kind in MASK_KINDS},
        "real-photos/test": {name: rate(data / "real-photos/test" / name) for name in ("with_mask", "without_mask")},
    }
    trained_on, held_out = texture_halves(data)  # all of them, whatever ``every`` is: they are few
    result["no-face textures"] = {
        name: count_faces(detector, rule, [np.asarray(load_rgb(p)) for p in paths])
        for name, paths in (("all", trained_on + held_out), ("never trained on", held_out))
    }
    print(nets, json.dumps(result), flush=True)
    return result


def end_to_end(config: DetectorStudyConfig, nets: Path) -> dict:
    """``masklens eval-real`` with the shipped models, the face finder's nets taken from ``nets`` and no
    second look: the shipped classifier behind each set of nets (the shipped face finder's own is
    ``results/<shipped>/metrics-end-to-end.json``)."""
    predictor = Predictor(config.models, config.threads)
    predictor.rule = replace(predictor.rule, second_look=None)
    predictor.detector = predictor.rule.detector(nets, predictor.options)
    return evaluate_predictor(predictor, RealEvalConfig(models=config.models, data=config.data, threads=config.threads))


def _found_rates(args: tuple) -> dict:
    return found_rates(*args)


@dataclass(frozen=True)
class DetectorStudyConfig:
    data: str = "../shared/data"
    models: str = field(default="models/onnx", metadata={"help": "the shipped manifest: the detection rule"})
    stock: str = field(default="build/detector", metadata={"help": "the wheel's nets (masklens export-detector)"})
    fine_tuned: str = field(
        default="build/detector-masked", metadata={"help": "the fine-tuned nets (masklens export-detector --weights)"}
    )
    out: str = "results/detector-finetune.json"
    parts: tuple[str, ...] = field(
        default=("stages", "stock", "fine_tuned"),
        metadata={
            "help": "what to (re)run (stage analysis, found rates per nets, end_to_end: eval-real per nets); "
            "the rest of --out is kept"
        },
    )
    threads: int = 0
    every: int = field(default=1, metadata={"help": "measure found rates on every N-th test photo (1: all)"})
    jobs: int = field(default=2, metadata={"help": "processes: the stock and the fine-tuned nets side by side"})


def run(config: DetectorStudyConfig) -> dict:
    data, stock = Path(config.data), Path(config.stock)
    manifest = json.loads((Path(config.models) / "manifest.json").read_text())
    rule = replace(rule_from_manifest(manifest), second_look=None)  # each set of nets alone
    update: dict = {"rule": asdict(rule), "scenes_match_iou": MATCH_IOU, "every": config.every, "found": {}}
    if "stages" in config.parts:
        update["stages"] = stage_study(data, stock, rule, config.threads)
    nets = {
        name: path for name, path in (("stock", stock), ("fine_tuned", Path(config.fine_tuned))) if name in config.parts
    }
    tasks = [(data, path, rule, manifest["input_limits"], config.threads, config.every) for path in nets.values()]
    if tasks:
        with multiprocessing.Pool(min(config.jobs, len(tasks))) as pool:
            update["found"] = dict(zip(nets, pool.map(_found_rates, tasks)))
    if "end_to_end" in config.parts:
        update["end_to_end"] = {
            name: end_to_end(config, path) for name, path in (("stock", stock), ("fine_tuned", Path(config.fine_tuned)))
        }
    # Read last, so that parts run side by side in separate processes all land in the file.
    out = Path(config.out)
    payload = json.loads(out.read_text()) if out.exists() else {}
    if payload.get("every", config.every) != config.every:
        raise SystemExit(
            f"{out} measured every {payload['every']}-th photo; run every part with --every {config.every}"
        )
    payload = {**payload, **update, "found": {**payload.get("found", {}), **update["found"]}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return payload


def main(argv: list[str] | None = None) -> None:
    run(parse_config(DetectorStudyConfig, argv, description=__doc__.splitlines()[0]))
