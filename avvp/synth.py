"""LLP-sim: a synthetic stand-in for LLP with the same files and schema (docs/design.md, "LLP-sim").

Event structure. Weak labels follow LLP's class frequencies and labels per video; each labelled class is
heard only, seen only, both or neither in LLP's proportions for that class; the snippets it covers follow
LLP's per-class coverage and LLP's 10-snippet event patterns per modality (visual events longer and
sparser than audio ones), and a class heard and seen has audio and visual patterns related as in LLP
(mostly equal, else one containing the other). All these figures come from `avvp/data/llp_stats.json`
(`scripts/llp_stats.py`). With real annotation files, train videos keep their ids and weak labels (their
timing is sampled as above) and val/test videos keep their ids and dense events. The training videos'
events, which the real LLP does not release, are written too (`LLPsim_train_audio.csv`,
`LLPsim_train_visual.csv`, eval format): the truth that modality-aware label refinement is scored against.

Features. Per modality, every latent class (the 25 LLP classes and 35 others, AudioSet-like) has a
prototype in a small latent space; related classes (instruments, engines, voices) share part of it. An
event in a video is its class prototype plus a per-video variation, at a per-video gain; a video has a
background that drifts slowly over its snippets; distractor events of the non-LLP classes appear
unlabelled; some videos are silent where nothing is heard; snippet noise is correlated over time. Fixed
random maps take the latent to VGGish-like audio (128, signed, a large shared offset), and to
non-negative ResNet-like visual (2048; smoothly rectified, as a mean of 8 frames' ReLU features is) and
R(2+1)D-like motion (512).
Consecutive snippets of one content are nearly parallel; different content is not.

Everything is drawn from generators seeded by (seed, purpose, chunk), so a seed gives byte-identical files.

Versions (SIM_VERSIONS; `avvp data synth --sim-version`). 1, the default: as above, with one set of look-alike
groups for every modality and each modality's variation of an event drawn apart. 2: half of an event's per-video
variation is common to its audio, visual and motion (one source, heard and seen), and visual and motion prototypes
are grouped by what looks alike (VISUAL_GROUPS) while audio keeps the sound-alike groups. Version 2's extra parts
come from generators of their own, so version 1's files stay byte-identical.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from avvp.annotations import EVAL_FILES, SPLIT_FILES, WeakLabels, load_split, write_events, write_weak_labels
from avvp.classes import CLASS_INDEX, NUM_CLASSES, NUM_SNIPPETS
from avvp.errors import ConfigError
from avvp.inputs import MAX_SEED
from avvp.io import check_writable
from avvp.modality_labels import TRAIN_TRUTH_FILES
from avvp.output import check_free_space, output_lock, publish, staging_folder, writing
from avvp.store import RAW_WIDTHS, StoreWriter

SPLITS = ("train", "val", "test")
LATENT_CLASSES = 60
"""Latent classes: the 25 LLP classes first, then 35 unlabelled ones (distractors in LLP-sim, content of pretrain)."""
LATENT_DIM = 96
CHUNK_VIDEOS = 1024
"""Videos rendered per chunk: memory stays bounded for any corpus size."""
ID_ALPHABET = np.array(list(string.ascii_letters + string.digits + "_-"))
LLP_FILE = "llp.h5"
PRETRAIN_FILE = "pretrain.h5"

# Groups of LLP classes that sound or look alike share part of their prototypes.
CLASS_GROUPS = (
    ("Cello", "Banjo", "Violin_fiddle", "Accordion", "Acoustic_guitar"),
    ("Car", "Chainsaw", "Lawn_mower", "Motorcycle", "Helicopter", "Vacuum_cleaner", "Blender"),
    ("Speech", "Singing", "Baby_laughter", "Baby_cry_infant_cry", "Cheering"),
    ("Dog", "Cat", "Chicken_rooster"),
    ("Fire_alarm", "Telephone_bell_ringing"),
    ("Clapping", "Basketball_bounce", "Frying_(food)"),
)
"""Version 1: one set of groups for every modality (what sounds alike also looks alike). Version 2: the audio
groups (they are sound-alike groups: tonal instruments, motors, voices, animal calls, bells, impacts)."""
AUDIO_GROUPS = CLASS_GROUPS
OWN_GROUPS = 6
"""Groups of unlabelled classes alone, besides the LLP classes' groups."""
VISUAL_GROUPS = (
    ("Speech", "Singing", "Cheering", "Clapping"),  # people: a face, a stage, a crowd
    ("Baby_laughter", "Baby_cry_infant_cry"),  # a baby
    ("Cello", "Violin_fiddle", "Banjo", "Acoustic_guitar", "Accordion"),  # an instrument in someone's hands
    ("Car", "Motorcycle"),  # road vehicles
    ("Chainsaw", "Lawn_mower"),  # outdoor power tools
    ("Vacuum_cleaner", "Blender", "Frying_(food)"),  # home interiors, kitchens
    ("Dog", "Cat"),  # pets
)
"""Version 2: look-alike groups of LLP classes. Where they differ from AUDIO_GROUPS one modality resolves what
the other cannot: an engine heard may be a car or a chainsaw, seen it is one of them; a person seen may be
speaking, singing or clapping, heard it is one of them."""


