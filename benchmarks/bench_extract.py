"""Speed of `avvp data extract` against the HAN release's extraction pipeline, same videos, same random weights.

The release's way (its `scripts/extract_*.py`, reproduced here from their description; the frames are the same
8-fps frames, since no ffmpeg binary is needed): write each video's frames as JPEG files and its audio as a
16-kHz WAV file, then, one video at a time and one network after the other, read the 80 JPEGs back with PIL
for ResNet-152, read them again for R(2+1)D-18, and read the WAV for VGGish. Ours: `avvp.extract.pipeline.extract`
(decoding in worker processes, frames kept in memory and shared, windows batched over videos, repeated frames
computed once). Both run the same three networks with the same random weights (nothing is downloaded), and the
features of both are checked to agree. Prints videos/s of each and the ratio.

    python -m avvp.benchmarks.bench_extract [--videos 4] [--device cuda] [--light] [--json]

The videos are copies of the release's sample (../shared/llp/sample/BjCEufrlXm4.mp4: real content, 80 distinct
frames), or generated ones where it is absent. `--light` swaps the networks for random linear maps of pooled
pixels (the cost of decoding, files and batching alone; the CPU cannot run ResNet-152 fast enough for more).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "llp" / "sample" / "BjCEufrlXm4.mp4"


def make_videos(folder: Path, count: int) -> list[Path]:
    """`count` video files: copies of the release's sample, or generated 10-s videos where it is absent."""
    paths = []
    for index in range(count):
        path = folder / f"video{index:03d}.mp4"
        if SAMPLE.is_file():
            shutil.copyfile(SAMPLE, path)
        else:
            from tests.extract_media import write_video  # only without the sample

            rng = np.random.default_rng(index)
            write_video(path, 10, colour_at=lambda t, r=rng: tuple(int(v) for v in r.integers(0, 255, 3)))
        paths.append(path)
    return paths


def build_networks(device: str, light: bool):
    """The three networks with random weights (seed 0): the real architectures, or stand-ins with `light`."""
    import torch

    from avvp.extract.pipeline import Networks

    torch.manual_seed(0)
    if light:

        class PooledLinear(torch.nn.Module):
            def __init__(self, width: int):
                super().__init__()
                self.linear = torch.nn.Linear(48, width)

            def forward_features(self, inputs):
                pooled = torch.nn.functional.adaptive_avg_pool3d(
                    inputs.reshape(len(inputs), -1, *inputs.shape[-2:]), (3, 4, 4)
                )
                return self.linear(pooled.flatten(1))

            forward = forward_features

        return Networks(PooledLinear(2048), PooledLinear(512), PooledLinear(128), device=device)
    from avvp.extract.nets import VGGish, r2plus1d_18, resnet152

    return Networks(resnet152(), r2plus1d_18(), VGGish(), device=device)


