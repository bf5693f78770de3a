"""Video predictor: faces followed through a video file with the webcam mode's rule (``masklens/tracking.py``).

    masklens video clip.mp4 --models models/onnx --log tracks.jsonl --out annotated.mp4

Every frame goes through the browser's live step: faces found with the manifest's ``face_detector``
rule on the frame scaled down to the ``tracking`` section's ``detect_max_side``, looking for faces of its
``min_face_size`` frame pixels, boxes matched to tracks (``Tracker.update``), each
face's crop classified (by the webcam mode's forward-only graph, ``classifier.webcam`` in the manifest)
and added to its track's window (``Tracker.observe``), the track's label the
window's mean (``Tracker.label``). So the same video gives the same per-track classes here and in the
webcam mode. One difference, by design: to keep up in real time the browser re-classifies a tracked
face only every 200 ms (``site/js/live.js``), where this classifies every face in every frame, so the
window here spans fewer seconds and a label changes a few frames sooner after the face does.

Reads what FFmpeg reads (PyAV): .y4m, .mp4, .webm, ... Writes:

- ``--log`` (JSON lines): one line per track seen in a frame (tracks held over a missed frame are
  not), in the frame's detection order:
  ``{"frame": index from 0, "time": seconds (the frame's presentation time), "track": id from 1,
  "box": [x1, y1, x2, y2] in pixels of the frame, "class", "probabilities": {class: p},
  "reason": for "incorrect" only, else null, "reason_probabilities": {reason: p}}``; the class,
  reason and probabilities are the track's smoothed label.
- ``--out`` (optional): the video with a box and a "track id: class p%" label per track seen, drawn
  as the site draws faces; .mp4 (H.264, or MPEG-4 part 2 where the PyAV build lacks libx264),
  .webm (VP9, or VP8) or .y4m. Odd sides are padded by one edge row or column.

Outputs appear only when the whole video went through. A missing file, a file that is not a video,
a video without frames or one cut short (a truncated file: its frames end before the duration its
container declares, or a y4m's last frame is partial) is reported on standard error with exit status 2,
the cut with the frames read before it; a model folder whose files differ from its manifest, with status 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from itertools import chain, islice
from pathlib import Path
from typing import TextIO

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from masklens.cli import parse_config

from .framing import crop_face
from .predict import ModelIntegrityError, Predictor
from .tracking import Tracker, TrackingRule
from .y4m import write_y4m

# site/js/drawing.js's CLASS_COLOURS.
CLASS_COLOURS = {"covered": "#1f9d45", "incorrect": "#f08c00", "uncovered": "#e0002b"}
# Encoders by output extension, the preferred first; PyAV wheels may be built without the libraries.
ENCODERS = {".mp4": ("libx264", "mpeg4"), ".webm": ("libvpx-vp9", "libvpx")}
WRITABLE = (*ENCODERS, ".y4m")
FALLBACK_RATE = Fraction(25)  # for streams that state no frame rate (a still image read as a video)


class VideoError(ValueError):
    """The input video or the requested output cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class SeenTrack:
    """A track matched to a face in the current frame, with its label smoothed over the track's window."""

    id: int
    box: list[float]
    label: dict  # Tracker.label: class, probabilities, reason, reason_probabilities


class LivePredictor:
    """The webcam mode's per-frame step in Python: ``step(rgb)`` for each frame of one video, in order."""

    def __init__(self, model_dir: str | Path, threads: int = 0):
        self.predictor = Predictor(model_dir, threads)
        manifest = self.predictor.manifest
        self.tracking = TrackingRule(**manifest["tracking"])
        # The photo rule without the second try for small faces and the second look with the nets fine-tuned on
        # masked faces, each of which would double the cost of an empty frame; the smallest face, in pixels of
        # the scaled-down frame, is given per frame.
        self.rule = dataclasses.replace(self.predictor.rule, retry_min_face_size=None, second_look=None)
        self.detector = self.predictor.detector
        self.tracker = Tracker(self.tracking, self.predictor.classes, self.predictor.reasons)
        self.min_face_size = self.tracking.min_face_size  # in frame pixels

    def find_faces(self, rgb: np.ndarray) -> list:
        """The faces of a frame (site/js/pipeline.js's findLiveFaces): found on the frame scaled down to
        ``tracking.detect_max_side`` by Pillow's thumbnail, their boxes scaled back to frame pixels."""
        small = Image.fromarray(rgb)
        small.thumbnail((self.tracking.detect_max_side, self.tracking.detect_max_side), Image.Resampling.BILINEAR)
        height, width = rgb.shape[:2]
        scale = np.array([width / small.width, height / small.height] * 2)
        # float32 boxes, as the browser rounds them, so that both crop the same pixels.
        return [
            dataclasses.replace(face, box=(face.box * scale).astype(np.float32))
            for face in self.rule.find(self.detector, np.asarray(small), self.min_face_size * small.width / width)
        ]

    def step(self, rgb: np.ndarray) -> list[SeenTrack]:
        """One RGB frame [H, W, 3] -> the tracks of the faces found in it, in detection order."""
        faces = self.find_faces(rgb)
        tracks = self.tracker.update([face.box for face in faces])
        if faces:
            size = self.predictor.preprocessing["size"]
            crops = np.stack([crop_face(rgb, face.box, self.predictor.framing, size) for face in faces])
            for track, (probabilities, reason_probabilities, _) in zip(
                tracks, self.predictor.predict_crops(crops, live=True)
            ):
                self.tracker.observe(track, probabilities, reason_probabilities)
        return [SeenTrack(track.id, track.box, self.tracker.label(track)) for track in tracks]


