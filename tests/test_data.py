import pytest

from masklens.labels import CLASSES, NO_REASON, REASONS, reason_from_name
from training.data import DatasetLayoutError, index_folder, index_split


@pytest.mark.parametrize(
    "name, reason",
    [
        ("00012_Mask_Mouth_Chin.jpg", "nose"),
        ("00012_Mask_Nose_Mouth.jpg", "chin"),
        ("00012_Mask_Chin.jpg", "nose_and_mouth"),
        ("00012_Mask.jpg", None),
        ("00012.png", None),
    ],
)
def test_reason_from_name(name, reason):
    assert reason_from_name(name) == reason


def test_index_counts_classes_and_reasons(tiny_tree):
    index = index_split(tiny_tree, "train")
    assert index.class_counts() == {c: 4 for c in CLASSES}
    assert index.reason_counts() == {"nose": 2, "chin": 1, "nose_and_mouth": 1}
    assert all(s.reason == NO_REASON for s in index.samples if CLASSES[s.label] != "incorrect")
    assert {REASONS[s.reason] for s in index.samples if CLASSES[s.label] == "incorrect"} == set(REASONS)
    assert index.unreadable == ()


def test_unreadable_files_are_counted_not_fatal(tiny_tree):
    covered = tiny_tree / "train" / "covered"
    (covered / "renamed_pdf_Mask.jpg").write_bytes(b"%PDF-1.4\n" + b"0" * 100)
    (covered / "empty_Mask.jpg").write_bytes(b"")
    good = next(covered.glob("*_Mask.jpg")).read_bytes()
    (covered / "truncated_Mask.jpg").write_bytes(good[: len(good) // 2])
    index = index_split(tiny_tree, "train")
    assert sorted(p.name for p in index.unreadable) == ["empty_Mask.jpg", "renamed_pdf_Mask.jpg", "truncated_Mask.jpg"]
    assert index.class_counts()["covered"] == 4
    assert index.summary()["unreadable"] == sorted(
        f"train/covered/{n}" for n in ("empty_Mask.jpg", "renamed_pdf_Mask.jpg", "truncated_Mask.jpg")
    )


def test_missing_split_is_named(tiny_tree):
    with pytest.raises(DatasetLayoutError, match=r"missing split folder: .*nowhere"):
        index_split(tiny_tree, "nowhere")


def test_missing_class_folder_is_named(tiny_tree):
    (tiny_tree / "holdout" / "incorrect").rename(tiny_tree / "holdout" / "wrong_name")
    with pytest.raises(DatasetLayoutError, match=r"missing class folder: .*holdout/incorrect"):
        index_split(tiny_tree, "holdout")


def test_fingerprint_tracks_membership(tiny_tree):
    before = index_folder(tiny_tree / "train").fingerprint()
    assert before == index_folder(tiny_tree / "train").fingerprint()
    next((tiny_tree / "train" / "uncovered").iterdir()).unlink()
    assert index_folder(tiny_tree / "train").fingerprint() != before
