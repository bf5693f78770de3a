import json
import subprocess
import sys
from collections import defaultdict

import av
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

from masklens.predict import Predictor
from masklens.video import LivePredictor, write_video
from masklens.video import main as video_main
from masklens.y4m import compose, write_y4m

from .conftest import REPO, shared_data_or_skip
from .scenes import PLACES, SCHEDULE, SEGMENT_FRAMES, expected_classes, make_scene, runs

RECORD_FIELDS = {"frame", "time", "track", "box", "class", "probabilities", "reason", "reason_probabilities"}


def portrait(width: int, height: int) -> np.ndarray:
    """Grace Hopper's portrait from matplotlib's sample data: a real face without the shared data."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.asarray(Image.open(path).convert("RGB").resize((width, height)))


def two_faces_video(path, frames: int = 5) -> list[np.ndarray]:
    """A 320 x 240 video at 10 fps: one face moving right by 8 px a frame, one still."""
    face = portrait(96, 112)
    video = [compose((320, 240), [(face, 10 + 8 * i, 40), (face, 200, 90)]) for i in range(frames)]
    write_y4m(path, video, 10)
    return video


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "masklens", "video", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def read_back(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_cli_writes_the_track_log_and_the_annotated_video(exported_models, tmp_path):
    two_faces_video(tmp_path / "in.y4m")
    log, out = tmp_path / "tracks.jsonl", tmp_path / "annotated.mp4"
    result = run_cli(
        str(tmp_path / "in.y4m"),
        "--models",
        str(exported_models),
        "--log",
        str(log),
        "--out",
        str(out),
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stderr  # the progress bar, with the frame count y4m gives through its duration
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for record in records:
        assert set(record) == RECORD_FIELDS
        assert record["time"] == pytest.approx(record["frame"] / 10)
        assert record["class"] in record["probabilities"] and len(record["box"]) == 4
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert (record["reason"] is None) == (record["class"] != "incorrect")
    # One track per face, ids stable: the moving face's boxes move right, the still face's stay put.
    boxes = defaultdict(list)
    for record in records:
        boxes[record["track"]].append(record["box"])
    assert sorted(boxes) == [1, 2]
    moving, still = sorted(boxes.values(), key=lambda track: track[0][0])
    assert all(b[0] > a[0] for a, b in zip(moving, moving[1:]))
    assert max(b[0] for b in still) - min(b[0] for b in still) < 2
    frames = read_back(out)
    assert len(frames) == 5 and frames[0].shape == (240, 320, 3)
    assert not list(tmp_path.glob(".*"))  # no partial files left


def test_live_predictor_labels_only_the_faces_of_the_frame(exported_models):
    live = LivePredictor(exported_models, threads=1)
    face = portrait(96, 112)
    seen = live.step(compose((320, 240), [(face, 10, 40)]))
    assert [track.id for track in seen] == [1] and seen[0].label["class"] in live.predictor.classes
    assert live.step(np.full((240, 320, 3), 128, np.uint8)) == []  # the track is kept, but not seen
    assert [track.missed for track in live.tracker.tracks] == [1]
    assert [track.id for track in live.step(compose((320, 240), [(face, 14, 40)]))] == [1]


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".y4m"])
def test_annotated_video_formats_keep_frames_and_pad_odd_sides(tmp_path, suffix):
    frames = [np.full((61, 81, 3), 40 * i, np.uint8) for i in range(4)]
    write_video(tmp_path / f"out{suffix}", iter(frames), 10)
    back = read_back(tmp_path / f"out{suffix}")
    assert len(back) == 4 and back[0].shape == (62, 82, 3)
    assert abs(int(back[3][30, 40, 1]) - 120) <= 3


def test_bad_inputs_exit_with_status_2_and_write_nothing(exported_models, tmp_path, capsys):
    (tmp_path / "notes.mp4").write_text("not a video, only text\n" * 20)
    with av.open(str(tmp_path / "empty.avi"), "w") as container:  # AVI keeps a video stream without frames
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    log, out = tmp_path / "out" / "tracks.jsonl", tmp_path / "out" / "annotated.mp4"
    cases = {"notes.mp4": "not a video", "missing.mp4": "no such file", "empty.avi": "no frames"}
    for name, message in cases.items():
        with pytest.raises(SystemExit) as exit_:
            video_main(
                [
                    str(tmp_path / name),
                    "--models",
                    str(exported_models),
                    "--log",
                    str(log),
                    "--out",
                    str(out),
                    "--threads",
                    "1",
                ]
            )
        stderr = capsys.readouterr().err
        assert exit_.value.code == 2 and message in stderr, (name, stderr)
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    with pytest.raises(SystemExit) as exit_:
        video_main([str(tmp_path / "notes.mp4"), "--out", str(tmp_path / "a.avi")])
    assert exit_.value.code == 2 and "--out must end in" in capsys.readouterr().err


def test_a_truncated_video_is_reported_as_cut_short_and_writes_nothing(exported_models, tmp_path):
    """A download or copy cut off part-way: the y4m's last frame is partial (FFmpeg would drop it without a
    word), the WebM's frames end before the duration it declares, the MP4 lost its index (written last).
    Each is a plain message with the frames read before the cut, status 2, no stack trace, no outputs."""
    frames = two_faces_video(tmp_path / "whole.y4m", frames=10)
    write_video(tmp_path / "whole.webm", iter(frames), 10)
    write_video(tmp_path / "whole.mp4", iter(frames), 10)
    cases = {
        "y4m": ("the file ends part-way through frame 5, after 4 whole frames",),  # the header takes a few bytes
        "webm": ("the video is cut short", "frames read"),
        "mp4": ("not a video, or a damaged one",),
    }
    for suffix, words in cases.items():
        data = (tmp_path / f"whole.{suffix}").read_bytes()
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        out = tmp_path / f"out-{suffix}"
        result = run_cli(
            str(cut),
            "--models",
            str(exported_models),
            "--log",
            str(out / "tracks.jsonl"),
            "--out",
            str(out / "annotated.mp4"),
            "--threads",
            "1",
        )
        assert result.returncode == 2, (suffix, result.stderr)
        assert result.stderr.startswith(f"masklens video: {cut}: ") and "Traceback" not in result.stderr
        assert all(w in result.stderr for w in words), (suffix, result.stderr)
        assert not out.exists() or not list(out.iterdir()), suffix


@pytest.mark.slow
def test_the_scene_gives_each_place_its_classes_in_order(tmp_path):
    """The webcam scene (tests/scenes.py) through the CLI with the shipped models: one stable track per
    place, whose per-frame classes run through the place's schedule (runs of 3 frames or more)."""
    holdout = shared_data_or_skip("maskedface-net", "holdout")
    models = REPO / "models" / "onnx"
    scene = make_scene(Predictor(models, threads=2), holdout, tmp_path / "scene.y4m")
    log = tmp_path / "tracks.jsonl"
    result = run_cli(str(scene), "--models", str(models), "--log", str(log), "--threads", "2", "--progress", "false")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for place, (x, y) in enumerate(PLACES):
        at_place = [
            r
            for r in records
            if x <= (r["box"][0] + r["box"][2]) / 2 <= x + 256 and y <= (r["box"][1] + r["box"][3]) / 2 <= y + 256
        ]
        assert len({r["track"] for r in at_place}) == 1, place
        assert [r["frame"] for r in at_place] == list(range(SEGMENT_FRAMES * len(SCHEDULE[place])))
        assert runs([r["class"] for r in at_place], min_length=3) == expected_classes(place)
    assert len(records) == sum(len(schedule) for schedule in SCHEDULE) * SEGMENT_FRAMES


def test_y4m_round_trip_and_what_ffmpeg_reads(tmp_path):
    """write_y4m's frames come back from read_y4m and from PyAV (FFmpeg) alike, within 4:2:0 rounding."""
    from masklens.y4m import read_y4m

    rng = np.random.default_rng(0)
    frames = [np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 2, 0), 2, 1) for _ in range(3)]
    assert write_y4m(tmp_path / "clip.y4m", frames, 7) == 3
    back, fps = read_y4m(tmp_path / "clip.y4m")
    assert fps == 7 and len(back) == 3
    assert np.abs(np.stack(back).astype(int) - np.stack(frames)).mean() < 2
    assert np.abs(np.stack(read_back(tmp_path / "clip.y4m")).astype(int) - np.stack(back)).max() <= 4
    with pytest.raises(ValueError, match="even"):
        write_y4m(tmp_path / "odd.y4m", [np.zeros((5, 4, 3), np.uint8)], 5)
