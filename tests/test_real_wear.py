"""The real-wear report's pieces (studies.real_wear) on hand-made answers and boxes."""

import pytest

from studies.real_wear import class_report, match_faces, wilson_interval

CLASSES = ["covered", "incorrect", "uncovered"]


def test_wilson_interval_matches_the_textbook_values():
    # 8 of 10: the interval statsmodels' proportion_confint(8, 10, method="wilson") gives.
    assert wilson_interval(8, 10) == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == [0.0, 1.0]


def test_class_report_counts_found_faces_and_misses_apart():
    truths = ["covered"] * 4 + ["incorrect"] * 3 + ["uncovered"] * 2
    answers = ["covered", "covered", "incorrect", None, "incorrect", "uncovered", None, "uncovered", "uncovered"]
    report = class_report(CLASSES, truths, answers)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 2]]
    covered, incorrect = report["per_class"]["covered"], report["per_class"]["incorrect"]
    assert covered["found"] == 3 and covered["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert covered["not_found_rate"] == 0.25 and covered["recall_all"] == 0.5
    assert incorrect["recall"] == 0.5 and incorrect["recall_all"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5 + 1) / 3, abs=1e-4)
    assert report["covered_called_incorrect"] == pytest.approx(1 / 3, abs=1e-4)


def test_each_labelled_face_takes_the_detection_it_overlaps_most_once():
    labelled = [[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]]
    detected = [[21, 0, 31, 10], [1, 0, 11, 10], [0, 3, 10, 13], [100, 100, 110, 110]]
    assert match_faces(labelled, detected) == [1, 0, None]
    # Two labelled faces on one detection: the closer one takes it, the other is not found.
    assert match_faces([[0, 0, 10, 10], [2, 0, 12, 10]], [[0, 0, 10, 10]]) == [0, None]