# --- reading -------------------------------------------------------------------------------------


def open_video(path: Path) -> av.container.InputContainer:
    """The file opened for decoding; VideoError unless it has a video stream."""
    if not path.is_file():
        raise VideoError("no such file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise VideoError(f"not a video, or a damaged one (FFmpeg: {error.strerror})") from None
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream in the file")
    return container


def frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    return stream.average_rate or stream.guessed_rate or FALLBACK_RATE


def expected_frames(stream: av.video.stream.VideoStream, max_frames: int) -> int | None:
    """The progress bar's total: the container's frame count, else one from its duration (y4m has only that)."""
    count = stream.frames
    if not count and stream.duration and stream.time_base:
        count = round(stream.duration * stream.time_base * frame_rate(stream))
    if max_frames:
        return min(count, max_frames) if count else max_frames
    return count or None


def declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """How long the container says the video is, if it says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def decoded_frames(container: av.container.InputContainer, max_frames: int) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB frame) for each frame, at most ``max_frames`` (0: all). A video whose frames end
    more than a frame before its declared duration is cut short (a truncated file): VideoError at its end,
    after the frames before the cut."""
    stream = container.streams.video[0]
    rate = frame_rate(stream)
    index, end = 0, 0.0
    try:
        for frame in islice(container.decode(stream), max_frames or None):
            # A frame without a timestamp gets its place at the stream's nominal rate.
            time = frame.time if frame.time is not None else float(index / rate)
            yield time, frame.to_ndarray(format="rgb24")
            index, end = index + 1, time + float(1 / rate)
    except av.FFmpegError as error:
        raise VideoError(f"cannot decode frame {index}, the file is damaged (FFmpeg: {error.strerror})") from None
    declared = declared_seconds(container, stream)
    if not max_frames and declared and end < declared - float(1 / rate) / 2:
        raise VideoError(
            f"the video is cut short: its frames end at {end:.2f} s of the {declared:.2f} s it declares "
            f"({index} frames read); the file is truncated or damaged"
        )


# Bytes per pixel of a y4m frame by its colour space (C header field), 8-bit samples.
Y4M_PIXEL_BYTES = {"420": 1.5, "422": 2.0, "444": 3.0, "mono": 1.0}


def y4m_whole_frames(path: Path) -> tuple[int, bool]:
    """(whole frames, whether a partial frame follows them) of a y4m file. FFmpeg drops a partial last frame
    without a word and takes the duration from the file's size, so a cut y4m is told by its layout alone."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        header = file.readline().split()
        fields = {f[:1].decode(): f[1:].decode() for f in header[1:]}
        colour = fields.get("C", "420")
        depth = 2 if re.fullmatch(r"\d+p\d+", colour) else 1  # C420p10 and the like: 16-bit samples
        per_pixel = next((b for name, b in Y4M_PIXEL_BYTES.items() if colour.startswith(name)), 1.5)
        frame_bytes = round(int(fields["W"]) * int(fields["H"]) * per_pixel) * depth
        frames, offset = 0, file.tell()
        while offset < size:
            file.seek(offset)
            line = file.readline(1024)  # FRAME and its optional parameters
            offset += len(line) + frame_bytes
            if not line.startswith(b"FRAME") or offset > size:
                return frames, True
            frames += 1
    return frames, False


# --- tracking and the log ------------------------------------------------------------------------


def log_record(index: int, time: float, track: SeenTrack) -> dict:
    label = track.label
    return {
        "frame": index,
        "time": round(time, 6),
        "track": track.id,
        "box": [round(v, 4) for v in track.box],
        "class": label["class"],
        "probabilities": {k: round(p, 6) for k, p in label["probabilities"].items()},
        "reason": label["reason"],
        "reason_probabilities": {k: round(p, 6) for k, p in label["reason_probabilities"].items()},
    }


def tracked_frames(
    live: LivePredictor, frames: Iterable[tuple[float, np.ndarray]], log: TextIO
) -> Iterator[tuple[np.ndarray, list[SeenTrack]]]:
    """Runs the live step on each frame and logs its tracks; yields (frame, its tracks)."""
    for index, (time, rgb) in enumerate(frames):
        seen = live.step(rgb)
        for track in seen:
            log.write(json.dumps(log_record(index, time, track)) + "\n")
        yield rgb, seen


# --- drawing and writing -------------------------------------------------------------------------


def js_round(value: float) -> int:
    """JavaScript's Math.round (halves up), so labels read as the site's; Python's round halves to even."""
    return math.floor(value + 0.5)


@lru_cache(maxsize=4)
def label_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_tracks(rgb: np.ndarray, seen: list[SeenTrack]) -> np.ndarray:
    """The frame with a box and a "track id: class p%" label per track, laid out as site/js/drawing.js's drawPhoto."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    height, width = rgb.shape[:2]
    unit = max(2, js_round(max(width, height) / 300))
    font = label_font(unit * 7)
    for track in seen:
        x1, y1, x2, y2 = track.box
        name = track.label["class"]
        colour = CLASS_COLOURS[name]
        # A canvas stroke is centred on the rectangle's edge; Pillow's outline grows inwards from the corners.
        draw.rectangle([x1 - unit / 2, y1 - unit / 2, x2 + unit / 2, y2 + unit / 2], outline=colour, width=unit)
        text = f"{track.id}: {name} {js_round(100 * track.label['probabilities'][name])}%"
        label_width = draw.textlength(text, font=font) + unit * 2
        label_height = unit * 9
        top = y1 - label_height if y1 - label_height >= 0 else max(0, y1)
        left = max(0, min(x1, width - label_width))  # keep the label inside the frame
        draw.rectangle([left, top, left + label_width, top + label_height], fill=colour)
        draw.text((left + unit, top + unit), text, fill="#000000" if name == "incorrect" else "#ffffff", font=font)
    return np.asarray(image)


def even_sides(rgb: np.ndarray) -> np.ndarray:
    """4:2:0 video needs even sides: an odd one gets a copy of its last row or column."""
    height, width = rgb.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def encoder_for(suffix: str) -> str:
    for name in ENCODERS[suffix]:
        try:
            av.Codec(name, "w")
            return name
        except av.codec.codec.UnknownCodecError:
            continue
    raise VideoError(f"this PyAV build has none of the {suffix} encoders {', '.join(ENCODERS[suffix])}")


def write_video(path: Path, frames: Iterable[np.ndarray], rate: Fraction) -> None:
    """Encodes RGB frames (at least one) at a constant ``rate``; the format follows the file's extension."""
    frames = (even_sides(rgb) for rgb in frames)
    suffix = path.suffix.lower()
    if suffix == ".y4m":
        write_y4m(path, frames, max(1, round(rate)))  # y4m.py writes whole frames per second
        return
    first = next(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder_for(suffix), rate=rate)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"  # what every player decodes
        for rgb in chain([first], frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())  # the frames the encoder still holds


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A hidden file beside ``path`` (same extension, for the muxer) that becomes ``path`` only when
    the block succeeds, so that a failed run leaves no half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)


