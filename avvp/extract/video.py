"""Decoding a video in memory with PyAV: the release's 8-fps frames, its 80-frame pick, 16-kHz mono audio.

The HAN release wrote its frames with `ffmpeg -i VIDEO -r 8 %06d.jpg`. The `-r` output option of the ffmpeg it
used (4.x) resamples with constant-frame-rate vsync (`do_video_out`, `VSYNC_CFR`): each decoded frame's
timestamp is moved to the output time base (1/8 s), compared with the next output slot, and the frame is
dropped (lag below -1.1 slots), written once, or written several times (lead above 1.1 slots).
`cfr_frame_indices` is that rule; on the release's sample video it gives exactly the release's 82 frames.
A clip's 80 frames are then `np.round(np.linspace(0, len(frames) - 1, 80))` of those (`pick_frames`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.errors import AvvpError

FRAME_RATE = 8
"""Frames per second the release sampled (`ffmpeg -r 8`)."""
FRAMES_PER_CLIP = 80
"""Frames of a 10-s clip fed to ResNet-152 (8 per second); R(2+1)D takes them as 10 clips of 8."""
CLIP_SECONDS = 10
"""Length of a clip, and of the windows a longer video is cut into."""
SAMPLE_RATE = 16000
"""VGGish's input rate (mono)."""
MIN_SECONDS = 1.0
"""A video (or the last window of a longer one) must last at least this long."""


class VideoError(AvvpError):
    """A file that cannot be decoded as a video with at least one second of pictures."""


class ConstantRateSampler:
    """ffmpeg 4.x `-r rate` (constant-frame-rate vsync), one decoded frame at a time.

    `copies(seconds)` takes the next decoded frame's timestamp (seconds from the file's start) and says how many
    output frames it fills, and how many of those (the first ones) repeat the decoded frame before it instead.
    """

    def __init__(self, input_rate: float, rate: int = FRAME_RATE):
        self.rate = rate
        self.duration = min(1.0 / (input_rate / rate), 1.0) if input_rate > 0 else 1.0  # a frame, in output slots
        self.next_slot = 0  # ffmpeg's ost->sync_opts

    def copies(self, seconds: float) -> tuple[int, int]:
        # ffmpeg adds 2^-17 to the rescaled timestamp to avoid exact midpoints
        position = float(seconds) * self.rate + math.copysign(2.0**-17, float(seconds) if seconds else 1.0)
        lag = position - self.next_slot  # delta0
        lead = lag + self.duration  # delta
        copies, copies_of_previous = 1, 0
        if lead < -1.1:
            copies = 0
        elif lead > 1.1:
            copies = int(np.rint(lead))
            if lag > 1.1:
                copies_of_previous = int(np.rint(lag - 0.6))
        self.next_slot += copies
        return copies, min(copies_of_previous, copies)


def cfr_frame_indices(timestamps: np.ndarray, input_rate: float, rate: int = FRAME_RATE) -> list[int]:
    """Which decoded frame fills each output frame of ffmpeg 4.x `-r rate` (`ConstantRateSampler`).

    `timestamps` (F,) seconds from the file's start, in decoding order; `input_rate` the stream's frame rate.
    Returns one index into `timestamps` per output frame (a frame may repeat or be left out).
    """
    sampler = ConstantRateSampler(input_rate, rate)
    chosen: list[int] = []
    for index, seconds in enumerate(timestamps):
        copies, copies_of_previous = sampler.copies(seconds)
        chosen += [max(index - 1, 0)] * copies_of_previous + [index] * (copies - copies_of_previous)
    return chosen


def pick_frames(count: int, wanted: int = FRAMES_PER_CLIP) -> np.ndarray:
    """The release's pick of `wanted` frames out of `count`: `np.round(np.linspace(0, count - 1, wanted))`."""
    return np.round(np.linspace(0, count - 1, wanted)).astype(np.int64)


@dataclass
class DecodedVideo:
    """A video decoded at the release's 8 fps, each kept frame already transformed, and its audio."""

    path: Path
    frames: list
    """The 8-fps frames in order, each `frame_transform(PIL image)`; repeated frames are the same object."""
    seconds: float
    """The video stream's length: last frame's timestamp plus one frame."""
    waveform: np.ndarray | None
    """(S,) float32 mono at SAMPLE_RATE from the file's start, or None when the file has no audio stream."""


def _open(path: Path):
    import av

    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoError(f"{path}: not a video PyAV can read ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    return str(getattr(error, "strerror", None) or error).splitlines()[0][:200]


def decode_video(path: str | os.PathLike, frame_transform: Callable = lambda image: image) -> DecodedVideo:
    """Decode `path` once: the 8-fps frames (through `frame_transform`, as PIL RGB images) and 16-kHz mono audio.

    A file that is not a video, has no video stream, fails to decode or holds under MIN_SECONDS of pictures is a
    one-line VideoError naming it.
    """
    import av

    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        input_rate = float(rate) if rate else 0.0
        start = container.start_time / 1e6 if container.start_time is not None else 0.0
        audio = container.streams.audio[0] if container.streams.audio else None
        try:
            frames, last_seconds, waveform = _decode_streams(
                container, stream, audio, start, input_rate, frame_transform
            )
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: cannot be decoded ({_reason(error)})") from None
    finally:
        container.close()
    if last_seconds is None:
        raise VideoError(f"{path}: its video stream holds no picture")
    seconds = last_seconds + (1.0 / input_rate if input_rate else 0.0)
    if seconds < MIN_SECONDS:
        raise VideoError(f"{path}: lasts {seconds:.2f} s; a video must last at least {MIN_SECONDS:g} s")
    return DecodedVideo(path=path, frames=frames, seconds=seconds, waveform=waveform)


def _decode_streams(
    container, stream, audio, start: float, input_rate: float, frame_transform: Callable
) -> tuple[list, float | None, np.ndarray | None]:
    """One pass over the file: the 8-fps frames through `frame_transform` (each decoded picture transformed once,
    only when kept; no other picture is held), the last picture's timestamp (seconds from the file's start), and
    the audio at SAMPLE_RATE with its channels averaged (as VGGish's `waveform_to_examples` does)."""
    import av

    sampler = ConstantRateSampler(input_rate)
    frames, chunks = [], []
    previous, seconds = None, None  # the decoded picture before, transformed where it was kept
    time_base = float(stream.time_base)
    resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE) if audio is not None else None
    for frame in container.decode(*([stream, audio] if audio is not None else [stream])):
        if isinstance(frame, av.AudioFrame):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))  # (channels, samples) each
            continue
        seconds = frame.pts * time_base - start if frame.pts is not None else (seconds or 0.0)
        copies, copies_of_previous = sampler.copies(seconds)
        if previous is None:  # ffmpeg has no frame before the first: it repeats the first
            copies_of_previous = 0
        if copies_of_previous:
            if not isinstance(previous, _Kept):
                previous = _Kept(frame_transform(previous.to_image()))
            frames += [previous.value] * copies_of_previous
        current = frame
        if copies > copies_of_previous:
            current = _Kept(frame_transform(frame.to_image()))
            frames += [current.value] * (copies - copies_of_previous)
        previous = current
    if resampler is None:
        return frames, seconds, None
    chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if not chunks:
        return frames, seconds, np.zeros(0, dtype=np.float32)
    return frames, seconds, np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32)


class _Kept:
    """A decoded picture already transformed (so that a repeat reuses it)."""

    def __init__(self, value):
        self.value = value
