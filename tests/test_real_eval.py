"""The end-to-end report's pieces (studies.real_eval) on hand-made answers: each rate with its 95% Wilson
interval, each set's answers per class (its confusion)."""

import numpy as np
import pytest

from studies.real_eval import confusion_report, mask_folder, mask_kind
from studies.real_wear import wilson_interval

CLASSES = ["covered", "incorrect", "uncovered"]


def answers(*classes: str | None) -> list[dict]:
    """``answer``'s dicts: one face with that class, or no face for None."""
    return [{"faces": 0, "class": None} if c is None else {"faces": 1, "class": c} for c in classes]


def test_a_mask_folder_scores_the_faces_found_with_their_intervals_and_answers_per_class():
    folder = mask_folder(answers("covered", "incorrect", "uncovered", None, "covered"), True, CLASSES)
    assert (folder["photos"], folder["found"], folder["right"]) == (5, 4, 3)
    assert folder["accuracy_of_found"] == 0.75
    assert folder["accuracy_of_found_interval"] == wilson_interval(3, 4)
    assert folder["found_rate_interval"] == wilson_interval(4, 5)
    assert folder["classes"] == {"covered": 2, "incorrect": 1, "uncovered": 1}  # sums to the faces found
    bare = mask_folder(answers("uncovered", "covered"), False, CLASSES)
    assert bare["right"] == 1 and bare["classes"] == {"covered": 1, "incorrect": 0, "uncovered": 1}


def test_a_mask_kind_gives_the_masked_and_found_rates_with_their_intervals():
    kind = mask_kind(answers("covered", "incorrect", "uncovered", None, None, "covered"), CLASSES)
    assert (kind["found"], kind["masked"], kind["masked_rate"]) == (4, 3, 0.75)
    assert kind["masked_rate_interval"] == wilson_interval(3, 4)
    assert kind["found_rate_interval"] == wilson_interval(4, 6)
    lo, hi = kind["masked_rate_interval"]
    assert lo < kind["masked_rate"] < hi
    assert kind["classes"] == {"covered": 2, "incorrect": 1, "uncovered": 1}
    # Nothing found: no rate to speak of, and the interval says so (all of [0, 1]).
    assert mask_kind(answers(None), CLASSES)["masked_rate_interval"] == [0.0, 1.0]


def test_the_confusion_report_gives_recall_per_class_with_its_interval():
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    report = confusion_report(CLASSES, confusion)
    assert report["confusion"] == confusion.tolist()
    assert report["recall"] == {"covered": 0.8, "incorrect": 0.75, "uncovered": 0.0}
    assert report["recall_interval"]["covered"] == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert report["recall_interval"]["incorrect"] == wilson_interval(3, 4)
    assert report["recall_interval"]["uncovered"] == [0.0, 1.0]  # no frame of the class found
    assert report["balanced_accuracy"] == pytest.approx((0.8 + 0.75 + 0.0) / 3, abs=1e-4)