# --- command line --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoConfig:
    models: str = field(default="models/onnx", metadata={"help": "folder with manifest.json and the ONNX files"})
    out: str = field(default="", metadata={"help": "annotated video: .mp4, .webm or .y4m (none if empty)"})
    log: str = field(default="tracks.jsonl", metadata={"help": "JSON-lines file: one line per track per frame"})
    threads: int = field(default=0, metadata={"help": "onnxruntime threads; 0 lets onnxruntime choose"})
    max_frames: int = field(default=0, metadata={"help": "stop after this many frames (0: the whole video)"})
    progress: bool = field(default=True, metadata={"help": "progress bar on standard error"})


def run(config: VideoConfig, video: str) -> None:
    out = Path(config.out) if config.out else None
    if out is not None and out.suffix.lower() not in WRITABLE:
        raise VideoError(f"--out must end in {', '.join(WRITABLE)}, got {out.name}")
    with open_video(Path(video)) as container:
        stream = container.streams.video[0]
        if container.format.name == "yuv4mpegpipe":
            whole, partial = y4m_whole_frames(Path(video))
            if partial:
                raise VideoError(
                    f"the video is cut short: the file ends part-way through frame {whole + 1}, "
                    f"after {whole} whole frames; the file is truncated"
                )
        frames = decoded_frames(container, config.max_frames)
        first = next(frames, None)  # before loading the models: an empty video is an input error
        if first is None:
            raise VideoError("the video has no frames")
        live = LivePredictor(config.models, config.threads)
        with (
            tqdm(
                chain([first], frames),
                total=expected_frames(stream, config.max_frames),
                unit="frame",
                file=sys.stderr,
                disable=not config.progress,
            ) as progress,
            staged(Path(config.log)) as log_path,
            staged(out) if out else nullcontext() as video_path,
            open(log_path, "w") as log,
        ):
            tracked = tracked_frames(live, progress, log)
            if video_path is None:
                for _ in tracked:
                    pass
            else:
                write_video(video_path, (draw_tracks(rgb, seen) for rgb, seen in tracked), frame_rate(stream))


def main(argv: list[str] | None = None) -> None:
    config, videos = parse_config(
        VideoConfig, argv, description=__doc__.splitlines()[0], positional=("video", "the video file")
    )
    if len(videos) != 1:
        print(f"masklens video: takes one video, got {len(videos)}", file=sys.stderr)
        sys.exit(2)
    try:
        run(config, videos[0])
    except VideoError as error:
        print(f"masklens video: {videos[0]}: {error}", file=sys.stderr)
        sys.exit(2)
    except ModelIntegrityError as error:
        sys.exit(f"masklens video: {error}")
