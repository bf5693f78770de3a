"""The "can't tell" rule (masklens.abstention) and its fit (studies.calibration) on made-up logits."""

import numpy as np
import pytest

from masklens.abstention import TOO_SMALL, UNSURE, AbstentionRule
from studies.calibration import choose_min_probability, expected_calibration_error, fit_temperature


def sampled(temperature: float, faces: int = 4000, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits / temperature): that temperature calibrates them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4, size=(faces, 3)).astype(np.float32)
    probabilities = AbstentionRule(temperature).probabilities(logits)
    labels = np.array([rng.choice(3, p=p / p.sum()) for p in probabilities])
    return logits, labels


def test_the_rule_calibrates_and_abstains():
    rule = AbstentionRule(temperature=2.0, min_probability=0.7, min_face_size=20)
    logits = np.array([[4.0, 0.0, 0.0], [1.0, 0.5, 0.0]], np.float32)
    probabilities = rule.probabilities(logits)
    assert probabilities.sum(1) == pytest.approx([1, 1]) and probabilities.dtype == np.float32
    assert probabilities[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 2), rel=1e-6)
    assert rule.reason(probabilities[0], 40) is None
    assert rule.reason(probabilities[1], 40) == UNSURE
    assert rule.reason(probabilities[0], 19.5) == TOO_SMALL
    assert AbstentionRule.from_manifest({}) == AbstentionRule()
    assert (
        AbstentionRule.from_manifest({"abstention": {"temperature": 2.0, "min_probability": 0.7, "min_face_size": 20}})
        == rule
    )


def test_the_fitted_temperature_is_the_one_that_made_the_labels():
    for temperature in (0.5, 1.0, 2.5):
        logits, labels = sampled(temperature)
        assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.1)


def test_calibration_lowers_the_expected_calibration_error():
    logits, labels = sampled(3.0)
    before, _ = expected_calibration_error(AbstentionRule().probabilities(logits), labels)
    after, bins = expected_calibration_error(
        AbstentionRule(fit_temperature(logits, labels)).probabilities(logits), labels
    )
    assert after < before / 3 and sum(b["faces"] for b in bins) == len(labels)


def test_the_threshold_leaves_at_most_the_allowed_share_unanswered():
    logits, labels = sampled(2.0)
    probabilities = AbstentionRule(2.0).probabilities(logits)
    threshold = choose_min_probability(probabilities, labels, max_abstain=0.1)
    unanswered = (probabilities.max(1) < threshold).mean()
    assert 0 < unanswered <= 0.1 and threshold > probabilities.max(1).min()
    # Unsure answers are the wrong ones more often: leaving them out raises the accuracy.
    answered = probabilities.max(1) >= threshold
    right = probabilities.argmax(1) == labels
    assert right[answered].mean() > right.mean()
    assert choose_min_probability(probabilities, labels, max_abstain=0.0) == 0.0


def test_calibrate_writes_the_rule_into_the_manifest(exported_models, tmp_path):
    """masklens calibrate end to end: held-out faces of a made-up index, and two real-wear/test crops of each
    class (linked from ../shared/data, where the face finder finds faces)."""
    import json
    import shutil

    from masklens.manifest import load_manifest
    from masklens.predict import Predictor
    from studies.calibration import CalibrationConfig, calibrate

    from .conftest import make_image, shared_data_or_skip

    models = shutil.copytree(exported_models, tmp_path / "models")
    faces = tmp_path / "faces"
    entries = []
    for i, label in enumerate(["covered", "incorrect", "uncovered", "masked"] * 3):
        make_image(faces / f"{i}.png", label if label != "masked" else "covered", 10 + i, size=64)
        entries.append({"file": f"{i}.png", "source": "real-wear-x", "photo": f"p{i}", "label": label})
    (faces / "index.json").write_text(json.dumps({"faces": entries}))
    wear = shared_data_or_skip("real-wear", "test")
    real = tmp_path / "data"
    for name in ("covered", "incorrect", "uncovered"):
        (real / "real-wear" / "test" / name).mkdir(parents=True)
        for crop in sorted((wear / name).iterdir())[:2]:
            (real / "real-wear" / "test" / name / crop.name).symlink_to(crop)
    config = CalibrationConfig(
        models=str(models),
        faces_index=str(faces / "index.json"),
        held_out_percent=100,
        data=str(real),
        out=str(tmp_path / "calibration.json"),
        figure=str(tmp_path / "reliability.png"),
        threads=1,
    )
    result = calibrate(config)
    assert result["held_out"]["faces"] == 9 and result["held_out"]["faces_per_class"] == [3, 3, 3]  # no weak labels
    rule = load_manifest(models)["abstention"]
    assert rule == result["rule"] and rule["min_face_size"] == config.min_face_size and rule["temperature"] > 0
    assert json.loads((tmp_path / "calibration.json").read_text()) == result
    assert 0 < result["real-wear/test"]["faces"] <= 6
    assert (tmp_path / "reliability.png").stat().st_size > 0
    predictor = Predictor(models, threads=1)  # the predictor reads the rule back
    assert predictor.abstention.temperature == rule["temperature"]


def test_calibrate_takes_the_faces_the_run_held_out_or_refuses(exported_models, tmp_path):
    """Without --faces-index the rule is fitted on the faces the shipped run held out (its faces_index, cut
    with the framing it trained for); a run that held none out is refused with a clear message."""
    import shutil

    import pytest

    from masklens.manifest import load_manifest
    from studies.calibration import CalibrationConfig, calibrate

    models = shutil.copytree(exported_models, tmp_path / "models")
    assert not load_manifest(models)["checkpoint"]["config"]["real_validation_percent"]
    with pytest.raises(SystemExit, match="held no real faces out"):
        calibrate(CalibrationConfig(models=str(models), out=str(tmp_path / "c.json"), figure=str(tmp_path / "r.png")))
    assert load_manifest(models) == load_manifest(exported_models)  # nothing written
