"""The command-line tools' memory budget, for ``masklens benchmark`` (``studies.benchmark``'s ``memory``
section): the peak resident memory and seconds of ``masklens predict`` on folders of photos (copies of the
shared real photos; it streams, so the peak should stay flat in the number of photos) and of ``masklens video``
on a long video of a face, made at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image


class MemoryRun(Protocol):
    """What the measurements read of their config (``studies.benchmark.BenchmarkConfig``)."""

    models: str
    data: str
    folder_sizes: tuple[int, ...]
    video_minutes: float
    video_fps: int


def peak_rss_of(command: list[str]) -> dict:
    """Runs the command; its peak resident memory and seconds. The peak is the child's VmHWM (/proc, Linux),
    read until it exits: wait4's ru_maxrss would also count this large process's memory, which the child
    holds between fork and exec."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    status, peak = Path(f"/proc/{process.pid}/status"), 0
    while process.poll() is None:
        try:
            lines = status.read_text().splitlines()
        except OSError:
            break  # exited between the poll and the read
        peak = max([peak, *(int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:"))])
        time.sleep(0.05)
    stderr = process.communicate()[1]
    if process.returncode not in (0, 1):  # masklens predict: 1 when some file failed (photos without a face)
        raise SystemExit(f"{' '.join(command[:4])} failed ({process.returncode}): {stderr[-2000:]}")
    return {"peak_rss_bytes": peak, "seconds": round(time.perf_counter() - started, 2)}


def cli_memory(config: MemoryRun, work: Path, face: Path) -> dict:
    """``masklens predict`` on folders of ``folder_sizes`` photos (copies of the shared real test photos) and
    ``masklens video`` on a ``video_minutes`` video of ``face`` (a photo of one face); ``work``: a scratch folder."""
    masklens = [sys.executable, "-m", "masklens"]
    out: dict = {}
    if config.folder_sizes:
        real = Path(config.data) / "real-photos" / "test"
        sources = sorted(p for label in ("with_mask", "without_mask") for p in (real / label).iterdir())
        out["cli_photos"] = {}
        for count in config.folder_sizes:
            folder = work / f"photos-{count}"
            folder.mkdir()
            for k in range(count):  # copies, renamed: a folder of any size from the shared photos
                shutil.copy(sources[k % len(sources)], folder / f"{k:05d}{sources[k % len(sources)].suffix}")
            measured = peak_rss_of(
                [*masklens, "predict", str(folder), "--models", config.models, "--out", str(work / "out.jsonl")]
            )
            out["cli_photos"][str(count)] = {**measured, "photos": count}
            shutil.rmtree(folder)
    if config.video_minutes:
        video = long_video(face, work / "long.mp4", config.video_minutes, config.video_fps)
        measured = peak_rss_of(
            [*masklens, "video", str(video), "--models", config.models, "--log", str(work / "tracks.jsonl")]
            + ["--progress", "false"]
        )
        frames = round(config.video_minutes * 60 * config.video_fps)
        out["cli_video"] = {
            **measured,
            "minutes": config.video_minutes,
            "fps": config.video_fps,
            "frames": frames,
            "size": [320, 240],
        }
    return out


def long_video(photo: Path, path: Path, minutes: float, fps: int) -> Path:
    """A 320 x 240 MPEG-4 video of the face in ``photo`` drifting across a grey frame, ``minutes`` long."""
    from masklens.video import write_video
    from masklens.y4m import compose

    face = Image.open(photo).convert("RGB")
    face = np.asarray(face.resize((round(face.width * 140 / face.height), 140)))
    frames = round(minutes * 60 * fps)
    write_video(path, (compose((320, 240), [(face, 20 + (k * 7) % 160, 50)]) for k in range(frames)), fps)
    return path
