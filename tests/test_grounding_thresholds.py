"""Threshold calibration: FAISS neighbour similarities and quantiles against a brute-force numpy computation."""

import numpy as np
import pytest

from avvp.errors import ConfigError
from avvp.grounding.graph import EdgeRule
from avvp.grounding.thresholds import calibrate, neighbour_similarities, quantile_threshold
from avvp.store import write_store

SNIPPETS = 10


def brute_force_neighbours(snippets: np.ndarray, neighbours: int) -> np.ndarray:
    """(n, W) -> (n, k) the k largest cosine similarities of each snippet to the others, descending (float64)."""
    x = snippets.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)  # never a snippet with itself
    return -np.sort(-similarity, axis=1)[:, :neighbours]


def snippets_with_duplicates(rng: np.random.Generator) -> np.ndarray:
    snippets = rng.standard_normal((300, 24)).astype(np.float32)
    snippets[10] = snippets[11]  # a pair of exact duplicates
    snippets[20:32] = snippets[20] * rng.uniform(0.5, 2.0, (12, 1)).astype(np.float32)  # 12 alike after normalising
    snippets[40] = 0  # a zero snippet
    return snippets


@pytest.mark.parametrize("neighbours", [1, 3, 10])
def test_neighbour_similarities_match_brute_force(neighbours):
    snippets = snippets_with_duplicates(np.random.default_rng(neighbours))
    found = neighbour_similarities(snippets, neighbours)
    expected = brute_force_neighbours(snippets, neighbours)
    assert found.shape == (len(snippets), neighbours)
    np.testing.assert_allclose(np.sort(found, axis=1)[:, ::-1], expected, atol=1e-5)
    # the duplicated and the twelve alike keep their other copies at similarity 1 (only the self is dropped)
    assert found[10, 0] == pytest.approx(1.0, abs=1e-5) and found[11, 0] == pytest.approx(1.0, abs=1e-5)
    assert found[20:32, : min(neighbours, 11)] == pytest.approx(1.0, abs=1e-5)
    for q in (0.05, 0.5, 0.9, 0.99):
        assert quantile_threshold(found, q) == pytest.approx(np.quantile(expected, q), abs=1e-5)


def test_calibrate_on_a_store_matches_brute_force(tmp_path):
    rng = np.random.default_rng(5)
    videos = 60
    streams = {
        "visual": (rng.standard_normal((videos, SNIPPETS, 40)) + 2).astype(np.float32),
        "audio": rng.standard_normal((videos, SNIPPETS, 12)).astype(np.float32),
    }
    ids = [f"v{i:03d}" for i in range(videos)]
    store = write_store(tmp_path / "store.h5", ids, streams, dtype="float32")
    calibration = calibrate(store, neighbours=4, sample_videos=25, seed=7)
    assert calibration.sample_videos == 25
    rows = np.sort(np.random.default_rng(7).choice(videos, size=25, replace=False))  # the documented sample
    for modality in ("visual", "audio"):
        sample = streams[modality][rows].reshape(-1, streams[modality].shape[-1])
        expected = brute_force_neighbours(sample, 4)
        for q in (0.1, 0.5, 0.95):
            assert calibration.threshold(modality, q) == pytest.approx(np.quantile(expected, q), abs=1e-5)
    # the positive share at thresholds calibrated on the sample falls as the quantile rises
    shares = [
        calibration.positive_share(EdgeRule(calibration.threshold("visual", q), calibration.threshold("audio", q)))
        for q in (0.2, 0.5, 0.9)
    ]
    assert shares[0]["edges"] > shares[1]["edges"] > shares[2]["edges"]
    assert all(s["positive_pairs"] >= s["edges"] for s in shares)  # components only add pairs


@pytest.mark.parametrize("quantile", [0.0, 1.0, -0.2, 1.5])
def test_quantile_outside_the_open_interval_is_refused(tmp_path, quantile):
    rng = np.random.default_rng(0)
    streams = {name: rng.standard_normal((5, SNIPPETS, 8)).astype(np.float32) for name in ("audio", "visual")}
    calibration = calibrate(write_store(tmp_path / "s.h5", list("abcde"), streams), neighbours=2)
    with pytest.raises(
        ConfigError, match=f"--visual-quantile {quantile}: a quantile must lie strictly between 0 and 1"
    ):
        calibration.threshold("visual", quantile)


def test_too_few_snippets_for_the_neighbours():
    with pytest.raises(ConfigError, match="the sample holds 5 snippets; need more than --neighbours 5"):
        neighbour_similarities(np.ones((5, 4), dtype=np.float32), 5)
