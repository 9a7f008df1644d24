"""Decoding and preprocessing for extraction: the release's frame rule on its own sample, the transforms against a
direct computation, the audio, and the files that cannot be decoded."""

from pathlib import Path

import numpy as np
import pytest
from extract_media import change_video, write_audio_only, write_video
from PIL import Image

from avvp.extract.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    r2plus1d_pixels,
    resnet_pixels,
    to_input,
)
from avvp.extract.video import (
    SAMPLE_RATE,
    VideoError,
    cfr_frame_indices,
    decode_video,
    pick_frames,
)

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "llp" / "sample"


@pytest.fixture(scope="module")
def sample_frames():
    """Every decoded frame of the release's sample video (300, 240, 320, 3) uint8 and their timestamps (s)."""
    import av

    if not (SAMPLE / "BjCEufrlXm4.mp4").is_file():
        pytest.skip("../shared/llp/sample (the release's sample video) not present")
    with av.open(str(SAMPLE / "BjCEufrlXm4.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [(f.to_ndarray(format="rgb24"), float(f.pts * stream.time_base)) for f in container.decode(stream)]
    return np.stack([frame for frame, _ in decoded]), np.array([t for _, t in decoded])


def nearest_decoded(reference: np.ndarray, frames: np.ndarray, timestamps: np.ndarray, seconds: float) -> int:
    """The decoded frame closest to a reference JPEG by mean absolute pixel difference, among those within 0.5 s
    of the reference's nominal time (JPEG loss is far below the difference of frames 0.03 s apart)."""
    candidates = np.flatnonzero(np.abs(timestamps - seconds) <= 0.5)
    diff = np.abs(frames[candidates].astype(np.int16) - reference[None].astype(np.int16))
    return int(candidates[diff.mean(axis=(1, 2, 3)).argmin()])


def test_frame_rule_gives_the_release_frames(sample_frames):
    frames, timestamps = sample_frames
    references = sorted((SAMPLE / "frames_8fps").glob("*.jpg"))
    assert len(references) == 82
    release = [
        nearest_decoded(np.asarray(Image.open(path).convert("RGB")), frames, timestamps, index / 8)
        for index, path in enumerate(references)
    ]
    ours = cfr_frame_indices(timestamps, input_rate=11488 / 384)
    assert ours == release  # all 82, so the 80 fed to the CNNs are the release's 80
    assert [ours[i] for i in pick_frames(len(ours))] == [release[i] for i in pick_frames(len(release))]
    # decode_video keeps exactly those decoded frames
    decoded = decode_video(SAMPLE / "BjCEufrlXm4.mp4", lambda image: np.asarray(image))
    assert len(decoded.frames) == 82
    assert all(np.array_equal(kept, frames[i]) for kept, i in zip(decoded.frames, release, strict=True))
    assert decoded.seconds == pytest.approx(10.03, abs=0.01)
    assert decoded.waveform.shape[0] == pytest.approx(10.0 * SAMPLE_RATE, abs=0.05 * SAMPLE_RATE)


def test_frame_rule_on_regular_rates():
    assert cfr_frame_indices(np.arange(16) / 8, 8.0) == list(range(16))  # same rate: every frame once
    # half rate: a frame one slot late is written twice, filling the slot before it (as ffmpeg does)
    assert cfr_frame_indices(np.arange(4) / 4, 4.0) == [0, 1, 1, 2, 2, 3, 3]
    assert pick_frames(82).tolist()[:4] == [0, 1, 2, 3] and pick_frames(82)[-1] == 81
    assert pick_frames(80).tolist() == list(range(80))


def oracle_resnet(image: Image.Image) -> np.ndarray:
    """torchvision's Resize(256), CenterCrop(224), ToTensor, Normalize on a PIL image, written out for 320x240."""
    assert image.size == (320, 240)
    resized = image.resize((341, 256), Image.BILINEAR)  # short side 256, long int(256 * 320 / 240) = 341
    cropped = resized.crop((58, 16, 282, 240))  # left round((341 - 224) / 2) = 58, top round(32 / 2) = 16
    pixels = np.asarray(cropped, dtype=np.float64).transpose(2, 0, 1) / 255.0
    return (pixels - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]


def oracle_r2plus1d(image: Image.Image) -> np.ndarray:
    """torchvision's Resize((112, 112)), ToTensor, Normalize with the Kinetics statistics."""
    pixels = np.asarray(image.resize((112, 112), Image.BILINEAR), dtype=np.float64).transpose(2, 0, 1) / 255.0
    return (pixels - np.array(KINETICS_MEAN)[:, None, None]) / np.array(KINETICS_STD)[:, None, None]


def test_transforms_equal_the_release_transforms(sample_frames):
    frames, _ = sample_frames
    images = [Image.fromarray(frames[i]) for i in (0, 150, 299)]
    resnet = to_input(np.stack([resnet_pixels(im) for im in images]), IMAGENET_MEAN, IMAGENET_STD).numpy()
    r2plus1d = to_input(np.stack([r2plus1d_pixels(im) for im in images]), KINETICS_MEAN, KINETICS_STD).numpy()
    assert resnet.shape == (3, 3, 224, 224) and r2plus1d.shape == (3, 3, 112, 112)
    for index, image in enumerate(images):
        np.testing.assert_allclose(resnet[index], oracle_resnet(image), atol=1e-5)
        np.testing.assert_allclose(r2plus1d[index], oracle_r2plus1d(image), atol=1e-5)
    portrait = Image.fromarray(frames[0].transpose(1, 0, 2).copy())  # 240 wide, 320 high: the width is short
    expected = portrait.resize((256, 341), Image.BILINEAR).crop((16, 58, 240, 282))
    assert np.array_equal(resnet_pixels(portrait), np.asarray(expected))


def test_audio_is_16k_mono_from_the_start(tmp_path):
    decoded = decode_video(change_video(tmp_path / "change.mp4"))
    waveform = decoded.waveform
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(len(waveform) - 10 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE
    assert np.abs(waveform[: 5 * SAMPLE_RATE]).max() == 0.0  # silence until 6 s
    tone = waveform[int(6.5 * SAMPLE_RATE) : 9 * SAMPLE_RATE]
    assert 0.45 < np.abs(tone).max() < 0.55  # the 0.5 sine, both channels averaged
    assert decode_video(change_video(tmp_path / "mute.mp4", audio=False)).waveform is None


@pytest.mark.parametrize("case", ["not a video", "no video stream", "under one second", "missing"])
def test_files_that_cannot_be_decoded(tmp_path, case):
    path = tmp_path / "clip.mp4"
    if case == "not a video":
        path.write_text("these are not the frames you are looking for\n" * 50)
        expected = "not a video PyAV can read"
    elif case == "no video stream":
        write_audio_only(path)
        expected = "has no video stream"
    elif case == "under one second":
        write_video(path, 0.5)
        expected = "a video must last at least 1 s"
    else:
        expected = "no such file"
    with pytest.raises(VideoError) as error:
        decode_video(path)
    message = str(error.value)
    assert str(path) in message and expected in message and "\n" not in message
