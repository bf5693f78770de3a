"""Uncompressed YUV4MPEG2 (.y4m) video, the format Chromium's fake camera plays
(``--use-file-for-fake-video-capture``): scenes of still photos for the webcam tests and benchmark.

    write_y4m(path, frames, fps)     RGB uint8 frames [H, W, 3] (even H and W) -> 4:2:0 y4m
    read_y4m(path) -> (frames, fps)  back to RGB, for checks
    compose(size, placements)        a grey frame with photos pasted at (x, y)

Colours go through BT.601 with video (limited) range, which Chromium's fake camera (libyuv) and FFmpeg
both assume for y4m, so the browser, ``masklens video`` and ``read_y4m`` see the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

BACKGROUND = 128


def rgb_to_i420(rgb: np.ndarray) -> bytes:
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"y4m 4:2:0 needs even sides, got {width} x {height}")
    r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b

    def half(plane):
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = [y, half(u), half(v)]
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def i420_to_rgb(data: bytes, width: int, height: int) -> np.ndarray:
    plane = np.frombuffer(data, np.uint8)
    y = (plane[: width * height].reshape(height, width).astype(np.float32) - 16) * 1.164383
    quarter = (width // 2) * (height // 2)
    u = plane[width * height : width * height + quarter].reshape(height // 2, width // 2).astype(np.float32) - 128
    v = plane[width * height + quarter :].reshape(height // 2, width // 2).astype(np.float32) - 128
    u, v = (c.repeat(2, axis=0).repeat(2, axis=1) for c in (u, v))
    rgb = np.stack([y + 1.596027 * v, y - 0.391762 * u - 0.812968 * v, y + 2.017232 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_y4m(path: str | Path, frames: Iterable[np.ndarray], fps: int) -> int:
    """Writes the frames; returns how many. All frames must share the first one's size."""
    count = 0
    with open(path, "wb") as out:
        for frame in frames:
            if count == 0:
                height, width = frame.shape[:2]
                out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            elif frame.shape[:2] != (height, width):
                raise ValueError("all frames of a y4m video must have the same size")
            out.write(b"FRAME\n" + rgb_to_i420(frame))
            count += 1
    return count


def read_y4m(path: str | Path) -> tuple[list[np.ndarray], float]:
    data = Path(path).read_bytes()
    header_end = data.index(b"\n")
    fields = data[:header_end].split()
    if fields[0] != b"YUV4MPEG2":
        raise ValueError(f"{path} is not a y4m video")
    params = {f[:1]: f[1:].decode() for f in fields[1:]}
    width, height = int(params[b"W"]), int(params[b"H"])
    numerator, denominator = (int(v) for v in params[b"F"].split(":"))
    frame_bytes = width * height * 3 // 2
    frames, offset = [], header_end + 1
    while offset < len(data):
        offset = data.index(b"\n", offset) + 1  # FRAME and its optional parameters
        frames.append(i420_to_rgb(data[offset : offset + frame_bytes], width, height))
        offset += frame_bytes
    return frames, numerator / denominator


def compose(size: tuple[int, int], placements: Iterable[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """A (width, height) grey frame with each RGB photo pasted with its top-left corner at (x, y)."""
    width, height = size
    frame = np.full((height, width, 3), BACKGROUND, np.uint8)
    for photo, x, y in placements:
        frame[y : y + photo.shape[0], x : x + photo.shape[1]] = photo[: height - y, : width - x]
    return frame