@dataclass(frozen=True)
class Preset:
    train: int
    val: int
    test: int
    pretrain: int


PRESETS = {
    "tiny": Preset(train=160, val=40, test=40, pretrain=200),
    "demo": Preset(train=1400, val=300, test=300, pretrain=3000),
    "paper": Preset(train=10000, val=649, test=1200, pretrain=29000),
}


@functools.cache
def llp_stats() -> dict:
    """The per-class figures of the real LLP annotations shipped with the package."""
    return json.loads(resources.files("avvp").joinpath("data/llp_stats.json").read_text())


# --------------------------------------------------------------------------------------------- events


class PatternSampler:
    """Draws 10-snippet event patterns: coverage from a per-class histogram, then a pattern of that coverage."""

    def __init__(self, coverage: np.ndarray, patterns: list[list[int]], smoothing: float = 20.0):
        # coverage (C, 11) counts per class; smoothed toward the all-class histogram so rare classes are sane.
        coverage = np.asarray(coverage, dtype=np.float64)
        pooled = coverage.sum(0) / max(coverage.sum(), 1)
        smoothed = np.concatenate([coverage + smoothing * pooled, pooled[None]])  # last row: any class
        smoothed[:, 0] = 0
        self.any_class = len(coverage)
        self.coverage_cdf = np.cumsum(smoothed / smoothed.sum(1, keepdims=True), axis=1)  # (C, 11)
        codes = np.array([code for code, _ in patterns], dtype=np.int64)
        counts = np.array([count for _, count in patterns], dtype=np.float64)
        popcount = _decode(codes).sum(1)
        self.by_coverage = {}
        for k in range(1, NUM_SNIPPETS + 1):
            keep = popcount == k
            if keep.any():
                self.by_coverage[k] = (codes[keep], np.cumsum(counts[keep]) / counts[keep].sum())
            else:  # never seen in LLP: one run of k snippets at a random place
                runs = np.array([((1 << k) - 1) << s for s in range(NUM_SNIPPETS - k + 1)])
                self.by_coverage[k] = (runs, np.arange(1, len(runs) + 1) / len(runs))

    def sample(self, rng: np.random.Generator, classes: np.ndarray) -> np.ndarray:
        """One pattern per entry of `classes` (M,) (a class index, or `any_class`): (M, 10) bool."""
        coverage = np.maximum(_draw(rng, self.coverage_cdf[classes]), 1)  # (M,) snippets covered
        pick = rng.random(len(classes))
        codes = np.zeros(len(classes), dtype=np.int64)
        for k, (table, cdf_k) in self.by_coverage.items():
            rows = coverage == k
            codes[rows] = table[np.minimum(np.searchsorted(cdf_k, pick[rows], side="right"), len(table) - 1)]
        return _decode(codes)


def _decode(codes: np.ndarray) -> np.ndarray:
    """Pattern integers (M,) to (M, 10) bool: snippet t is bit t."""
    return ((codes[:, None] >> np.arange(NUM_SNIPPETS)) & 1).astype(bool)


def _cdf_rows(counts: np.ndarray, smoothing: float = 5.0) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts + smoothing * counts.sum(0) / max(counts.sum(), 1)
    return np.cumsum(counts / counts.sum(-1, keepdims=True), axis=-1)


