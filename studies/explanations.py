"""Can you trust the heatmap? ``masklens explain``: checks of the exported graphs' Grad-CAM maps.

    masklens explain                      the full holdout split, the shipped graphs and checkpoint

Every face goes through the ONNX predictor as an upload (the face finder, the crop the site makes, both
target layers' maps), so what is measured is what the browser draws. Four measures:

1. Pointing game per reason: from the face finder's five landmarks, the regions nose, mouth and chin
   (``face_regions``); the peak of the true class's map should fall where the reason says the face is
   uncovered (nose for ``_Mask_Mouth_Chin``, chin for ``_Mask_Nose_Mouth``, nose or mouth for
   ``_Mask_Chin``), on the mask (nose, mouth or chin) for a covered face, and on the part a mask would
   cover for an uncovered one. A hit rate with a 95% Wilson interval, and the energy share (the map's mass
   inside the region, stricter than one peak), against a Gaussian on the centre of the face and a random
   map of the layer's resolution.
2. Faithfulness: pytorch-grad-cam's ROAD (most-relevant-first, least-relevant-first, and ROADCombined's
   combination) and the confidence change when the input is multiplied by the map
   (``CamMultImageConfidenceChange``), for our maps against a random map and a centred Gaussian, scored
   by the shipped checkpoint in torch (the network the graphs were exported from, checked by its sha256).
3. The model-parameter randomisation test (Adebayo et al., 2018): the checkpoint's layers are randomised
   from the top down, cascading, and the maps of each step are compared with the trained model's
   (Spearman rank correlation and SSIM); a map that does not change explains the image, not the model.
4. The pointing game on the real ``real-wear/test/incorrect`` faces (no reason labelled there: where the
   peak falls). Only aggregates are written: those images are never published.

The torch measures (2, 3) run on ``probe_per_class`` faces per class, evenly spaced in name order: the
ROAD imputation solves a sparse system per image and percentile, too slow for the whole split on a CPU.

Writes ``results/explanations.json`` and ``results/figures/explanations-*.png`` (MaskedFace-Net faces only).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from masklens.cli import parse_config
from masklens.files import sha256_of, write_json
from masklens.framing import face_size
from masklens.gradcam import overlay_heatmap, upsample_cam
from masklens.labels import CLASSES
from masklens.predict import FaceResult, Predictor, normalize_crops, open_photo

from .answers import list_images, rounded
from .gallery import groups
from .real_wear import wilson_interval

REGIONS: tuple[str, ...] = ("nose", "mouth", "chin")
ELSEWHERE = "elsewhere"

# Per holdout group: the class whose map is scored, and the regions its peak should fall in.
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "covered": ("covered", REGIONS),  # on the mask
    "incorrect-nose": ("incorrect", ("nose",)),
    "incorrect-chin": ("incorrect", ("chin",)),
    "incorrect-nose_and_mouth": ("incorrect", ("nose", "mouth")),
    "uncovered": ("uncovered", REGIONS),  # where a mask would be
}

# Region bounds along the face's vertical axis, in units of the face's own landmark distances (see
# face_regions): the nose starts a quarter of the way from the eye line to the nose tip (below the
# eyes, so that a peak between the eyes is not a nose), and ends, like the mouth's top, halfway from
# the nose tip to the mouth line; the lips end half a nose-to-mouth distance below the mouth line.
NOSE_TOP = 0.25
LIP_HALF = 0.5
# Rule of facial thirds: the mouth line lies a third of the way from the base of the nose to the bottom
# of the chin, so the chin ends two nose-to-mouth distances below the mouth line.
CHIN_BOTTOM = 2.0
NOSE_HALF_WIDTH = 0.3  # of the distance between the eyes: the nose's width is about the eyes' inner gap
MOUTH_MARGIN = 0.15  # of the distance between the eyes, beyond each mouth corner (mouth and chin width)

PEAK_TOLERANCE = 1e-6  # map values this close to the maximum are the peak (upsampled maps have plateaus)
TIE_JITTER = 1e-6  # breaks ties in the maps given to ROAD, see faithfulness()

# Top-down order of the cascading randomisation: the heads, then the trunk's stages from block8 down.
CASCADE: tuple[str, ...] = (
    "head",
    "block8",
    "repeat_3",
    "mixed_7a",
    "repeat_2",
    "mixed_6a",
    "repeat_1",
    "conv2d_4b",
    "conv2d_4a",
    "conv2d_3b",
    "conv2d_2b",
    "conv2d_2a",
    "conv2d_1a",
)
HEAD_MODULES = ("last_linear", "last_bn", "logits")

FIGURES = {
    "regions": "explanations-regions.png",
    "pointing": "explanations-pointing.png",
    "randomisation": "explanations-randomisation.png",
    "worst": "explanations-worst.png",
}


@dataclass(frozen=True)
class ExplainConfig:
    models: str = field(default="models/onnx", metadata={"help": "folder with manifest.json and the ONNX files"})
    checkpoint: str = field(
        default="",
        metadata={
            "help": "the exported network's checkpoint for the torch measures; empty: the manifest's, in models/"
        },
    )
    data_root: str = "../shared/data/maskedface-net"
    split: str = "holdout"
    real_wear: str = field(
        default="../shared/data/real-wear/test/incorrect",
        metadata={"help": "real incorrectly worn faces (aggregates only are written); empty: skip"},
    )
    out: str = "results/explanations.json"
    figures_dir: str = "results/figures"
    per_group: int = field(default=0, metadata={"help": "faces per holdout group, evenly spaced; 0: all"})
    probe_per_class: int = field(
        default=12, metadata={"help": "faces per class, evenly spaced, for ROAD, confidence change, randomisation"}
    )
    road_percentiles: tuple[int, ...] = (20, 40, 60, 80)
    goal_hit_rate: float = field(default=0.9, metadata={"help": "the pointing-game goal for each incorrect reason"})
    worst_per_group: int = 2
    seed: int = 0
    threads: int = field(default=0, metadata={"help": "onnxruntime threads; 0 lets onnxruntime choose"})
    # torch's thread pool waits by spinning: on a busy 2-core machine, Grad-CAM of the checkpoint ran 2.5x
    # faster on one thread than on two.
    torch_threads: int = 1


# --- regions and scores ---------------------------------------------------------------------------------


def face_regions(landmarks: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Boolean masks [size, size] of the nose, mouth and chin from MTCNN's five landmarks (x, y of both
    eyes, the nose tip and both mouth corners) in pixels of a size x size crop.

    The face's own axes: down runs from the midpoint of the eyes to the midpoint of the mouth corners,
    across is perpendicular to it, so a tilted head gets tilted regions. Along down, with the eye line
    at 0, the nose tip at n and the mouth line at m (lip = m - n): the nose runs from NOSE_TOP * n to
    n + LIP_HALF * lip, the mouth from there to m + LIP_HALF * lip, the chin from there to
    m + CHIN_BOTTOM * lip (the chin is not a landmark: it is estimated by the rule of facial thirds).
    Across, the nose is NOSE_HALF_WIDTH eye distances either side of a line from the eyes' midpoint to
    the nose tip (a turned head's nose runs askew); the mouth and chin reach MOUTH_MARGIN eye distances
    past the mouth corners. The three regions do not overlap.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    eye_mid, mouth_mid = landmarks[:2].mean(axis=0), landmarks[3:].mean(axis=0)
    height = max(float(np.linalg.norm(mouth_mid - eye_mid)), 1e-6)
    down = (mouth_mid - eye_mid) / height
    across = np.array([down[1], -down[0]])
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    nose_down = float((landmarks[2] - eye_mid) @ down)
    nose_across = float((landmarks[2] - eye_mid) @ across)
    # A nose tip found at or below the mouth line (a mask drawn over it can mislead MTCNN) would give
    # the lips no height: keep them at least a fifth of the face's eye-to-mouth height.
    lip = max(height - nose_down, 0.2 * height)
    nose_down = min(nose_down, height - lip)
    mouth_half_width = float(np.linalg.norm(landmarks[4] - landmarks[3])) / 2 + MOUTH_MARGIN * eye_distance

    ys, xs = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    relative = np.stack([xs - eye_mid[0], ys - eye_mid[1]], axis=-1)
    along, side = relative @ down, relative @ across
    nose_line = nose_across * np.clip(along / max(nose_down, 1e-6), 0, 1)
    nose_bottom = nose_down + LIP_HALF * lip
    mouth_bottom = height + LIP_HALF * lip
    return {
        "nose": (along >= NOSE_TOP * nose_down)
        & (along < nose_bottom)
        & (np.abs(side - nose_line) <= NOSE_HALF_WIDTH * eye_distance),
        "mouth": (along >= nose_bottom) & (along < mouth_bottom) & (np.abs(side) <= mouth_half_width),
        "chin": (along >= mouth_bottom) & (along <= height + CHIN_BOTTOM * lip) & (np.abs(side) <= mouth_half_width),
    }


def peak_pixels(cam: np.ndarray) -> np.ndarray:
    """The pixels at the map's maximum (a flat map's peak is everywhere: it points nowhere)."""
    return cam >= cam.max() - PEAK_TOLERANCE


def peak_share(cam: np.ndarray, region: np.ndarray) -> float:
    """The share of the map's peak pixels inside the region."""
    peak = peak_pixels(cam)
    return float((peak & region).sum() / peak.sum())


