"""`avvp data extract`: video files in, a feature store in the LLP layout out.

Each video is decoded once, in a worker process (`decode_windows`): the release's 8-fps frames, transformed for
both CNNs there (`avvp.extract.transforms`), and the audio at 16 kHz mono. A video is cut into 10-s windows: one
window keeps the video's id, several are `ID@0`, `ID@10`, ... (offsets in seconds). A window takes 80 frames:
the release's `np.round(np.linspace(0, n - 1, 80))` pick when it has n >= 80 (the last window takes every frame
left, as the release takes a whole 10.03-s clip), else its n frames and the last one repeated up to 80 (the
padding `avvp data import-han` applies to a short release clip), its audio padded with zeros to 10 s. A last
window under one second is dropped. A video without audio gets the features of 10 s of silence (zeros through
VGGish, computed with the same weights). The main process batches windows over videos through ResNet-152
(averaged per second), R(2+1)D-18 (10 clips of 8 frames) and VGGish (10 examples of 0.96 s).

Resumable: finished batches are written as small stores into `.STORE.parts/` beside the output; a rerun skips
the videos they hold and the store is assembled from them at the end. Under `accelerate launch` each process
takes every n-th video and writes `STORE.rankR-of-N.h5`; `avvp data merge` joins them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avvp.classes import NUM_SNIPPETS
from avvp.errors import AvvpError, ConfigError, StoreError
from avvp.extract.video import (
    CLIP_SECONDS,
    FRAME_RATE,
    FRAMES_PER_CLIP,
    MIN_SECONDS,
    SAMPLE_RATE,
    VideoError,
    decode_video,
    pick_frames,
)
from avvp.inputs import check_input_file, check_video_id, open_hdf5, read_npy
from avvp.output import (
    MARKER,
    check_replaceable_dir,
    check_writable,
    output_lock,
    remove_staged,
    remove_stale_staging,
    resolve_output,
    writing,
)
from avvp.store import RAW_WIDTHS, StoreWriter, float_dtype, read_store, read_video_ids, write_store

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv")
"""Files a folder given to `avvp data extract` contributes (any other file in it is left alone)."""
LIST_SUFFIXES = (".txt", ".list", ".lst")
"""An input with one of these suffixes is a list of video paths, one a line (relative to the list's folder)."""
AUDIO_EMBEDDINGS = ("raw", "postprocessed")
WINDOW_SAMPLES = CLIP_SECONDS * SAMPLE_RATE
SOURCE = "extracted from video by avvp data extract (ResNet-152, R(2+1)D-18, VGGish)"


@dataclass
class ExtractConfig:
    """Settings of one extraction (the CLI fills it; the store's `extractor` attribute records it)."""

    dtype: str = "float16"
    """Stored precision: float16 or float32."""
    audio_embedding: str = "raw"
    """VGGish output: raw (the 128-d embedding) or postprocessed (PCA-whitened, 8-bit quantised, as AudioSet's)."""
    weights_dir: str | None = None
    """Folder holding the weight files (offline machines); None: the torch cache, downloading what is missing."""
    download: bool = True
    """Download missing weight files (into the torch cache) instead of failing."""
    workers: int = 2
    """Decoding processes; 0 decodes in the main process."""
    batch_windows: int = 4
    """10-s windows per forward batch (each is 80 frames for ResNet-152)."""
    frame_batch: int = 80
    """Frames per ResNet-152 forward call."""
    skip_bad: bool = False
    """Report and skip a file that cannot be decoded, instead of stopping with its error."""
    device: str | None = None
    """torch device; None: Accelerate's (CUDA when there is one)."""

    def __post_init__(self):
        if float_dtype(self.dtype) is None:
            raise ConfigError(f"--dtype {self.dtype}: expected float16 or float32")
        if self.audio_embedding not in AUDIO_EMBEDDINGS:
            raise ConfigError(
                f"--audio-embedding {self.audio_embedding}: expected one of {', '.join(AUDIO_EMBEDDINGS)}"
            )
        for name in ("workers", "batch_windows", "frame_batch"):
            if getattr(self, name) < (0 if name == "workers" else 1):
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: too small")


# --- inputs ---


def list_videos(inputs: Sequence[str | os.PathLike]) -> list[tuple[str, Path]]:
    """(video id, path) of every input: a file, a folder (its video files, sorted, not recursive) or a list file.

    The id is the file's name without its suffix, checked as every id is (`avvp.inputs.check_video_id`: no tab,
    newline or NUL); two files with one id are an error naming both. A file given by name or listed must be a
    regular file (a FIFO or a device is one error line, never read).
    """
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif item.suffix.lower() in LIST_SUFFIXES and os.path.lexists(item):
            listing = check_input_file(item, "list of video files", AvvpError)
            for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    path = Path(line.strip())
                    paths.append(path if path.is_absolute() else item.parent / path)
                    if not os.path.lexists(paths[-1]):
                        raise AvvpError(f"{item}:{number}: no such video file {line.strip()!r}")
                    check_input_file(paths[-1], "video file", AvvpError)
        elif os.path.lexists(item):
            paths.append(check_input_file(item, "video file", AvvpError))
        else:
            raise AvvpError(f"{item}: no such file or folder")
    if not paths:
        raise AvvpError(f"{', '.join(map(str, inputs))}: no video files found")
    videos, seen = [], {}
    for path in paths:
        shown = str(path) if str(path).isprintable() else repr(str(path))  # the error stays one line
        video_id = check_video_id(path.stem, shown)
        if video_id in seen:
            raise AvvpError(f"{seen[video_id]} and {path}: both would be video {video_id!r}; rename one")
        seen[video_id] = path
        videos.append((video_id, path))
    return videos


# --- decoding (worker processes) ---


@dataclass
class Window:
    """One 10-s window of a video, ready for the networks."""

    video_id: str
    """The store id: the video's id, or `ID@OFFSET` when the video has several windows."""
    offset: int
    """Start in the video, seconds."""
    resnet_pixels: np.ndarray
    """(80, 224, 224, 3) uint8."""
    r2plus1d_pixels: np.ndarray
    """(80, 112, 112, 3) uint8."""
    waveform: np.ndarray
    """(160000,) float32, 16 kHz mono; zeros for a video without audio."""
    seconds: float
    """Length of video the window holds (10, or less for a padded one)."""


@dataclass
class DecodedWindows:
    """What a worker returns for one video: its windows, or the error that made it unreadable."""

    video_id: str
    path: str
    windows: list[Window] = field(default_factory=list)
    seconds: float = 0.0
    """The video stream's length."""
    has_audio: bool = True
    dropped_seconds: float = 0.0
    """Length of a last window under one second, left out."""
    error: str | None = None
    """The one-line reason the file could not be decoded (then there are no windows)."""


def window_count(seconds: float) -> int:
    """10-s windows of a video: as many as start before its end with at least MIN_SECONDS left (at least one)."""
    return max(1, 1 + int(np.floor((seconds - MIN_SECONDS) / CLIP_SECONDS + 1e-9)))


def cut_windows(video_id: str, frames: list, seconds: float, waveform: np.ndarray | None) -> list[Window]:
    """A decoded video's windows (see the module's docstring for the frame pick and the padding)."""
    count = window_count(seconds)
    audio = waveform if waveform is not None else np.zeros(0, dtype=np.float32)
    windows = []
    for index in range(count):
        start = index * FRAMES_PER_CLIP
        last = index == count - 1
        held = (frames[start:] if last else frames[start : start + FRAMES_PER_CLIP]) or frames[-1:]
        if len(held) >= FRAMES_PER_CLIP:
            held = [held[i] for i in pick_frames(len(held))]
        else:
            held = held + [held[-1]] * (FRAMES_PER_CLIP - len(held))
        samples = audio[index * WINDOW_SAMPLES : (index + 1) * WINDOW_SAMPLES]
        samples = np.pad(samples, (0, WINDOW_SAMPLES - len(samples)))
        offset = index * CLIP_SECONDS
        windows.append(
            Window(
                video_id=video_id if count == 1 else f"{video_id}@{offset}",
                offset=offset,
                resnet_pixels=np.stack([pair[0] for pair in held]),
                r2plus1d_pixels=np.stack([pair[1] for pair in held]),
                waveform=samples.astype(np.float32, copy=False),
                seconds=min(float(CLIP_SECONDS), seconds - offset),
            )
        )
    return windows


def decode_windows(video: tuple[str, str]) -> DecodedWindows:
    """Decode one video into its windows (runs in a worker process); a decoding error is returned, not raised."""
    from avvp.extract.transforms import frame_pixels

    video_id, path = video
    try:
        decoded = decode_video(path, frame_pixels)
    except VideoError as error:
        return DecodedWindows(video_id, str(path), error=str(error))
    windows = cut_windows(video_id, decoded.frames, decoded.seconds, decoded.waveform)
    covered = windows[-1].offset + CLIP_SECONDS
    return DecodedWindows(
        video_id,
        str(path),
        windows,
        seconds=decoded.seconds,
        has_audio=decoded.waveform is not None,
        dropped_seconds=max(0.0, decoded.seconds - covered),
    )


def decoded_videos(videos: Sequence[tuple[str, Path]], workers: int) -> Iterable[DecodedWindows]:
    """`decode_windows` over the videos, in order, `workers` processes at a time (0: in this process)."""
    items = [(video_id, str(path)) for video_id, path in videos]
    if workers == 0 or len(items) <= 1:
        yield from map(decode_windows, items)
        return
    import multiprocessing

    from avvp.import_features import _ordered_map

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from _ordered_map(pool, decode_windows, items, window=2 * workers)


# --- the networks ---


class Networks:
    """ResNet-152, R(2+1)D-18 and VGGish on one device, turning batches of windows into the three streams."""

    def __init__(self, resnet, r2plus1d, vggish, pca_params=None, device="cpu", weights: dict | None = None):
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        self.resnet = resnet.to(self.device, memory_format=memory_format).eval()
        self.r2plus1d = r2plus1d.to(self.device).eval()
        self.vggish = vggish.to(self.device).eval()
        self.pca_params = pca_params
        self.weights = weights or {}
        """network name -> {"file", "sha256"} of the weight file it was loaded from."""

    @classmethod
    def load(cls, config: ExtractConfig, device) -> Networks:
        """The published weights (`avvp.extract.weights`), from --weights DIR or the torch cache."""
        from avvp.extract.weights import file_sha256, load_network, load_pca_params, weights_path

        names = ["resnet152", "r2plus1d_18", "vggish"] + (["vggish_pca"] if config.audio_embedding != "raw" else [])
        loaded = {name: load_network(name, config.weights_dir, config.download) for name in names[:3]}
        pca_params = load_pca_params(config.weights_dir, config.download) if len(names) > 3 else None
        weights = {}
        for name in names:
            path = Path(weights_path(name, config.weights_dir, config.download))
            weights[name] = {"file": path.name, "sha256": file_sha256(path)}
        return cls(loaded["resnet152"], loaded["r2plus1d_18"], loaded["vggish"], pca_params, device, weights)

    def _autocast(self):
        import contextlib

        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()

    def features(self, windows: Sequence[Window], frame_batch: int = 80) -> dict[str, np.ndarray]:
        """The three streams of a batch of B windows: audio (B, 10, 128), visual (B, 10, 2048), motion (B, 10, 512)."""
        import torch

        from avvp.extract.logmel import waveform_to_examples
        from avvp.extract.transforms import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD, to_input

        count = len(windows)
        with torch.inference_mode(), self._autocast():
            # Repeated frames (a still picture, the frames ffmpeg's rule repeats, a short clip's padding) go
            # through a network once.
            frames, frame_rows = _distinct(np.concatenate([w.resnet_pixels for w in windows]))  # (F, 224, 224, 3)
            frame_features = []
            for start in range(0, len(frames), frame_batch):
                chunk = torch.from_numpy(frames[start : start + frame_batch]).to(self.device)
                images = to_input(chunk, IMAGENET_MEAN, IMAGENET_STD)  # (n, 3, 224, 224)
                if self.cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                frame_features.append(self.resnet.forward_features(images).float())  # (n, 2048)
            per_frame = torch.cat(frame_features)[torch.from_numpy(frame_rows).to(self.device)]  # (B*80, 2048)
            visual = per_frame.view(count, NUM_SNIPPETS, FRAME_RATE, -1).mean(dim=2)  # (B, 10, 2048)

            small = np.concatenate([w.r2plus1d_pixels for w in windows])  # (B*80, 112, 112, 3)
            clips, clip_rows = _distinct(small.reshape(count * NUM_SNIPPETS, FRAME_RATE * 112, 112, 3))
            clip_features = []
            for start in range(0, len(clips), max(1, frame_batch // FRAME_RATE)):
                chunk = torch.from_numpy(clips[start : start + max(1, frame_batch // FRAME_RATE)]).to(self.device)
                pixels = chunk.reshape(-1, 112, 112, 3)  # (n*8, 112, 112, 3)
                inputs = to_input(pixels, KINETICS_MEAN, KINETICS_STD).view(-1, FRAME_RATE, 3, 112, 112)
                inputs = inputs.permute(0, 2, 1, 3, 4).contiguous()  # (n, 3, 8, 112, 112)
                clip_features.append(self.r2plus1d.forward_features(inputs).float())  # (n, 512)
            per_clip = torch.cat(clip_features)[torch.from_numpy(clip_rows).to(self.device)]  # (B*10, 512)
            motion = per_clip.view(count, NUM_SNIPPETS, -1)

            examples = np.concatenate([_ten_examples(waveform_to_examples(w.waveform, SAMPLE_RATE)) for w in windows])
            distinct_examples, example_rows = _distinct(examples)  # silence (padding, no audio) once
            inputs = torch.from_numpy(distinct_examples).to(self.device)[:, None]  # (E, 1, 96, 64)
            embedding = self.vggish(inputs).float()[torch.from_numpy(example_rows).to(self.device)]  # (B*10, 128)
            if self.pca_params is not None:
                from avvp.extract.nets import vggish_postprocess

                embedding = vggish_postprocess(embedding.cpu(), self.pca_params)
        return {
            "audio": embedding.cpu().numpy().reshape(count, NUM_SNIPPETS, -1),
            "visual": visual.cpu().numpy(),
            "motion": motion.cpu().numpy(),
        }


def _distinct(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct items of an (N, ...) array, in first-seen order, and each item's row among them (N,)."""
    import hashlib

    first: dict[bytes, int] = {}
    rows = np.empty(len(items), dtype=np.int64)
    keep = []
    for index, item in enumerate(items):
        key = hashlib.blake2b(item.tobytes(), digest_size=16).digest()
        if key not in first:
            first[key] = len(keep)
            keep.append(index)
        rows[index] = first[key]
    return items[keep], rows


def _ten_examples(examples) -> np.ndarray:
    """(n, 96, 64) log-mel examples of a 10-s window as exactly (10, 96, 64) float32 (n is 10 for 160,000 samples)."""
    examples = np.asarray(examples, dtype=np.float32)
    if len(examples) < NUM_SNIPPETS:  # not reached for a full window; kept for other front ends' rounding
        examples = np.concatenate([examples, np.repeat(examples[-1:], NUM_SNIPPETS - len(examples), axis=0)])
    return examples[:NUM_SNIPPETS]


# --- the extraction ---


@dataclass
class ExtractResult:
    """What an extraction did, for the command's report."""

    path: Path
    videos: int = 0
    """Videos in the store (this run's and a resumed run's)."""
    windows: int = 0
    resumed: int = 0
    """Videos found already extracted by an earlier, interrupted run."""
    notes: list[str] = field(default_factory=list)
    """One line per video cut into windows, padded, without audio or with a dropped tail."""
    skipped: list[str] = field(default_factory=list)
    """`path: reason` of each file left out (--skip-bad)."""
    video_windows: dict[str, list[str]] = field(default_factory=dict)
    """Video id -> the store ids of its windows, for the videos this run extracted."""


def parts_dir(out: Path) -> Path:
    """The folder of finished batches of an extraction into `out` (removed once the store is written)."""
    return out.parent / f".{out.name}.parts"


def rank_output(out: Path, rank: int, processes: int) -> Path:
    """The store one process of `accelerate launch` writes: STORE.rankR-of-N.h5."""
    return out.with_name(f"{out.stem}.rank{rank}-of-{processes}{out.suffix}") if processes > 1 else out


def video_notes(decoded: DecodedWindows) -> list[str]:
    """What the output says about one video: windows, padding, missing audio, a dropped tail."""
    notes = []
    name = f"{decoded.video_id} ({decoded.seconds:.2f} s)"
    if len(decoded.windows) > 1:
        notes.append(f"{name}: {len(decoded.windows)} windows, {decoded.video_id}@0 ... {decoded.windows[-1].video_id}")
    last = decoded.windows[-1]
    if last.seconds < CLIP_SECONDS - 0.1:
        notes.append(f"{name}: {last.video_id} padded from {last.seconds:.2f} s to {CLIP_SECONDS} s")
    if decoded.dropped_seconds > 0.5:
        notes.append(f"{name}: its last {decoded.dropped_seconds:.2f} s (under {MIN_SECONDS:g} s) left out")
    if not decoded.has_audio:
        notes.append(f"{name}: no audio stream; audio features are those of silence")
    return notes


def _settings(config: ExtractConfig) -> dict:
    return {"dtype": config.dtype, "audio_embedding": config.audio_embedding}


def _read_parts(folder: Path, settings: dict) -> tuple[list[Path], set[str]]:
    """The finished batches of an interrupted run and the videos they cover; leftovers of a killed write go."""
    for leftover in folder.glob(".*.tmp"):
        remove_staged(leftover)
    settings_file = check_input_file(folder / "settings.json", "settings file", StoreError)
    try:
        saved = json.loads(settings_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"{settings_file}: not the JSON an interrupted extraction wrote; pass --overwrite") from None
    if saved != settings:
        raise ConfigError(
            f"{folder}: an interrupted extraction with other settings ({saved}); rerun with them, "
            "or pass --overwrite to start again"
        )
    parts, done = sorted(folder.glob("part-*.h5")), set()
    for part in parts:
        done.update(_part_videos(part))
    return parts, done


def _part_videos(part: Path) -> list[str]:
    """The videos a finished batch covers (its `videos` attribute), read through the input layer."""
    with open_hdf5(part, "part of an interrupted extraction") as handle:
        try:
            videos = json.loads(handle.attrs["videos"])
        except (KeyError, TypeError, ValueError):
            videos = None
    if not isinstance(videos, list) or not all(isinstance(video, str) for video in videos):
        raise StoreError(f"{part}: no 'videos' list; not a part of an interrupted extraction (pass --overwrite)")
    return videos


def check_replaceable_store(out: Path, overwrite: bool, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """`check_writable` for a feature store output that `--overwrite` may replace only when avvp wrote it (its
    `created_by` attribute says avvp), never one of `inputs`; returns its real path."""
    from avvp.store import store_info

    real = resolve_output(out)
    check_writable(real, overwrite, inputs=inputs)
    if os.path.lexists(real):
        try:
            created_by = str(store_info(real)["attrs"].get("created_by", ""))
        except AvvpError:
            created_by = ""
        if not created_by.startswith("avvp"):
            raise AvvpError(f"{out}: not a feature store avvp wrote; --overwrite will not replace it")
    return real


def extract(
    videos: Sequence[tuple[str, Path]],
    out: str | os.PathLike,
    config: ExtractConfig,
    networks: Networks | Callable[[], Networks] | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Extract the three streams of `videos` ((id, path) pairs, `list_videos`) into the store `out`.

    `networks`: a loaded `Networks`, or a function making one (called at the first decoded window, so that a bad
    file is reported before any weights load); None loads the published weights for `config`. Under `accelerate
    launch`, this process takes its share and writes `rank_output(out, ...)`. `out` is checked (an existing one
    replaced with `overwrite` only when avvp wrote it, never one of the videos) before any video is decoded.
    Returns what was written and said.
    """
    from avvp.runs import process_state

    state = process_state()
    named = rank_output(Path(out), state.process_index, state.num_processes)
    videos = list(videos)[state.process_index :: state.num_processes]
    out = check_replaceable_store(named, overwrite, inputs=[path for _, path in videos])
    folder = parts_dir(out)
    if os.path.lexists(folder):  # resumed (or, with --overwrite, dropped): only a parts folder avvp made
        check_replaceable_dir(folder, True, markers=(MARKER,))
    result = ExtractResult(path=named)
    with output_lock(out), writing(named):
        remove_stale_staging(out)  # what a killed run staged for the store itself
        if overwrite and folder.exists():
            remove_staged(folder)
        settings = _settings(config)
        started = not folder.exists()
        if started:
            folder.mkdir(parents=True)
            (folder / "settings.json").write_text(json.dumps(settings) + "\n", encoding="utf-8")
            (folder / MARKER).write_text(json.dumps({"written_by": "avvp"}) + "\n", encoding="utf-8")
            parts, done = [], set()
        else:
            parts, done = _read_parts(folder, settings)
        try:
            device = config.device or str(state.device)
            _extract_into(videos, out, folder, parts, done, config, networks, device, overwrite, on_progress, result)
        except AvvpError:
            if started:  # a user error: this command leaves nothing behind (a kill keeps the parts to resume)
                remove_staged(folder)
            raise
        remove_staged(folder)
    return result


def _extract_into(
    videos: list[tuple[str, Path]],
    out: Path,
    folder: Path,
    parts: list[Path],
    done: set[str],
    config: ExtractConfig,
    networks: Networks | Callable[[], Networks] | None,
    device: str,
    overwrite: bool,
    on_progress: Callable[[int, int], None] | None,
    result: ExtractResult,
) -> None:
    """`extract` under the output's lock: decode the videos not `done`, write their parts, assemble the store."""
    result.resumed = sum(video_id in done for video_id, _ in videos)
    todo = [(video_id, path) for video_id, path in videos if video_id not in done]
    loaded: list[Networks] = [networks] if isinstance(networks, Networks) else []

    def ready() -> Networks:  # loaded at the first decoded window: a bad file is reported before any weights load
        if not loaded:
            loaded.append(networks() if networks is not None else Networks.load(config, device))
        return loaded[0]

    pending: list[Window] = []
    pending_videos: list[str] = []
    finished, decoded_count = result.resumed, 0
    if on_progress:
        on_progress(finished, len(videos))
    for decoded in decoded_videos(todo, config.workers):
        if decoded.error is not None:
            if not config.skip_bad:
                raise VideoError(decoded.error + "; pass --skip-bad to leave such files out")
            result.skipped.append(decoded.error)
        else:
            decoded_count += 1
            result.notes += video_notes(decoded)
            result.video_windows[decoded.video_id] = [window.video_id for window in decoded.windows]
            pending += decoded.windows
        pending_videos.append(decoded.video_id)
        if len(pending) >= config.batch_windows:
            parts.append(_write_part(folder, len(parts), pending, pending_videos, ready, config))
            pending, pending_videos = [], []
        finished += 1
        if on_progress:
            on_progress(finished, len(videos))
    if pending_videos:
        parts.append(_write_part(folder, len(parts), pending, pending_videos, ready, config))
    if todo and decoded_count == 0 and result.resumed == 0:
        raise VideoError(f"no video could be decoded; the first: {result.skipped[0]}")
    result.windows, stored = _assemble(parts, out, config, loaded[0] if loaded else None, overwrite)
    result.videos = stored - len(result.skipped)


def _write_part(
    folder: Path,
    number: int,
    windows: list[Window],
    videos: list[str],
    networks: Callable[[], Networks],
    config: ExtractConfig,
) -> Path:
    """One finished batch as a small store (atomically); its `videos` attribute lists the videos it covers.
    `networks()` gives the loaded networks (called only for a batch with windows)."""
    ids = [w.video_id for w in windows]
    if windows:
        streams = {}
        for start in range(0, len(windows), config.batch_windows):
            chunk = networks().features(windows[start : start + config.batch_windows], config.frame_batch)
            for name, array in chunk.items():
                streams.setdefault(name, []).append(array)
        arrays = {name: np.concatenate(streams[name]) for name in ("audio", "visual", "motion")}
    else:
        arrays = {name: np.zeros((0, NUM_SNIPPETS, width), np.float32) for name, width in RAW_WIDTHS.items()}
    path = folder / f"part-{number:06d}.h5"
    write_store(path, ids, arrays, dtype="float32", attrs={"videos": json.dumps(videos)})
    return path


def extractor_description(config: ExtractConfig, networks: Networks | None) -> dict:
    """The store's `extractor` attribute: networks, weight files with their sha256, preprocessing, frame rule."""
    weights = networks.weights if networks is not None else {}
    return {
        "visual": {
            "network": "ResNet-152 (torchvision parameter names), 2048-d pooled output, mean of 8 frames per second",
            "weights": weights.get("resnet152"),
            "preprocessing": "Resize(256) short side, PIL bilinear; CenterCrop(224); ToTensor; "
            "Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))",
        },
        "motion": {
            "network": "R(2+1)D-18 (torchvision parameter names), 512-d pooled output, one clip of 8 frames per second",
            "weights": weights.get("r2plus1d_18"),
            "preprocessing": "Resize((112, 112)), PIL bilinear; ToTensor; "
            "Normalize(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))",
        },
        "audio": {
            "network": f"VGGish, {config.audio_embedding} 128-d embedding per 0.96-s example",
            "weights": weights.get("vggish"),
            "pca": weights.get("vggish_pca"),
            "preprocessing": "16 kHz mono (PyAV resampler, channels averaged); log-mel 25 ms / 10 ms, 64 bands "
            "125-7500 Hz, log(mel + 0.01); 10 examples per 10-s window; no audio stream: 10 s of zeros",
        },
        "frames": "ffmpeg 4.x `-r 8` constant-frame-rate rule on decoded timestamps, then "
        "np.round(np.linspace(0, n - 1, 80)); under 80 frames: the last one repeated",
        "windows": "10-s windows ID@0, ID@10, ... for a longer video; a last window under 1 s is left out",
        "settings": asdict(config) | {"weights_dir": None},
    }


def _assemble(
    parts: list[Path], out: Path, config: ExtractConfig, networks: Networks | None, overwrite: bool
) -> tuple[int, int]:
    """Join the finished batches into the store, in the order they were written: (windows, videos)."""
    widths = dict(RAW_WIDTHS)
    videos = 0
    attrs = {"extractor": json.dumps(extractor_description(config, networks))}
    with StoreWriter(out, widths, dtype=config.dtype, source=SOURCE, attrs=attrs, overwrite=overwrite) as writer:
        for part in parts:
            store = read_store(part, tuple(widths), widths=widths, check_finite=True)
            videos += len(_part_videos(part))
            if store.video_ids:
                writer.append(store.video_ids, **store.streams)
        windows = writer.count
    return windows, videos


# --- merging and comparing ---


def merge_stores(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> int:
    """Join stores with the same streams (e.g. one per `accelerate launch` process) into one; returns its size.

    A video in two inputs, or streams that differ, is an error naming the files. Attributes come from the first.
    """
    from avvp.store import store_info

    if not inputs:
        raise ConfigError("no store to merge")
    named = out
    out = check_replaceable_store(Path(out), overwrite, inputs=inputs)
    infos = [store_info(path) for path in inputs]
    streams = infos[0]["streams"]
    for info in infos[1:]:
        if {k: v["shape"][1:] for k, v in info["streams"].items()} != {k: v["shape"][1:] for k, v in streams.items()}:
            raise StoreError(f"{info['path']}: its streams differ from those of {infos[0]['path']}")
    seen: dict[str, str] = {}
    for path in inputs:
        for video_id in read_video_ids(path):
            if video_id in seen:
                raise StoreError(f"{path}: video {video_id!r} is also in {seen[video_id]}")
            seen[video_id] = str(path)
    widths = {name: shape["shape"][2] for name, shape in streams.items()}
    attrs = {k: v for k, v in infos[0]["attrs"].items() if k not in ("schema", "source", "created_by")}
    dtype = next(iter(streams.values()))["dtype"] if streams else "float16"
    with output_lock(out), writing(named):
        source = infos[0]["attrs"].get("source", "")
        with StoreWriter(out, widths, dtype=dtype, source=source, attrs=attrs, overwrite=overwrite) as writer:
            for path in inputs:
                store = read_store(path, tuple(widths), dtype=None)
                if store.video_ids:
                    writer.append(store.video_ids, **store.streams)
            return writer.count


RELEASE_FOLDERS = {"audio": "vggish", "visual": "res152", "motion": "r2plus1d_18"}


def compare_with_release(store: str | os.PathLike, release_dir: str | os.PathLike) -> dict[str, dict]:
    """Per stream, the cosine similarity between the store's features and the LLP release's `.npy` files of the
    same videos (by YouTube id: the first 11 characters of an id); videos without release files are left out.

    Returns stream -> {"videos", "mean", "min"} of the per-video cosine over the flattened (10, W) features.
    """
    from avvp.import_features import average_frames

    release_dir = Path(release_dir)
    if not release_dir.is_dir():
        raise AvvpError(f"--compare {release_dir}: no such folder; expected vggish/, res152/, r2plus1d_18/ in it")
    data = read_store(store, tuple(RELEASE_FOLDERS), widths=RAW_WIDTHS)
    report = {}
    for stream, folder in RELEASE_FOLDERS.items():
        cosines = []
        for row, video_id in enumerate(data.video_ids):
            path = release_dir / folder / f"{video_id[:11]}.npy"
            if "@" in video_id or not path.is_file():
                continue
            release = read_npy(path, AvvpError).astype(np.float32)
            if stream == "visual":
                if release.ndim != 2 or not 72 <= len(release) <= 80:
                    raise AvvpError(f"{path}: shape {release.shape}; expected (72..80, 2048) ResNet-152 frames")
                release = average_frames(release)
            ours = data[stream][row]
            if release.shape != ours.shape:
                raise AvvpError(f"{path}: shape {release.shape}; expected {ours.shape}")
            denominator = np.linalg.norm(ours) * np.linalg.norm(release)
            cosines.append(float(ours.ravel() @ release.ravel() / denominator) if denominator else 0.0)
        report[stream] = {
            "videos": len(cosines),
            "mean": float(np.mean(cosines)) if cosines else None,
            "min": float(np.min(cosines)) if cosines else None,
        }
    return report
