"""Snippet graphs and components: hand-worked cases, and the fast engine against networkx and a per-pair oracle."""

import numpy as np
import pytest

from avvp.avg_labels import read_avg_labels
from avvp.errors import ConfigError
from avvp.grounding.build import GroundingConfig, build
from avvp.grounding.graph import (
    ENGINES,
    EdgeRule,
    adjacency,
    components_fast,
    components_networkx,
    cosine_similarity,
    ground,
    label_components,
    silent_snippets,
)
from avvp.store import write_store

SNIPPETS = 10


def axis_features(vectors: dict[int, list[float]], width: int = 32) -> np.ndarray:
    """(1, 10, width) features: the given snippets get the given vectors (in the first axes), every other
    snippet an axis of its own (orthogonal to everything)."""
    features = np.zeros((1, SNIPPETS, width), dtype=np.float32)
    axis = max((len(v) for v in vectors.values()), default=0)
    for snippet in range(SNIPPETS):
        if snippet in vectors:
            features[0, snippet, : len(vectors[snippet])] = vectors[snippet]
        else:
            features[0, snippet, axis] = 1.0
            axis += 1
    return features


def segmented_features(rng: np.random.Generator, videos: int, width: int, noise: float = 0.1) -> np.ndarray:
    """(videos, 10, width) snippets in random segments: cosine ~0.99 within a segment, ~0 across.

    Video 0 has ten segments of one snippet, video 1 one segment of ten, the others 1..10 segments at random.
    """
    features = np.empty((videos, SNIPPETS, width), dtype=np.float32)
    for video in range(videos):
        count = SNIPPETS if video == 0 else 1 if video == 1 else int(rng.integers(1, SNIPPETS + 1))
        segment = rng.permutation(SNIPPETS) if count == SNIPPETS else rng.integers(0, count, SNIPPETS)
        centres = rng.standard_normal((count, width)).astype(np.float32)
        features[video] = centres[segment] + noise * rng.standard_normal((SNIPPETS, width)).astype(np.float32)
    return features