def _repeat_cdf(counts, n: int) -> np.ndarray:
    """The CDF of a histogram (K,), repeated for n draws: (n, K)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.broadcast_to(np.cumsum(counts / counts.sum()), (n, len(counts)))


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """Index drawn from each row of a CDF (..., K)."""
    return np.minimum((rng.random(cdf.shape[:-1])[..., None] >= cdf).sum(-1), cdf.shape[-1] - 1)


class EventModel:
    """Samples LLP-like event structure from the figures of `llp_stats.json`."""

    def __init__(self, stats: dict):
        self.stats = stats
        share = stats["modality_share"]
        # (25, 4): heard only, seen only, both, neither
        self.modality_cdf = _cdf_rows(
            np.stack([share["audio_only"], share["visual_only"], share["both"], share["neither"]], axis=1)
        )
        self.audio_patterns = PatternSampler(stats["coverage"]["audio"], stats["patterns"]["audio"])
        self.visual_patterns = PatternSampler(stats["coverage"]["visual"], stats["patterns"]["visual"])
        relation = stats["both_relation"]
        # (11, 4): odds of equal, visual superset, audio superset, other, by the number of snippets heard
        counts = np.stack([relation[k] for k in ("equal", "visual_superset", "audio_superset", "other")], axis=1)
        self.relation_cdf = _cdf_rows(counts.astype(np.float64), smoothing=1.0)
        self.label_sets = stats["label_sets"]

    def weak_labels(self, rng: np.random.Generator, n: int, group: str = "train") -> np.ndarray:
        """(n, 25) bool label sets as LLP combines them: `group` "train", or "eval" (val/test, more labels).

        The number of labels per video, then the first class (from the classes of one-label or of
        multi-label videos), then each further class by its co-occurrence with those already drawn.
        """
        sets = self.label_sets[group]
        count = np.maximum(_draw(rng, _repeat_cdf(sets["labels_per_video"], n)), 1)  # (n,) labels per video
        single = np.asarray(sets["single_class_count"], dtype=np.float64) + 0.5
        multi = np.asarray(sets["multi_class_count"], dtype=np.float64) + 0.5
        cooccurrence = np.asarray(sets["cooccurrence"], dtype=np.float64)
        labels = np.zeros((n, NUM_CLASSES), dtype=bool)
        weights = np.where((count == 1)[:, None], single, multi)  # (n, 25)
        for step in range(int(count.max(initial=0))):
            drawn = _draw(rng, np.cumsum(weights / weights.sum(1, keepdims=True), axis=1))
            active = np.flatnonzero(count > step)
            labels[active, drawn[active]] = True
            # next class: by co-occurrence with the classes drawn so far; 5% of the mass for unseen combinations
            together = labels @ cooccurrence  # (n, 25)
            weights = together + 0.05 * together.sum(1, keepdims=True) * multi / multi.sum() + 1e-9
            weights[labels] = 0
        return labels

    def timing(self, rng: np.random.Generator, weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Audio and visual events (n, 25, 10) bool for the labelled classes of `weak` (n, 25)."""
        video_index, class_index = np.nonzero(weak)
        kind = _draw(rng, self.modality_cdf[class_index])  # 0 heard only, 1 seen only, 2 both, 3 neither
        audio_rows = self.audio_patterns.sample(rng, class_index)
        visual_rows = self.visual_patterns.sample(rng, class_index)
        both = np.flatnonzero(kind == 2)
        visual_rows[both] = self.related_visual(rng, audio_rows[both], class_index[both])
        audio = np.zeros(weak.shape + (NUM_SNIPPETS,), dtype=bool)
        visual = np.zeros_like(audio)
        audio[video_index, class_index] = audio_rows & ((kind == 0) | (kind == 2))[:, None]
        visual[video_index, class_index] = visual_rows & ((kind == 1) | (kind == 2))[:, None]
        return audio, visual

    def related_visual(
        self, rng: np.random.Generator, audio_rows: np.ndarray, classes: np.ndarray, tries: int = 12
    ) -> np.ndarray:
        """Visual patterns (M, 10) for classes heard and seen, related to their audio patterns as in LLP.

        The relation (equal, visual strictly containing audio, audio strictly containing visual, or
        overlapping otherwise) is drawn with LLP's odds for that many snippets heard; the visual pattern
        is the first of `tries` draws from the class's visual patterns that satisfies it (the audio
        pattern itself when none does).
        """
        relation = _draw(rng, self.relation_cdf[audio_rows.sum(-1)])  # (M,)
        candidates = np.stack([self.visual_patterns.sample(rng, classes) for _ in range(tries)])  # (tries, M, 10)
        union = candidates | audio_rows
        equal = (candidates == audio_rows).all(-1)
        visual_covers = (union == candidates).all(-1) & ~equal
        audio_covers = (union == audio_rows).all(-1) & ~equal
        overlapping = (candidates & audio_rows).any(-1) & ~equal & ~visual_covers & ~audio_covers
        fits = np.choose(relation, [equal, visual_covers, audio_covers, overlapping])  # (tries, M)
        first = fits.argmax(0)
        chosen = candidates[first, np.arange(len(classes))]
        return np.where(fits.any(0)[:, None] & (relation != 0)[:, None], chosen, audio_rows)

    def unlabelled_events(self, rng: np.random.Generator, n: int, mix: EventMix) -> tuple[np.ndarray, np.ndarray]:
        """Unlabelled events of n videos over the K classes of `mix`: audio, visual (n, K, 10) bool.

        A video has i such classes with probability mix.count_p[i]; each is heard and seen with probability
        mix.both_p, else heard only or seen only (even odds); its timing follows LLP's patterns of any class.
        """
        weights = mix.class_weights(np.asarray(self.stats["train_class_count"], dtype=np.float64))  # (K,)
        count_p, both_p = mix.count_p, mix.both_p
        count = _draw(rng, _repeat_cdf(count_p, n))  # (n,)
        keys = np.log(weights) + rng.gumbel(size=(n, len(weights)))  # Gumbel top-k: without replacement
        rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
        video_index, column = np.nonzero(rank < count[:, None])
        audio_rows = self.audio_patterns.sample(rng, np.full(len(column), self.audio_patterns.any_class))
        visual_rows = self.visual_patterns.sample(rng, np.full(len(column), self.visual_patterns.any_class))
        u = rng.random(len(column))
        heard = (u < both_p) | (u >= both_p + (1 - both_p) / 2)
        seen = u < both_p + (1 - both_p) / 2
        both = np.flatnonzero(heard & seen)
        visual_rows[both] = self.related_visual(
            rng, audio_rows[both], np.full(len(both), self.visual_patterns.any_class)
        )
        audio = np.zeros((n, len(weights), NUM_SNIPPETS), dtype=bool)
        visual = np.zeros_like(audio)
        audio[video_index, column] = audio_rows & heard[:, None]
        visual[video_index, column] = visual_rows & seen[:, None]
        return audio, visual