def pointing_hit(cam: np.ndarray, region: np.ndarray) -> bool:
    """The pointing game: the peak lies in the region. When several pixels tie for the peak (the
    plateaus of an upsampled map, or two equal maxima), most of them must lie in it."""
    return peak_share(cam, region) > 0.5


def peak_region(cam: np.ndarray, regions: dict[str, np.ndarray]) -> str:
    """The region (or ELSEWHERE) that holds most of the map's peak pixels."""
    peak = peak_pixels(cam)
    counts = {name: int((peak & mask).sum()) for name, mask in regions.items()}
    counts[ELSEWHERE] = int(peak.sum()) - sum(counts.values())
    return max(counts, key=counts.get)


def energy_share(cam: np.ndarray, region: np.ndarray) -> float:
    """The share of the map's mass inside the region (0 for an all-zero map, which shows nothing)."""
    total = float(cam.sum())
    return float(cam[region].sum()) / total if total > 0 else 0.0


def union(regions: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    return np.logical_or.reduce([regions[name] for name in names])


def face_centre_map(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Baseline: a Gaussian on the mean of the five landmarks, as wide as half the eye-to-mouth height."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    centre = landmarks.mean(axis=0)
    sigma = 0.5 * float(np.linalg.norm(landmarks[3:].mean(axis=0) - landmarks[:2].mean(axis=0)))
    return gaussian_map(centre, max(sigma, 1.0), size)


def centred_gaussian(size: int) -> np.ndarray:
    """Baseline for faithfulness: a Gaussian on the crop's centre, sigma a quarter of its side."""
    return gaussian_map(np.array([size / 2, size / 2]), size / 4, size)


def gaussian_map(centre: np.ndarray, sigma: float, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    squared = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2
    return np.exp(-squared / (2 * sigma**2)).astype(np.float32)


def random_map(rng: np.random.Generator, coarse_shape: tuple[int, int], size: int) -> np.ndarray:
    """Baseline: uniform noise at the layer's resolution, upsampled as its Grad-CAM maps are."""
    return upsample_cam(rng.random((1, *coarse_shape), dtype=np.float32), size)[0]


def rate(hits: list[bool]) -> dict:
    """Hit count, rate and its 95% Wilson interval."""
    count = int(sum(hits))
    return {
        "hits": count,
        "faces": len(hits),
        "rate": rounded(count / max(len(hits), 1)),
        "interval": wilson_interval(count, len(hits)),
    }


def mean_interval(values) -> dict:
    """Mean and its normal-approximation 95% interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, "interval": None, "n": 0}
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    mean = float(values.mean())
    return {"mean": rounded(mean), "interval": [rounded(mean - half), rounded(mean + half)], "n": len(values)}


# --- image similarity for the randomisation test --------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (NaN when either is constant: it has no ranks to compare)."""
    from scipy.stats import rankdata

    ranks_a, ranks_b = rankdata(a.ravel()), rankdata(b.ravel())
    if ranks_a.std() == 0 or ranks_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structural similarity of two maps in [0, 1] (Wang et al. 2004: Gaussian window of sigma 1.5,
    K1 0.01, K2 0.03, data range 1), as scikit-image's structural_similarity with gaussian_weights."""
    from scipy.ndimage import gaussian_filter

    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = lambda x: gaussian_filter(x, sigma, truncate=3.5)
    mean_a, mean_b = blur(a), blur(b)
    var_a = blur(a * a) - mean_a**2
    var_b = blur(b * b) - mean_b**2
    covariance = blur(a * b) - mean_a * mean_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def unchanged_steps(steps: list[dict]) -> list[int]:
    """The cascade steps (0-based) whose maps are not clearly unlike the trained model's: the 95% interval
    of the mean similarity reaches 1, the trained map's similarity to itself. A map that ignores the
    weights stays at 1 at every step. A step whose maps all went constant (no ranks: no mean) changed."""
    return [i for i, step in enumerate(steps) if step["mean"] is not None and step["interval"][1] >= 1 - 1e-9]


def steps_without_fall(similarities: list[float]) -> list[int]:
    """The cascade steps (0-based) whose mean similarity to the trained model's map is not below the
    step before (the first step is compared with 1, the trained map's similarity to itself): after the
    similarity has reached its floor, later steps cannot lower it further."""
    previous = [1.0, *similarities[:-1]]
    return [i for i, (now, before) in enumerate(zip(similarities, previous)) if not now < before]


# --- the faces -----------------------------------------------------------------------------------------


@dataclass
class ScoredFace:
    group: str
    file: str
    target_class: int
    crop: np.ndarray  # uint8 [S, S, 3], the crop the classifier saw
    landmarks: np.ndarray  # [5, 2] in crop pixels
    maps: dict[str, np.ndarray]  # layer -> the target class's map [S, S]
    scores: dict = field(default_factory=dict)  # layer -> kind -> {"hit", "energy", "peak"}


def largest_face(predictor: Predictor, path: Path) -> FaceResult | None:
    limits = predictor.manifest["input_limits"]
    faces = predictor.predict_photo(open_photo(path, limits["max_side"], limits["max_pixels"]))
    return max(faces, key=lambda face: face_size(face.box)) if faces else None


def landmarks_in_crop(face: FaceResult) -> np.ndarray:
    """The face's landmarks from photo pixels to pixels of its crop."""
    x1, y1, x2, _ = face.crop_box
    scale = face.crop.shape[0] / (x2 - x1)
    return (np.asarray(face.landmarks, dtype=np.float64) - [x1, y1]) * scale


def score_face(face: ScoredFace, targets: tuple[str, ...], coarse_shapes: dict[str, tuple[int, int]], rng) -> None:
    size = face.crop.shape[0]
    regions = face_regions(face.landmarks, size)
    target = union(regions, targets)
    centre = face_centre_map(face.landmarks, size)
    for layer, cam in face.maps.items():
        kinds = {"gradcam": cam, "face_centre": centre, "random": random_map(rng, coarse_shapes[layer], size)}
        face.scores[layer] = {
            kind: {
                "hit": pointing_hit(kind_map, target),
                "energy": energy_share(kind_map, target),
                "peak": peak_region(kind_map, regions),
            }
            for kind, kind_map in kinds.items()
        }


def evenly_spaced(items: list, count: int) -> list:
    if not count or len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def collect_faces(predictor: Predictor, config: ExplainConfig) -> tuple[list[ScoredFace], dict]:
    """The holdout faces the face finder finds, with their maps, scored; and the counts per group."""
    from training.data import index_split

    index = index_split(config.data_root, config.split)
    size = predictor.preprocessing["size"]
    coarse_shapes = {layer: tuple(shape) for layer, shape in predictor.manifest["classifier"]["maps"].items()}
    rng = np.random.default_rng(config.seed)
    faces, counts = [], {}
    for group, samples in groups(index).items():
        class_name, targets = TARGETS[group]
        chosen = evenly_spaced(samples, config.per_group)
        found = 0
        for sample in tqdm(chosen, desc=group, leave=False, dynamic_ncols=True, mininterval=5.0):
            result = largest_face(predictor, sample.path)
            if result is None:
                continue
            found += 1
            k = CLASSES.index(class_name)
            face = ScoredFace(
                group=group,
                file=sample.path.name,
                target_class=k,
                crop=result.crop,
                landmarks=landmarks_in_crop(result),
                maps={layer: upsample_cam(maps[k][None], size)[0] for layer, maps in result.coarse_maps.items()},
            )
            score_face(face, targets, coarse_shapes, rng)
            faces.append(face)
        counts[group] = {"images": len(chosen), "found": found}
    return faces, counts


def pointing_report(faces: list[ScoredFace], layers: list[str]) -> dict:
    report = {}
    for group, (class_name, targets) in TARGETS.items():
        members = [f for f in faces if f.group == group]
        if not members:
            continue
        size = members[0].crop.shape[0]
        areas = [float(union(face_regions(f.landmarks, size), targets).mean()) for f in members]
        report[group] = {
            "class": class_name,
            "target": list(targets),
            "faces": len(members),
            "target_area": mean_interval(areas),  # a uniform map's energy share
            "layers": {
                layer: {
                    kind: {
                        "hit": rate([f.scores[layer][kind]["hit"] for f in members]),
                        "energy": mean_interval([f.scores[layer][kind]["energy"] for f in members]),
                        "peak_regions": {
                            name: rounded(np.mean([f.scores[layer][kind]["peak"] == name for f in members]))
                            for name in (*REGIONS, ELSEWHERE)
                        },
                    }
                    for kind in ("gradcam", "face_centre", "random")
                }
                for layer in layers
            },
        }
    return report


# --- torch: faithfulness and randomisation --------------------------------------------------------------


def load_network(config: ExplainConfig, manifest: dict, models: Path):
    """The checkpoint the graphs were exported from (its sha256 must be the manifest's), in eval mode."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    shipped = manifest["checkpoint"]
    path = Path(config.checkpoint) if config.checkpoint else models.parent / shipped["file"]
    if sha256_of(path) != shipped["sha256"]:
        raise SystemExit(f"{path} is not the checkpoint {models}/manifest.json was exported from (sha256 differs)")
    return model_from_checkpoint(load_checkpoint(path))


def logits_only(model):
    """The classifier as pytorch-grad-cam calls it: one logits tensor (the reason head's output left out)."""
    from torch import nn

    class LogitsOnly(nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            return self.network(x)[0]

    return LogitsOnly(model).eval()


def faithfulness(
    model, inputs, classes: np.ndarray, maps: dict[str, np.ndarray], percentiles: tuple[int, ...], seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Per map kind (maps: kind -> [N, S, S]), per image: ROAD most-relevant-first and least-relevant-first
    averaged over ``percentiles`` (the two averagers ROADCombined holds), their combination as ROADCombined
    forms it ((LeRF - MoRF) / 2: higher is more faithful), and the confidence change when the input is
    multiplied by the map (higher: the map keeps what the class needs). Scores are the softmax of the
    target class. ROAD removes the pixels above a percentile of the map with a strict ``<``, so a map that is
    zero on more than p% of the image would lose every pixel at p: ties are broken by a TIE_JITTER of noise,
    the same for every kind. The imputation noise is reseeded per kind, so kinds are compared on equal draws.
    """
    import torch
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    network = logits_only(model)
    targets = [ClassifierOutputSoftmaxTarget(int(k)) for k in classes]
    jitter = np.random.default_rng(seed).uniform(0, TIE_JITTER, next(iter(maps.values())).shape).astype(np.float32)
    road = ROADCombined(percentiles=list(percentiles))
    results = {}
    for kind, kind_maps in maps.items():
        cams = (kind_maps + jitter).astype(np.float32)
        torch.manual_seed(seed)
        most = road.morf_averager(inputs, cams, targets, network)
        least = road.lerf_averager(inputs, cams, targets, network)
        change = CamMultImageConfidenceChange()(inputs, cams, targets, network)
        results[kind] = {
            "road_most_relevant_first": np.ravel(most),
            "road_least_relevant_first": np.ravel(least),
            "road_combined": np.ravel((least - most) / 2),
            "confidence_change": np.ravel(change),
        }
    return results


def gradcam_maps(model, inputs, classes: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """pytorch-grad-cam's Grad-CAM of the torch model at each target layer [N, S, S]: what the exported
    graphs compute, and what can be computed for a randomised copy of the network."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    network = logits_only(model)
    targets = [ClassifierOutputTarget(int(k)) for k in classes]
    maps = {}
    for layer in layers:
        with GradCAM(model=network, target_layers=[getattr(model.backbone, layer)]) as cam:
            maps[layer] = cam(input_tensor=inputs, targets=targets).astype(np.float32)
    return maps


def randomise(model, stage: str, generator_seed: int) -> None:
    """Re-initialises the stage's weights (the heads, or one trunk stage) in place, as at construction."""
    import torch

    torch.manual_seed(generator_seed)
    modules = (
        [getattr(model.backbone, name) for name in HEAD_MODULES] + [model.reason_head]
        if stage == "head"
        else [getattr(model.backbone, stage)]
    )
    for module in modules:
        for part in module.modules():
            if hasattr(part, "reset_parameters"):
                part.reset_parameters()


def cascade_similarities(model, inputs, classes: np.ndarray, map_function, layers: list[str], seed: int) -> dict:
    """Randomises ``model`` (a copy) stage by stage along CASCADE; after each step, every image's map
    (``map_function(model, inputs, classes, layers) -> {layer: [N, S, S]}``) is compared with the trained
    model's. Returns {layer: {"spearman": [per step: [per image]], "ssim": [...]}}."""
    import copy

    model = copy.deepcopy(model).eval()
    original = map_function(model, inputs, classes, layers)
    similarities = {layer: {"spearman": [], "ssim": []} for layer in layers}
    for step, stage in enumerate(CASCADE):
        randomise(model, stage, seed + step)
        maps = map_function(model, inputs, classes, layers)
        for layer in layers:
            pairs = list(zip(original[layer], maps[layer]))
            similarities[layer]["spearman"].append([spearman(a, b) for a, b in pairs])
            similarities[layer]["ssim"].append([ssim(a, b) for a, b in pairs])
    return similarities


def randomisation_report(similarities: dict) -> dict:
    report = {}
    for layer, measures in similarities.items():
        report[layer] = {}
        for measure, steps in measures.items():
            per_step = [mean_interval([v for v in values if not np.isnan(v)]) for values in steps]
            means = [s["mean"] if s["mean"] is not None else float("nan") for s in per_step]
            undefined = [int(np.isnan(values).sum()) for values in steps]
            report[layer][measure] = {
                "steps": per_step,
                "undefined": undefined,  # maps with no ranks (constant), left out of that step's mean
                "unchanged_steps": [CASCADE[i] for i in unchanged_steps(per_step)],
                "steps_without_further_fall": [CASCADE[i] for i in steps_without_fall(means)],
            }
    return report


def probe_faces(faces: list[ScoredFace], per_class: int) -> list[ScoredFace]:
    chosen = []
    for k in range(len(CLASSES)):
        chosen.extend(evenly_spaced([f for f in faces if f.target_class == k], per_class))
    return chosen


def torch_measures(config: ExplainConfig, predictor: Predictor, probes: list[ScoredFace]) -> tuple[dict, dict, dict]:
    """Faithfulness per class and layer, the randomisation test, and how far the torch model's Grad-CAM
    lies from the exported graphs' maps (the check that both are one network)."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.torch_threads)
    model = load_network(config, predictor.manifest, Path(config.models))
    inputs = torch.from_numpy(normalize_crops(np.stack([f.crop for f in probes]), predictor.preprocessing))
    classes = np.array([f.target_class for f in probes])
    size = inputs.shape[-1]
    layers = predictor.layers
    coarse_shapes = {layer: tuple(shape) for layer, shape in predictor.manifest["classifier"]["maps"].items()}
    rng = np.random.default_rng(config.seed + 1)

    kinds = {"centred_gaussian": np.repeat(centred_gaussian(size)[None], len(probes), axis=0)}
    for layer in layers:
        kinds[f"gradcam/{layer}"] = np.stack([f.maps[layer] for f in probes])
        kinds[f"random/{layer}"] = np.stack([random_map(rng, coarse_shapes[layer], size) for _ in probes])
    scores = faithfulness(model, inputs, classes, kinds, config.road_percentiles, config.seed)
    per_class = {}
    for k, class_name in enumerate(CLASSES):
        rows = classes == k
        per_class[class_name] = {
            layer: {
                kind: {metric: mean_interval(values[rows]) for metric, values in scores[key].items()}
                for kind, key in (
                    ("gradcam", f"gradcam/{layer}"),
                    ("random", f"random/{layer}"),
                    ("centred_gaussian", "centred_gaussian"),
                )
            }
            for layer in layers
        }
    for face, combined in zip(probes, scores[f"gradcam/{layers[-1]}"]["road_combined"]):
        face.scores["road_combined"] = float(combined)

    torch_maps = gradcam_maps(model, inputs, classes, layers)
    agreement = {layer: rounded(np.abs(torch_maps[layer] - kinds[f"gradcam/{layer}"]).max()) for layer in layers}
    similarities = cascade_similarities(model, inputs, classes, gradcam_maps, layers, config.seed)
    return per_class, randomisation_report(similarities), agreement


# --- real faces ------------------------------------------------------------------------------------------


def real_wear_report(predictor: Predictor, folder: Path) -> dict:
    """Where the incorrect class's peak falls on real incorrectly worn faces (aggregates only)."""
    size = predictor.preprocessing["size"]
    k = CLASSES.index("incorrect")
    files = list_images(folder)
    peaks = {layer: [] for layer in predictor.layers}
    energies = {layer: {name: [] for name in REGIONS} for layer in predictor.layers}
    answered_incorrect = 0
    for path in tqdm(files, desc="real-wear incorrect", leave=False, dynamic_ncols=True, mininterval=5.0):
        result = largest_face(predictor, path)
        if result is None:
            continue
        answered_incorrect += int(result.probabilities.argmax()) == k
        regions = face_regions(landmarks_in_crop(result), size)
        for layer, maps in result.coarse_maps.items():
            cam = upsample_cam(maps[k][None], size)[0]
            peaks[layer].append(peak_region(cam, regions))
            for name in REGIONS:
                energies[layer][name].append(energy_share(cam, regions[name]))
    found = len(next(iter(peaks.values())))
    return {
        "faces": len(files),
        "found": found,
        "answered_incorrect": answered_incorrect,
        "layers": {
            layer: {
                "peak_regions": {name: rate([peak == name for peak in peaks[layer]]) for name in (*REGIONS, ELSEWHERE)},
                "energy": {name: mean_interval(energies[layer][name]) for name in REGIONS},
            }
            for layer in predictor.layers
        },
    }


# --- figures ---------------------------------------------------------------------------------------------

REGION_COLOURS = {"nose": "#ffd400", "mouth": "#00e5ff", "chin": "#ff4fd8"}


def draw_regions(ax, face: ScoredFace) -> None:
    regions = face_regions(face.landmarks, face.crop.shape[0])
    for name, mask in regions.items():
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[REGION_COLOURS[name]], linewidths=1.2)
    ax.scatter(
        face.landmarks[:, 0] - 0.5, face.landmarks[:, 1] - 0.5, s=6, c="white", edgecolors="black", linewidths=0.4
    )


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def regions_figure(faces: list[ScoredFace], path: Path) -> None:
    """The first face of each group with its regions, so a reader can judge the region rule."""
    firsts = [next(f for f in faces if f.group == group) for group in TARGETS if any(f.group == group for f in faces)]
    fig, axes = plt.subplots(1, len(firsts), figsize=(2.3 * len(firsts), 2.6), squeeze=False)
    for ax, face in zip(axes[0], firsts):
        ax.imshow(face.crop)
        draw_regions(ax, face)
        ax.set_title(face.group, fontsize=8)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, label=n) for n, c in REGION_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.05))
    save(fig, path)


def pointing_figure(report: dict, layers: list[str], path: Path) -> None:
    """Hit rate with its interval per group: our maps per layer beside both baselines."""
    groups_ = list(report)
    bars = [(f"Grad-CAM {layer}", layer, "gradcam") for layer in layers] + [
        ("face centre", layers[0], "face_centre"),
        (f"random ({layers[-1]} grid)", layers[-1], "random"),
    ]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for i, (label, layer, kind) in enumerate(bars):
        hits = [report[g]["layers"][layer][kind]["hit"] for g in groups_]
        centres = np.arange(len(groups_)) + (i - (len(bars) - 1) / 2) * width
        values = [h["rate"] for h in hits]
        errors = np.array([[h["rate"] - h["interval"][0], h["interval"][1] - h["rate"]] for h in hits]).T
        ax.bar(centres, values, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(np.arange(len(groups_)), groups_, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pointing-game hit rate")
    ax.legend(fontsize=7, ncol=len(bars), loc="upper center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    save(fig, path)


def randomisation_figure(report: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, measure in zip(axes, ("spearman", "ssim")):
        for layer, measures in report.items():
            steps = measures[measure]["steps"]
            means = [1.0] + [s["mean"] if s["mean"] is not None else np.nan for s in steps]
            ax.plot(range(len(means)), means, marker="o", markersize=3, label=layer)
        ax.set_xticks(range(len(CASCADE) + 1), ["trained", *CASCADE], rotation=60, fontsize=7)
        ax.set_ylabel(f"{measure} to the trained map")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.legend(fontsize=8)
    fig.suptitle("cascading randomisation, from the top down", fontsize=9)
    save(fig, path)


def worst_cases(faces: list[ScoredFace], layers: list[str], per_group: int) -> list[tuple[ScoredFace, str, str]]:
    """Per incorrect reason, the misses whose map puts least mass on the uncovered part (on the finer
    layer), then the probed faces whose finer map ROAD judges least faithful."""
    layer = layers[-1]
    chosen = []
    for group in TARGETS:
        if not group.startswith("incorrect"):
            continue
        misses = [f for f in faces if f.group == group and not f.scores[layer]["gradcam"]["hit"]]
        misses.sort(key=lambda f: f.scores[layer]["gradcam"]["energy"])
        chosen += [(f, layer, "pointing-game miss") for f in misses[:per_group]]
    probed = sorted((f for f in faces if "road_combined" in f.scores), key=lambda f: f.scores["road_combined"])
    chosen += [(f, layer, "least faithful (ROAD)") for f in probed[:per_group]]
    return chosen


def worst_figure(cases, colormap: np.ndarray, image_weight: float, path: Path) -> None:
    columns = max(1, min(4, len(cases)))
    rows = max(1, -(-len(cases) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (face, layer, why) in zip(axes.ravel(), cases):
        ax.imshow(overlay_heatmap(face.crop, face.maps[layer], colormap, image_weight))
        draw_regions(ax, face)
        ax.set_title(f"{why}\n{face.group}, {layer}\n{face.file}", fontsize=6)
    save(fig, path)


# --- the command -----------------------------------------------------------------------------------------


def explain(config: ExplainConfig) -> dict:
    started = time.perf_counter()
    predictor = Predictor(config.models, config.threads)
    layers = predictor.layers
    faces, counts = collect_faces(predictor, config)
    pointing = pointing_report(faces, layers)
    probes = probe_faces(faces, config.probe_per_class)
    faithful, randomisation, agreement = torch_measures(config, predictor, probes)
    real = real_wear_report(predictor, Path(config.real_wear)) if config.real_wear else None

    figures_dir = Path(config.figures_dir)
    regions_figure(faces, figures_dir / FIGURES["regions"])
    pointing_figure(pointing, layers, figures_dir / FIGURES["pointing"])
    randomisation_figure(randomisation, figures_dir / FIGURES["randomisation"])
    cases = worst_cases(faces, layers, config.worst_per_group)
    worst_figure(
        cases, predictor.colormap, predictor.manifest["drawing"]["image_weight"], figures_dir / FIGURES["worst"]
    )

    classifier = predictor.manifest["classifier"]
    payload = {
        "config": asdict(config),
        "models": {
            "classifier": classifier["file"],
            "checkpoint": predictor.manifest["checkpoint"]["file"],
            "sha256": predictor.manifest["checkpoint"]["sha256"],
        },
        "split": config.split,
        "layers": layers,
        "maps": classifier["maps"],
        "goal_hit_rate": config.goal_hit_rate,
        "faces": counts,
        "pointing": pointing,
        "faithfulness": {
            "images_per_class": {c: int(sum(f.target_class == k for f in probes)) for k, c in enumerate(CLASSES)},
            "percentiles": list(config.road_percentiles),
            "per_class": faithful,
        },
        "randomisation": {
            "images": len(probes),
            "cascade": list(CASCADE),
            "layers": randomisation,
            "torch_vs_exported_max_difference": agreement,
        },
        "real_wear": real,
        "worst": [
            {
                "file": face.file,
                "group": face.group,
                "layer": layer,
                "why": why,
                "energy": rounded(face.scores[layer]["gradcam"]["energy"]),
            }
            for face, layer, why in cases
        ],
        "figures": FIGURES,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(config.out, payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ExplainConfig, argv, description=__doc__.splitlines()[0])
    payload = explain(config)
    for group, report in payload["pointing"].items():
        rates = ", ".join(
            f"{layer} {report['layers'][layer]['gradcam']['hit']['rate']:.1%}" for layer in payload["layers"]
        )
        print(f"{group}: pointing-game hit rate {rates} ({report['faces']} faces)")
    print(f"wrote {config.out} in {payload['seconds']:.0f} s")
