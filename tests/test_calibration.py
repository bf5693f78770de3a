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