# ------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureParams:
    """Strengths of the parts of the feature model, in latent units (a class prototype has norm 1)."""

    variation: tuple[float, float, float] = (0.7, 0.6, 0.8)
    """Per-video variation of an event around its class prototype: audio, visual, motion."""
    gain_sigma: float = 0.35
    """Log-normal spread of an event's strength in a video (audio and visual drawn apart)."""
    snippet_jitter: float = 0.1
    """Relative change of an event's strength from snippet to snippet."""
    background: tuple[float, float, float] = (0.9, 1.1, 0.8)
    """Norm of the per-video background (scene, ambience): audio, visual, motion."""
    drift: float = 0.25
    """Slow change of the background over the snippets (AR(1), coefficient 0.85)."""
    noise: tuple[float, float, float] = (0.3, 0.2, 0.35)
    """Snippet noise, weakly correlated over time (AR(1), coefficient 0.3): audio, visual, motion."""
    silent_videos: float = 0.2
    """Share of videos that are silent where no event is heard."""
    audio_noise: float = 0.08
    """Per-dimension noise of the audio features."""
    visual_noise: float = 0.04
    """Per-dimension noise of the visual features (frame noise left after averaging 8 frames)."""
    shared_variation: float = 0.0
    """Share of an event's per-video variation common to its audio, visual and motion: the one source's own traits
    (a breed, an instrument's make, a voice and its face) heard and seen. 0 (version 1): drawn apart per modality."""
    modality_groups: bool = False
    """Audio prototypes grouped by AUDIO_GROUPS and visual and motion ones by VISUAL_GROUPS; False (version 1):
    CLASS_GROUPS for all three."""


SIM_VERSIONS = {
    1: FeatureParams(),
    2: FeatureParams(shared_variation=0.5, modality_groups=True),
}
"""LLP-sim's versions: the feature model's settings of each. A version's files never change; a change toward
realism is a new version (README, "LLP-sim versions": what each changed and the figure that motivated it)."""
DEFAULT_SIM_VERSION = 1


