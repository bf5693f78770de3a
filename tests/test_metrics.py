import numpy as np
import pytest

from training.metrics import confusion_matrix, expected_calibration_error, per_class_scores, reliability_bins


def test_confusion_matrix_and_scores_by_hand():
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predictions = [0, 1, 0, 1, 1, 2, 0, 2, 2]
    matrix = confusion_matrix(np.array(labels), np.array(predictions), 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 3]]
    scores = per_class_scores(matrix, ["a", "b", "c"])
    # a: TP 2, predicted 3, actual 3; b: TP 2, predicted 3, actual 2; c: TP 3, predicted 3, actual 4.
    assert scores["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert scores["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert scores["c"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "support": 4})


def test_empty_class_scores_zero_not_nan():
    scores = per_class_scores(confusion_matrix(np.array([0, 0]), np.array([0, 0]), 2), ["a", "b"])
    assert scores["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    labels = np.array([0, 1, 0, 0])
    # Two bins, (0, .5] and (.5, 1]: all four land in the second, with mean confidence .8 and accuracy .5.
    assert expected_calibration_error(probabilities, labels, bins=2) == pytest.approx(0.3)
    # Four bins: (.5,.75] holds the .65s (one right, one wrong): |.5 - .65| * 2/4; (.75, 1] the .95s: |.5 - .95| * 2/4
    assert expected_calibration_error(probabilities, labels, bins=4) == pytest.approx(0.075 + 0.225)
    rows = reliability_bins(probabilities, labels, bins=4)
    assert [r["count"] for r in rows] == [0, 0, 2, 2]
