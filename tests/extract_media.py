"""Videos written with PyAV for the extraction tests (small, so that they encode and decode in a blink)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SIZE = (64, 48)
"""Width, height of the test videos (the transforms scale them up as they would a real video)."""


def write_video(
    path: Path,
    seconds: float,
    colour_at=lambda t: (200, 40, 40),
    tone_at=lambda t: 0.0,
    fps: int = 25,
    audio: bool = True,
    sample_rate: int = 44100,
) -> Path:
    """An MPEG-4 video of `seconds`: each frame one colour `colour_at(t)` (RGB), stereo AAC audio of a 440 Hz
    sine at amplitude `tone_at(t)` (0: silence), or no audio stream."""
    import av

    container = av.open(str(path), "w", format="mp4")
    video = container.add_stream("mpeg4", rate=fps)
    video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    video.gop_size = 12
    sound = None
    if audio:
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "stereo"
    for index in range(int(round(seconds * fps))):
        pixels = np.empty((SIZE[1], SIZE[0], 3), dtype=np.uint8)
        pixels[:] = colour_at(index / fps)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = index
        frame.time_base = Fraction(1, fps)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    if sound is not None:
        block = 1024
        total = int(seconds * sample_rate)
        for start in range(0, total, block):
            times = np.arange(start, min(start + block, total)) / sample_rate
            amplitude = np.array([tone_at(t) for t in times], dtype=np.float32)
            samples = (amplitude * np.sin(2 * np.pi * 440 * times)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([samples, samples]), format="fltp", layout="stereo")
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path


def change_video(path: Path, seconds: float = 10.0, audio: bool = True) -> Path:
    """The issue's test video: red until 3 s then blue; silence until 6 s then a tone."""
    return write_video(
        path,
        seconds,
        colour_at=lambda t: (200, 40, 40) if t < 3 else (30, 60, 210),
        tone_at=lambda t: 0.0 if t < 6 else 0.5,
        audio=audio,
    )


def write_audio_only(path: Path) -> Path:
    """An MP4 file with one second of silent AAC audio and no video stream."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path
