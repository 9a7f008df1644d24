"""avvp.benchmarks.label_curve: step-matched schedules, seed-paired differences, the table and the plot."""

import pytest

from avvp.benchmarks.label_curve import differences, format_curve, matched_schedule, plot_curve, summary


def test_every_fraction_gets_the_full_runs_optimizer_steps():
    # demo: 20 epochs of ceil(1400 / 16) = 88 batches, lr halved every 5 epochs.
    assert matched_schedule(1400, 1400, "demo", None) == {"epochs": 20, "lr_step": 5}
    # 140 videos: 9 batches an epoch; 88 / 9 x 20 epochs = 195.6 -> 196, lr_step 48.9 -> 49.
    assert matched_schedule(1400, 140, "demo", None) == {"epochs": 196, "lr_step": 49}
    assert matched_schedule(1400, 700, "demo", 10) == {"epochs": 20, "lr_step": 10}  # 10 full epochs, half the data


def test_differences_are_paired_by_seed():
    results = {"e2e": {"0.1": [30.0, 34.0, 32.0]}, "e2e-control": {"0.1": [29.0, 31.0, 32.0]}, "raw": {"0.1": [1.0]}}
    found = differences(results, [0.1])
    assert set(found) == {"e2e"}  # frozen has no control here
    # differences 1, 3, 0: mean 4/3, sample std sqrt(((1-4/3)^2 + (3-4/3)^2 + (0-4/3)^2) / 2) = sqrt(7/3)
    assert found["e2e"]["0.1"]["mean"] == pytest.approx(4 / 3)
    assert found["e2e"]["0.1"]["std"] == pytest.approx((7 / 3) ** 0.5)
    assert summary([5.0]) == {"mean": 5.0, "std": 0.0, "scores": [5.0]}


def test_table_and_plot(tmp_path):
    rows = {row: {"0.1": summary([30.0, 31.0]), "1.0": summary([60.0, 60.5])} for row in ("e2e", "e2e-control")}
    report = {"preset": "demo", "seeds": 2, "fractions": [0.1, 1.0], "llp_sim": True, "data": "x", "rows": rows,
              "differences": {"e2e": {"0.1": summary([3.0, 3.2]), "1.0": summary([-0.5, 0.5])}}}  # fmt: skip
    table = format_curve(report)
    assert "| **e2e - its control** | +3.1 ± 0.1 (> 2 std) | +0.0 ± 0.7 |" in table
    assert "LLP-sim: synthetic data" in table and "| 10% labels | 100% labels |" in table
    assert plot_curve(report, tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
