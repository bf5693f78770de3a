"""Where a heatmap points, scored: face regions from five landmarks, the pointing game, the energy share, the
baseline maps, and the similarity measures of the randomisation test (``masklens explain``,
``studies.explanations``). Pure functions over arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from masklens.gradcam import upsample_cam

from .answers import rounded
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


@dataclass
class ScoredFace:
    group: str
    file: str
    target_class: int
    crop: np.ndarray  # uint8 [S, S, 3], the crop the classifier saw
    landmarks: np.ndarray  # [5, 2] in crop pixels
    maps: dict[str, np.ndarray]  # layer -> the target class's map [S, S]
    scores: dict = field(default_factory=dict)  # layer -> kind -> {"hit", "energy", "peak"}


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