@dataclass
class FeatureModel:
    """Fixed random parts of the feature model (prototypes, maps), all drawn from the seed."""

    prototypes: np.ndarray  # (3, LATENT_CLASSES, LATENT_DIM) unit rows: audio, visual, motion
    audio_map: np.ndarray  # (LATENT_DIM, 128)
    audio_offset: np.ndarray  # (128,)
    visual_map: np.ndarray  # (LATENT_DIM, 2048)
    visual_bias: np.ndarray  # (2048,)
    motion_map: np.ndarray  # (LATENT_DIM, 512)
    motion_bias: np.ndarray  # (512,)
    silence: np.ndarray  # (LATENT_DIM,) the latent of a silent snippet
    params: FeatureParams
    mixing: np.ndarray | None = None  # (3, LATENT_DIM, LATENT_DIM) rotations of a source's shared traits, or None

    @classmethod
    def create(cls, seed: int, params: FeatureParams | None = None) -> FeatureModel:
        params = params or SIM_VERSIONS[DEFAULT_SIM_VERSION]
        rng = np.random.default_rng([seed, 0])
        # the unlabelled classes join the LLP groups or groups of their own, so some resemble LLP classes
        group = _group_ids(rng, CLASS_GROUPS)
        prototypes = [_prototypes(rng, group, share, len(CLASS_GROUPS) + OWN_GROUPS) for share in (0.45, 0.35, 0.5)]
        f32 = np.float32
        model = cls(
            prototypes=np.stack(prototypes).astype(f32),
            audio_map=(rng.standard_normal((LATENT_DIM, 128)) * 0.9).astype(f32),
            audio_offset=(rng.normal(0.0, 0.35, 128) + rng.choice([-1.0, 1.0], 128) * 2.5).astype(f32),
            visual_map=(rng.standard_normal((LATENT_DIM, 2048)) * 0.32).astype(f32),
            visual_bias=rng.normal(-0.05, 0.25, 2048).astype(f32),
            motion_map=(rng.standard_normal((LATENT_DIM, 512)) * 0.5).astype(f32),
            motion_bias=rng.normal(-0.2, 0.3, 512).astype(f32),
            silence=(_unit(rng.standard_normal(LATENT_DIM)) * 1.5).astype(f32),
            params=params,
        )
        # Later versions' parts come from a generator of their own, so version 1's draws above stay as they were.
        extra = np.random.default_rng([seed, 0, 2])
        if params.modality_groups:
            audio_groups, visual_groups = _group_ids(extra, AUDIO_GROUPS), _group_ids(extra, VISUAL_GROUPS)
            audio_count, visual_count = len(AUDIO_GROUPS) + OWN_GROUPS, len(VISUAL_GROUPS) + OWN_GROUPS
            model.prototypes = np.stack(
                [
                    _prototypes(extra, audio_groups, 0.45, audio_count),
                    _prototypes(extra, visual_groups, 0.35, visual_count),
                    _prototypes(extra, visual_groups, 0.5, visual_count),  # motion moves with what is seen
                ]
            ).astype(f32)
        if params.shared_variation > 0:
            # per modality a fixed rotation of the source's traits: the same source, heard, seen and moving
            model.mixing = np.stack(
                [np.linalg.qr(extra.standard_normal((LATENT_DIM, LATENT_DIM)))[0] for _ in range(3)]
            ).astype(f32)
        return model

    def latent(self, rng: np.random.Generator, audio_on: np.ndarray, visual_on: np.ndarray) -> np.ndarray:
        """Latent snippets (3, n, 10, LATENT_DIM) of audio, visual, motion from events (n, K, 10) bool."""
        p = self.params
        n, k, _ = audio_on.shape
        scale = np.float32(1 / np.sqrt(LATENT_DIM))
        # one instance of each class present in a video: its prototype plus a per-video variation, at a gain
        video, cls = np.nonzero(audio_on.any(-1) | visual_on.any(-1))  # (P,) pairs
        variation = rng.standard_normal((3, len(video), LATENT_DIM), dtype=np.float32) * scale
        if p.shared_variation > 0:  # the source's own traits, the same for its sound, its look and its motion
            source = rng.standard_normal((len(video), LATENT_DIM), dtype=np.float32) * scale
            common = np.einsum("pl,mlk->mpk", source, self.mixing)  # (3, P, L)
            variation = np.sqrt(1 - p.shared_variation, dtype=np.float32) * variation
            variation += np.sqrt(p.shared_variation, dtype=np.float32) * common
        variation *= np.asarray(p.variation, dtype=np.float32)[:, None, None]
        instance = _unit(self.prototypes[:, cls] + variation)  # (3, P, L)
        gain = rng.lognormal(0.0, p.gain_sigma, (2, len(video))).astype(np.float32)
        gain = gain[[0, 1, 1]]  # (3, P): motion moves with the visual event
        on = np.stack([audio_on[video, cls], visual_on[video, cls]]).astype(np.float32)[[0, 1, 1]]  # (3, P, 10)
        on *= 1 + p.snippet_jitter * rng.standard_normal(on.shape, dtype=np.float32)
        latent = np.zeros((3, n, NUM_SNIPPETS, LATENT_DIM), dtype=np.float32)
        np.add.at(latent, (slice(None), video), (gain[..., None] * on)[..., None] * instance[:, :, None, :])
        # per-video background (scene, ambience) drifting slowly, and snippet noise weakly correlated in time
        latent += rng.standard_normal((3, n, 1, LATENT_DIM), dtype=np.float32) * (
            scale * np.asarray(p.background, dtype=np.float32)[:, None, None, None]
        )
        latent += _ar1(rng, latent.shape, rho=0.85) * (scale * p.drift)
        latent += _ar1(rng, latent.shape, rho=0.3) * (
            scale * np.asarray(p.noise, dtype=np.float32)[:, None, None, None]
        )
        # silence: in some videos, the snippets where nothing is heard carry no sound at all
        silent = (rng.random(n) < p.silent_videos)[:, None] & ~audio_on.any(1)  # (n, 10)
        quiet = self.silence + rng.standard_normal((n, NUM_SNIPPETS, LATENT_DIM), dtype=np.float32) * (0.03 * scale)
        latent[0] = np.where(silent[..., None], quiet, latent[0])
        return latent

    def render(self, rng: np.random.Generator, audio_on: np.ndarray, visual_on: np.ndarray) -> dict[str, np.ndarray]:
        """Features of n videos from their events over the latent classes: audio_on, visual_on (n, K, 10) bool."""
        p = self.params
        audio_latent, visual_latent, motion_latent = self.latent(rng, audio_on, visual_on)
        audio = self.audio_offset + _project(audio_latent, self.audio_map)  # (n, 10, 128), VGGish-like: centred, offset
        audio += rng.standard_normal(audio.shape, dtype=np.float32) * p.audio_noise
        # ResNet-like: the mean over 8 frames of a ReLU, smooth in expectation, hence a softplus; plus frame noise
        visual = _softplus(_project(visual_latent, self.visual_map) + self.visual_bias, 0.15)  # (n, 10, 2048)
        visual += rng.standard_normal(visual.shape, dtype=np.float32) * p.visual_noise
        np.maximum(visual, 0, out=visual)
        motion = _softplus(_project(motion_latent, self.motion_map) + self.motion_bias, 0.1)  # (n, 10, 512)
        return {"audio": audio, "visual": visual, "motion": motion}