def release_pipeline(videos: list[Path], networks, work: Path) -> dict[str, np.ndarray]:
    """The release's way: JPEG and WAV files first, then each network in turn over the videos, one at a time."""
    import torch
    from PIL import Image

    from avvp.extract.logmel import waveform_to_examples
    from avvp.extract.transforms import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        KINETICS_MEAN,
        KINETICS_STD,
        r2plus1d_pixels,
        resnet_pixels,
        to_input,
    )
    from avvp.extract.video import SAMPLE_RATE, decode_video, pick_frames

    folders = []
    for video in videos:  # extract_frames.py and extract_audio.py
        folder = work / video.stem
        folder.mkdir()
        decoded = decode_video(video)
        for number, image in enumerate(decoded.frames, 1):
            image.save(folder / f"{number:06d}.jpg", quality=95)
        with wave.open(str(folder / "audio.wav"), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(SAMPLE_RATE)
            handle.writeframes((np.clip(decoded.waveform, -1, 1) * 32767).astype("<i2").tobytes())
        folders.append(folder)

    def frames_of(folder: Path, transform) -> np.ndarray:
        files = sorted(folder.glob("*.jpg"))
        return np.stack([transform(Image.open(files[i]).convert("RGB")) for i in pick_frames(len(files))])

    visual, motion, audio = [], [], []
    with torch.inference_mode():
        for folder in folders:  # extract_rgb_feat.py
            images = to_input(frames_of(folder, resnet_pixels), IMAGENET_MEAN, IMAGENET_STD).to(networks.device)
            visual.append(networks.resnet.forward_features(images).float().cpu().numpy().reshape(10, 8, -1).mean(1))
        for folder in folders:  # extract_3D_feat.py
            clips = to_input(frames_of(folder, r2plus1d_pixels), KINETICS_MEAN, KINETICS_STD).to(networks.device)
            clips = clips.view(10, 8, 3, 112, 112).permute(0, 2, 1, 3, 4).contiguous()
            motion.append(networks.r2plus1d.forward_features(clips).float().cpu().numpy())
        for folder in folders:  # extract_audio_feat.py
            with wave.open(str(folder / "audio.wav"), "rb") as handle:
                samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2") / 32768.0
            examples = torch.from_numpy(waveform_to_examples(samples[: 10 * SAMPLE_RATE], SAMPLE_RATE))
            audio.append(networks.vggish(examples[:, None].to(networks.device)).float().cpu().numpy())
    return {"audio": np.stack(audio), "visual": np.stack(visual), "motion": np.stack(motion)}


def ours(videos: list[Path], networks, out: Path, workers: int) -> dict[str, np.ndarray]:
    from avvp.extract.pipeline import ExtractConfig, extract, list_videos
    from avvp.store import read_store

    extract(list_videos(videos), out, ExtractConfig(dtype="float32", workers=workers), networks=networks)
    return read_store(out).streams


def measure(videos: int = 4, device: str = "cpu", workers: int = 2, light: bool = False) -> dict:
    """Both pipelines on the same `videos` copies with the same random networks: rates, ratio and agreement."""
    networks = build_networks(device, light)
    with tempfile.TemporaryDirectory(prefix="avvp-bench-extract-") as folder:
        work = Path(folder)
        (work / "videos").mkdir()
        (work / "release").mkdir()
        paths = make_videos(work / "videos", videos)
        start = time.perf_counter()
        release = release_pipeline(paths, networks, work / "release")
        release_seconds = time.perf_counter() - start
        start = time.perf_counter()
        extracted = ours(paths, networks, work / "ours.h5", workers)
        our_seconds = time.perf_counter() - start
    agreement = {}
    for stream in ("audio", "visual", "motion"):
        a, b = release[stream].reshape(videos, -1), extracted[stream].reshape(videos, -1)
        cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        agreement[stream] = round(float(cosine.min()), 5)
    return {
        "videos": videos,
        "device": device,
        "networks": "stand-ins (--light)" if light else "ResNet-152, R(2+1)D-18, VGGish (random weights)",
        "load_average": round(os.getloadavg()[0], 2),
        "release_videos_per_s": round(videos / release_seconds, 4),
        "ours_videos_per_s": round(videos / our_seconds, 4),
        "speedup": round(release_seconds / our_seconds, 2),
        "min_cosine_release_vs_ours": agreement,
    }


def report_line(result: dict) -> str:
    return (
        f"{result['videos']} videos on {result['device']}, {result['networks']}: release pipeline "
        f"{result['release_videos_per_s']} videos/s, avvp data extract {result['ours_videos_per_s']} videos/s, "
        f"{result['speedup']}x (load {result['load_average']}); features agree (min cosine per stream) "
        f"{result['min_cosine_release_vs_ours']}"
    )


SMOKE = dict(videos=1, workers=0)
"""The smoke run's settings (`python -m avvp.benchmarks.speed --smoke`, tests/test_benchmarks.py)."""


def run(videos: int = 4, workers: int = 2) -> list[str]:
    """The speed report's section: the real networks on a GPU, the stand-ins on a CPU (ResNet-152 is too slow)."""
    import torch

    cuda = torch.cuda.is_available()
    return [report_line(measure(videos, "cuda" if cuda else "cpu", workers=workers, light=not cuda))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="Videos to extract (copies of the sample).")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda).")
    parser.add_argument("--workers", type=int, default=2, help="Decoding processes of ours.")
    parser.add_argument("--light", action="store_true", help="Stand-in networks: decoding, files and batching only.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args(argv)
    result = measure(args.videos, args.device, args.workers, args.light)
    print(json.dumps(result, indent=2) if args.json else report_line(result))
    return 0


if __name__ == "__main__":
    from avvp.console import run_app

    run_app(main)