def angle(degrees: float) -> list[float]:
    return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_chain_is_one_component_though_its_ends_differ(engine):
    # cos 14 deg = 0.970 >= 0.96 between neighbours of the chain; cos 28 deg = 0.883 between its ends
    visual = axis_features({0: angle(0), 1: angle(14), 2: angle(28)})
    audio = axis_features({})
    assert cosine_similarity(visual)[0, 0, 2] < 0.96
    components = ground(audio, visual, EdgeRule(0.96, 0.99), engine)
    np.testing.assert_array_equal(components[0], [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_or_joins_on_either_modality_and_needs_both(engine):
    # snippets 0-1 alike in vision only, 2-3 in sound only, 4-5 in both; components numbered by first snippet
    visual = axis_features({0: [1, 0, 0], 1: [1, 0, 0], 4: [0, 1, 0], 5: [0, 1, 0]})
    audio = axis_features({2: [1, 0, 0], 3: [1, 0, 0], 4: [0, 1, 0], 5: [0, 1, 0]})
    either = ground(audio, visual, EdgeRule(0.9, 0.9, "or"), engine)
    both = ground(audio, visual, EdgeRule(0.9, 0.9, "and"), engine)
    np.testing.assert_array_equal(either[0], [0, 0, 1, 1, 2, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(both[0], [0, 1, 2, 3, 4, 4, 5, 6, 7, 8])


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_silent_snippets_get_no_edge(engine):
    # 0-1-2 and 3-4 alike visually; 1 and 4 are quiet, so their sounds alike: all five join through them
    silence = np.zeros(32, dtype=np.float32)
    silence[15] = 1.0
    visual = axis_features({0: [1, 0], 1: [1, 0], 2: [1, 0], 3: [0, 1], 4: [0, 1]})
    audio = axis_features({1: [0] * 15 + [0.5], 4: [0] * 14 + [0.1, 0.99]})  # 4: cosine 0.995 to silence
    rule = EdgeRule(0.9, 0.9)
    np.testing.assert_array_equal(ground(audio, visual, rule, engine)[0], [0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
    silent = silent_snippets(audio, silence, 0.99)
    np.testing.assert_array_equal(silent[0], [False, True, False, False, True] + [False] * 5)
    with_silence = ground(audio, visual, rule, engine, silence=silence, silence_threshold=0.99)
    np.testing.assert_array_equal(with_silence[0], [0, 1, 0, 2, 3, 4, 5, 6, 7, 8])
    lenient = ground(audio, visual, rule, engine, silence=silence, silence_threshold=0.999)
    np.testing.assert_array_equal(lenient[0], [0, 1, 0, 2, 2, 3, 4, 5, 6, 7])


def test_all_separate_and_all_joined():
    separate = np.zeros((1, SNIPPETS, SNIPPETS), dtype=bool)
    joined = ~np.eye(SNIPPETS, dtype=bool)[None]
    path = np.zeros((1, SNIPPETS, SNIPPETS), dtype=bool)  # 9 - 8 - ... - 0: the longest path, 9 edges
    path[0, np.arange(9), np.arange(1, 10)] = path[0, np.arange(1, 10), np.arange(9)] = True
    np.testing.assert_array_equal(label_components(separate)[0], np.arange(SNIPPETS))
    np.testing.assert_array_equal(label_components(joined)[0], np.zeros(SNIPPETS))
    np.testing.assert_array_equal(label_components(path)[0], np.zeros(SNIPPETS))


def test_cosine_similarity_matches_per_pair_cosines():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((20, SNIPPETS, 48)).astype(np.float16)
    features[3, 4] = 0  # a zero snippet: similarity 0 to everything
    similarity = cosine_similarity(features)
    x = features.astype(np.float64)
    for video in range(len(x)):
        for i in range(SNIPPETS):
            for j in range(SNIPPETS):
                norm = np.linalg.norm(x[video, i]) * np.linalg.norm(x[video, j])
                expected = x[video, i] @ x[video, j] / norm if norm else 0.0
                assert similarity[video, i, j] == pytest.approx(expected, abs=1e-5)
    assert similarity.dtype == np.float32
    np.testing.assert_array_equal(similarity, similarity.transpose(0, 2, 1))  # exactly: edges are undirected
    assert cosine_similarity(features.astype(np.float32)) == pytest.approx(similarity, abs=1e-6)


def test_cosine_similarity_keeps_nan_visible():
    features = np.ones((2, SNIPPETS, 8), dtype=np.float16)
    features[1, 3, 5] = np.nan
    similarity = cosine_similarity(features)
    assert np.isfinite(similarity[0]).all() and not np.isfinite(similarity[1]).all()


@pytest.mark.parametrize("density", [0.0, 0.05, 0.1, 0.2, 0.5, 1.0])
def test_label_components_against_networkx_on_random_graphs(density):
    rng = np.random.default_rng(int(density * 100))
    edges = np.triu(rng.random((500, SNIPPETS, SNIPPETS)) < density, 1)
    similarity = (edges | edges.transpose(0, 2, 1)).astype(np.float32)
    nothing = np.zeros_like(similarity)
    rule = EdgeRule(0.5, 0.5)
    np.testing.assert_array_equal(
        components_fast(similarity, nothing, rule), components_networkx(similarity, nothing, rule)
    )


@pytest.mark.parametrize("rule", ["or", "and"])
def test_engines_agree_on_segmented_batches_with_silence(rule):
    rng = np.random.default_rng(2)
    visual_sim = cosine_similarity(segmented_features(rng, 300, 32))
    audio_sim = cosine_similarity(segmented_features(rng, 300, 16))
    silent = rng.random((300, SNIPPETS)) < 0.1
    edge_rule = EdgeRule(0.9, 0.9, rule)
    fast = components_fast(visual_sim, audio_sim, edge_rule, silent)
    np.testing.assert_array_equal(fast, components_networkx(visual_sim, audio_sim, edge_rule, silent))
    assert (adjacency(visual_sim, audio_sim, edge_rule, silent)[silent] == 0).all()


def test_engines_write_identical_label_files_with_every_component_size(tmp_path):
    rng = np.random.default_rng(3)
    videos = 400
    ids = [f"video{i:04d}" for i in range(videos)]
    streams = {"visual": segmented_features(rng, videos, 64), "audio": segmented_features(rng, videos, 32)}
    store = write_store(tmp_path / "store.h5", ids, streams)
    labels = {}
    for engine in ENGINES:
        out = tmp_path / f"{engine}.h5"
        build(GroundingConfig(store, out, 0.9, 0.9, engine=engine, batch_size=96, show_progress=False))
        labels[engine] = read_avg_labels(out)
    fast, reference = labels["fast"], labels["networkx"]
    np.testing.assert_array_equal(fast.components, reference.components)
    assert fast.video_ids == ids and fast.attrs["engine"] == "fast" and reference.attrs["engine"] == "networkx"
    components = fast.components
    assert components[0].tolist() == list(range(SNIPPETS)) and components[1].tolist() == [0] * SNIPPETS
    sizes = {int(size) for row in components for size in np.bincount(row) if size}
    assert sizes == set(range(1, SNIPPETS + 1))
    assert set((components.max(axis=1) + 1).tolist()) >= {1, 10}
    first_seen = [list(dict.fromkeys(row.tolist())) for row in components]  # numbered by first snippet
    assert all(order == list(range(len(order))) for order in first_seen)


def test_edge_rule_checks_its_values():
    with pytest.raises(ConfigError, match=r"--visual-threshold 1.5: a cosine threshold must lie in \[-1, 1\]"):
        EdgeRule(1.5, 0.9)
    with pytest.raises(ConfigError, match="--rule 'xor'"):
        EdgeRule(0.9, 0.9, "xor")
    with pytest.raises(ConfigError, match="--engine 'igraph'"):
        ground(np.zeros((1, SNIPPETS, 4)), np.zeros((1, SNIPPETS, 4)), EdgeRule(0.9, 0.9), "igraph")