def _group_ids(rng: np.random.Generator, groups: tuple[tuple[str, ...], ...]) -> np.ndarray:
    """(LATENT_CLASSES,) group of each latent class (-1: none): the LLP classes by `groups`; each unlabelled class
    joins one of them or one of OWN_GROUPS groups of unlabelled classes, at random."""
    group = np.full(LATENT_CLASSES, -1)
    for g, names in enumerate(groups):
        group[[CLASS_INDEX[name] for name in names]] = g
    group[NUM_CLASSES:] = rng.integers(0, len(groups) + OWN_GROUPS, LATENT_CLASSES - NUM_CLASSES)
    return group


def _prototypes(rng: np.random.Generator, group: np.ndarray, share: float, groups: int) -> np.ndarray:
    """(LATENT_CLASSES, LATENT_DIM) unit prototypes of classes in `groups` groups (`group`, -1 for none); a grouped
    class's prototype has `share` of its energy in its group's centre."""
    centres = _unit(rng.standard_normal((groups, LATENT_DIM)))
    own = _unit(rng.standard_normal((LATENT_CLASSES, LATENT_DIM)))
    return _unit(np.where(group[:, None] >= 0, np.sqrt(share) * centres[group] + np.sqrt(1 - share) * own, own))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _project(latent: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n, 10, L) @ (L, W) as one matrix product (a stacked matmul would call BLAS once per video)."""
    n, t, dim = latent.shape
    return (latent.reshape(n * t, dim) @ weights).reshape(n, t, weights.shape[1])


def _softplus(x: np.ndarray, temperature: float) -> np.ndarray:
    """A smooth ReLU: temperature * log(1 + exp(x / temperature)), computed stably."""
    return np.maximum(x, 0) + temperature * np.log1p(np.exp(-np.abs(x) / temperature))


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """Unit-variance float32 noise correlated over axis -2 (snippets) with coefficient rho."""
    out = rng.standard_normal(shape, dtype=np.float32)
    scale = np.float32(np.sqrt(1 - rho**2))
    for t in range(1, shape[-2]):
        out[..., t, :] = rho * out[..., t - 1, :] + scale * out[..., t, :]
    return out


# ------------------------------------------------------------------------------------------- corpora


@dataclass
class LlpLayout:
    """Ids and events of the labelled LLP-sim videos (train, val, test in that order)."""

    video_ids: list[str]
    split_sizes: dict[str, int]
    weak: np.ndarray  # (N, 25) bool
    audio: np.ndarray  # (N, 25, 10) bool
    visual: np.ndarray  # (N, 25, 10) bool

    def split_slice(self, split: str) -> slice:
        start = 0
        for name in SPLITS:
            if name == split:
                return slice(start, start + self.split_sizes[name])
            start += self.split_sizes[name]
        raise KeyError(split)


def random_video_ids(rng: np.random.Generator, n: int, taken: set[str] = frozenset()) -> list[str]:
    """LLP-style filenames `YTID_start_end` with random 11-character YouTube ids, unique and not in `taken`."""
    ids: list[str] = []
    seen = set(taken)
    while len(ids) < n:
        m = n - len(ids)
        letters = ID_ALPHABET[rng.integers(0, len(ID_ALPHABET), (m, 11))]
        start = rng.integers(0, 60, m) * 10
        for row, s in zip(letters, start.tolist(), strict=True):
            video_id = f"{''.join(row)}_{s}_{s + 10}"
            if video_id not in seen:
                seen.add(video_id)
                ids.append(video_id)
    return ids


def llp_layout(preset: Preset, seed: int, events: EventModel, annotations: Path | None) -> LlpLayout:
    """The labelled videos: sampled from the figures, or ids/labels/events from real annotation files."""
    rng = np.random.default_rng([seed, 1])
    sizes = {"train": preset.train, "val": preset.val, "test": preset.test}
    if annotations is None:
        n = sum(sizes.values())
        weak = np.concatenate(
            [events.weak_labels(rng, sizes["train"], "train"), events.weak_labels(rng, n - sizes["train"], "eval")]
        )
        audio, visual = events.timing(rng, weak)
        return LlpLayout(random_video_ids(rng, n), sizes, weak, audio, visual)
    ids, weak, audio, visual = [], [], [], []
    for name in SPLITS:
        split = load_split(annotations, name)
        count = min(sizes[name], len(split.video_ids))
        sizes[name] = count
        ids += split.video_ids[:count]
        weak.append(split.weak.labels[:count])
        if split.dense is None:
            a, v = events.timing(rng, split.weak.labels[:count])
        else:
            a, v = split.dense.audio[:count], split.dense.visual[:count]
        audio.append(a)
        visual.append(v)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{annotations}: a video is listed in more than one split")
    return LlpLayout(ids, sizes, np.concatenate(weak), np.concatenate(audio), np.concatenate(visual))


@dataclass(frozen=True)
class EventMix:
    """The unlabelled events of a corpus's videos: how many a video has, of which classes, how often both.

    The classes are the 35 latent classes outside LLP, with the 25 LLP classes before them when `llp_share` > 0.
    """

    count_p: tuple[float, ...]
    """Probability that a video has 0, 1, 2, ... such events (each of another class)."""
    both_p: float
    """Probability that an event is heard and seen; otherwise it is heard only or seen only, at even odds."""
    llp_share: float = 0.0
    """Share of the class mass on the LLP classes, each as frequent as in LLP's training split (count + 1);
    0: no LLP class."""
    zipf_exponent: float = 0.0
    """The other classes' mass falls off as 1 / rank ** zipf_exponent (0: equally likely)."""

    def class_weights(self, llp_class_count: np.ndarray) -> np.ndarray:
        """(K,) relative weights of the classes drawn from (K = 35, or 60 with the LLP classes first)."""
        other = 1 / np.arange(1, LATENT_CLASSES - NUM_CLASSES + 1) ** self.zipf_exponent  # (35,)
        if self.llp_share == 0:
            return other
        llp = llp_class_count + 1  # (25,)
        return np.concatenate([self.llp_share * llp / llp.sum(), (1 - self.llp_share) * other / other.sum()])


