"""The VGGish log-mel front end: a 16 kHz mono waveform -> (N, 96, 64) examples of 0.96 s, as AudioSet computes them.

The AudioSet `vggish_input.py` / `mel_features.py` recipe: 25 ms frames (400 samples) every 10 ms (160 samples), no
padding, each multiplied by a periodic Hann window and zero-padded to a 512-point FFT; the magnitude of its 257
bins is mapped to 64 mel bands by triangular filters whose edges are 66 points spaced evenly on the HTK mel scale
(mel = 1127 ln(1 + f / 700)) from 125 Hz to 7500 Hz, linear in mel, with the DC bin given no weight; then
log(mel + 0.01); frames are grouped into examples of 96 frames with a hop of 96 (incomplete ones are dropped), so
10 s of audio (998 frames) gives 10 examples. Computed in float64 (as numpy does there), returned as float32.
"""

from __future__ import annotations

import functools

import numpy as np

from avvp.errors import AvvpError

SAMPLE_RATE = 16000
"""VGGish's sample rate; resampling is the decoder's job."""
WINDOW_SAMPLES = 400
"""25 ms analysis window."""
HOP_SAMPLES = 160
"""10 ms hop between frames."""
FFT_LENGTH = 512
"""The smallest power of two holding a window."""
NUM_MEL_BANDS = 64
"""Mel bands of a frame."""
MEL_MIN_HZ, MEL_MAX_HZ = 125.0, 7500.0
"""Lower edge of the lowest band and upper edge of the highest."""
LOG_OFFSET = 0.01
"""Added to the mel magnitudes before the logarithm."""
EXAMPLE_FRAMES = 96
"""Frames of one example (0.96 s); examples do not overlap."""
MAX_ABS_AMPLITUDE = 2.0
"""A waveform peak above this is not a [-1, 1] float waveform (e.g. int16 samples cast to float): an error.
Decoded lossy audio may overshoot 1.0 a little; AudioSet does not clip either, so values up to this pass as is."""


def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(frequencies_hz, dtype=np.float64) / 700.0)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """(257, 64) float64 matrix mapping FFT magnitudes to mel bands (read-only; computed once)."""
    bin_mel = hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT_LENGTH // 2 + 1))[:, None]  # (257, 1)
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), NUM_MEL_BANDS + 2)  # (66,)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]  # (64,) each
    rising = (bin_mel - lower) / (center - lower)  # (257, 64)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # HTK leaves out the DC bin
    weights.flags.writeable = False
    return weights


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window (one full period of a length-`length` cosine), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def log_mel_spectrogram(waveform: np.ndarray) -> np.ndarray:
    """(S,) float 16 kHz samples -> (F, 64) float64 log-mel frames, F = 1 + (S - 400) // 160 (0 when S < 400)."""
    samples = np.asarray(waveform, dtype=np.float64)
    if samples.shape[0] < WINDOW_SAMPLES:
        return np.zeros((0, NUM_MEL_BANDS), dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(samples, WINDOW_SAMPLES)[::HOP_SAMPLES]  # (F, 400)
    magnitudes = np.abs(np.fft.rfft(frames * periodic_hann(WINDOW_SAMPLES), FFT_LENGTH))  # (F, 257)
    return np.log(magnitudes @ mel_filterbank() + LOG_OFFSET)  # (F, 64)


def check_waveform(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """The waveform as a 1-D float array, or an AvvpError naming what is wrong with it."""
    if sample_rate != SAMPLE_RATE:
        raise AvvpError(f"waveform: sample rate {sample_rate} Hz; VGGish takes {SAMPLE_RATE} Hz (resample first)")
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise AvvpError(f"waveform: shape {waveform.shape}; expected mono samples, shape (S,) (mix down first)")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise AvvpError(f"waveform: {waveform.dtype} samples; expected floats in [-1, 1]")
    if waveform.size and not np.isfinite(waveform).all():
        raise AvvpError(f"waveform: sample {int(np.flatnonzero(~np.isfinite(waveform))[0])} is not finite")
    peak = float(np.abs(waveform).max()) if waveform.size else 0.0
    if peak > MAX_ABS_AMPLITUDE:
        raise AvvpError(f"waveform: peak amplitude {peak:g}; expected floats in [-1, 1] (integer PCM not scaled?)")
    return waveform


def waveform_to_examples(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(S,) mono float waveform in [-1, 1] at 16 kHz -> (N, 96, 64) float32 VGGish log-mel examples.

    N = number of complete 0.96-s examples, 0 for less than 0.975 s of audio (the caller pads short clips).
    """
    log_mel = log_mel_spectrogram(check_waveform(waveform, sample_rate))  # (F, 64)
    num_examples = log_mel.shape[0] // EXAMPLE_FRAMES
    examples = log_mel[: num_examples * EXAMPLE_FRAMES].reshape(num_examples, EXAMPLE_FRAMES, NUM_MEL_BANDS)
    return examples.astype(np.float32)