DISTRACTORS = EventMix(count_p=(0.45, 0.4, 0.15), both_p=0.3)
"""The unlabelled distractors of LLP-sim's labelled videos (llp.h5): up to two, of the non-LLP classes."""
PRETRAIN_MIX = EventMix(count_p=(0.0, 0.45, 0.4, 0.15), both_p=0.7, llp_share=0.5, zipf_exponent=0.8)
"""The content of LLP-sim's pretraining videos (pretrain.h5), AudioSet-like: one to three events, mostly heard
and seen, half the class mass on the LLP classes and half on the others (Zipf)."""


def _with_distractors(
    rng: np.random.Generator, events: EventModel, audio: np.ndarray, visual: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Extend (n, 25, 10) events to all latent classes with unlabelled distractor events: (n, 60, 10)."""
    extra_audio, extra_visual = events.unlabelled_events(rng, len(audio), DISTRACTORS)
    return np.concatenate([audio, extra_audio], axis=1), np.concatenate([visual, extra_visual], axis=1)


def _write_corpus(
    path: Path,
    video_ids: list[str],
    events_of_chunk: Callable[[np.random.Generator, slice], tuple[np.ndarray, np.ndarray]],
    model: FeatureModel,
    seed: tuple[int, int],
    source: str,
    attrs: dict,
    on_progress: Callable[[int], None],
) -> None:
    """Render and write a feature store chunk by chunk; chunk i draws from the generator seeded (*seed, i)."""
    with StoreWriter(path, RAW_WIDTHS, dtype="float16", source=source, attrs=attrs) as writer:
        for index, start in enumerate(range(0, len(video_ids), CHUNK_VIDEOS)):
            rows = slice(start, min(start + CHUNK_VIDEOS, len(video_ids)))
            rng = np.random.default_rng([*seed, index])
            audio_on, visual_on = events_of_chunk(rng, rows)
            writer.append(video_ids[rows], **model.render(rng, audio_on, visual_on))
            on_progress(rows.stop - rows.start)


def pretrain_chunk_events(events: EventModel, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The latent events of n pretraining videos (PRETRAIN_MIX): audio, visual (n, 60, 10) bool.

    They are the first draws of a chunk's generator (`latent_pretrain_events` replays them).
    """
    return events.unlabelled_events(rng, n, PRETRAIN_MIX)


def latent_pretrain_events(preset: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The latent events behind pretrain.h5 of LLP-sim (`preset`, `seed`): audio, visual (N, 60, 10) bool.

    Replayed from the generators that wrote the store (each chunk draws its events first), in the store's order;
    for diagnostics of the toolkit's own data only (e.g. how well grounding labels predict shared events).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    events, count = EventModel(llp_stats()), PRESETS[preset].pretrain
    chunks = [
        pretrain_chunk_events(events, np.random.default_rng([seed, 4, index]), min(CHUNK_VIDEOS, count - start))
        for index, start in enumerate(range(0, count, CHUNK_VIDEOS))
    ]
    return np.concatenate([audio for audio, _ in chunks]), np.concatenate([visual for _, visual in chunks])


def output_paths(out: Path) -> dict[str, Path]:
    """Every file `synthesize` writes into `out`."""
    files = {"llp": out / LLP_FILE, "pretrain": out / PRETRAIN_FILE}
    files.update({name: out / SPLIT_FILES[name] for name in SPLITS})
    files.update({f"eval_{name}": out / filename for name, filename in EVAL_FILES.items()})
    files.update({f"train_{name}": out / filename for name, filename in TRAIN_TRUTH_FILES.items()})
    return files


def synthesize(
    out: Path,
    preset: str = "tiny",
    seed: int = 0,
    annotations: Path | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    version: int = DEFAULT_SIM_VERSION,
) -> dict:
    """Write an LLP-sim corpus into `out`: llp.h5, the five LLP annotation files, the training truth and pretrain.h5.

    `version`: the feature model's version (SIM_VERSIONS), recorded in both stores (`sim_version`; absent for 1).

    With `annotations` (a folder of real LLP files) the labelled videos take their ids, weak labels and
    (val/test) dense events from it, up to the preset's number per split. `on_progress(done, total)` is
    called after each chunk of videos. Returns a summary: preset, seed, source, videos per split, paths.
    One writer at a time per `out` (`avvp.runs.output_lock`); a full disk is a one-line error, nothing left.
    """
    out = Path(out)
    existed = out.exists()
    with output_lock(out), writing(out):
        try:
            return _synthesize(out, preset, seed, annotations, overwrite, on_progress, version)
        except BaseException:
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # made for this corpus, which failed: nothing stays
            raise


def _synthesize(
    out: Path,
    preset: str,
    seed: int,
    annotations: Path | None,
    overwrite: bool,
    on_progress: Callable[[int, int], None] | None,
    version: int,
) -> dict:
    if version not in SIM_VERSIONS:
        raise ConfigError(f"--sim-version {version}: expected one of {', '.join(map(str, SIM_VERSIONS))}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: must be at least 0 and at most {MAX_SEED:,}")
    out = Path(out)
    files = output_paths(out)
    for path in files.values():  # every output is checked before any is computed or replaced
        check_writable(path, overwrite)
    sizes = PRESETS[preset]
    events = EventModel(llp_stats())
    layout = llp_layout(sizes, seed, events, Path(annotations) if annotations is not None else None)
    model = FeatureModel.create(seed, SIM_VERSIONS[version])
    pretrain_ids = random_video_ids(np.random.default_rng([seed, 2]), sizes.pretrain, taken=set(layout.video_ids))
    total = len(layout.video_ids) + len(pretrain_ids)
    check_free_space(out, total * NUM_SNIPPETS * sum(RAW_WIDTHS.values()) * 2)  # float16 features; HDF5 needs it
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, total)

    def llp_events(rng: np.random.Generator, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        return _with_distractors(rng, events, layout.audio[rows], layout.visual[rows])

    def pretrain_events(rng: np.random.Generator, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        return pretrain_chunk_events(events, rng, rows.stop - rows.start)

    source = "LLP-sim" + (f" (annotations {annotations})" if annotations is not None else "")
    attrs = {"preset": preset, "seed": seed, "latent_classes": LATENT_CLASSES}
    if version != 1:  # absent: version 1, as in every store written before there were versions (same bytes)
        attrs["sim_version"] = version
    # Everything is written into a staging folder beside the outputs and moved into place at the end, so a
    # failure leaves no partial corpus behind.
    out.mkdir(parents=True, exist_ok=True)
    # Everything is staged in a folder inside the output (avvp.output.staging_folder) and moved into place.
    with staging_folder(out, "synth") as staging:
        staged = output_paths(staging)
        for name in SPLITS:
            rows = layout.split_slice(name)
            write_weak_labels(staged[name], WeakLabels(layout.video_ids[rows], layout.weak[rows]))
        evaluated = slice(layout.split_slice("val").start, len(layout.video_ids))
        write_events(staged["eval_audio"], layout.video_ids[evaluated], layout.audio[evaluated])
        write_events(staged["eval_visual"], layout.video_ids[evaluated], layout.visual[evaluated])
        trained = layout.split_slice("train")
        write_events(staged["train_audio"], layout.video_ids[trained], layout.audio[trained])
        write_events(staged["train_visual"], layout.video_ids[trained], layout.visual[trained])
        _write_corpus(staged["llp"], layout.video_ids, llp_events, model, (seed, 3), source, attrs, progress)
        _write_corpus(
            staged["pretrain"], pretrain_ids, pretrain_events, model, (seed, 4), f"{source} pretrain", attrs, progress
        )
        for name, path in staged.items():
            publish(path, files[name])
    return {
        "out": str(out),
        "preset": preset,
        "seed": seed,
        "sim_version": version,
        "source": "annotations" if annotations is not None else "stats",
        "videos": {**layout.split_sizes, "pretrain": len(pretrain_ids)},
        "files": {name: str(path) for name, path in files.items()},
    }
