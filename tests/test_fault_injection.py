"""SIGKILL at instants drawn from a seed (during checkpoint saves and anywhere), then --resume: the results equal
the uninterrupted run's (benchmarks/fault_injection.py; its `--kills 20` version is the long one)."""

import pytest

from benchmarks.fault_injection import inject, pretrain_data


@pytest.mark.parametrize("trainer", ["finetune", "pretrain"])
def test_killed_at_any_instant_resumes_to_the_uninterrupted_results(trainer, tiny_llp, tmp_path):
    data = tiny_llp if trainer == "finetune" else pretrain_data(tmp_path / "data")
    trials = inject(trainer, tmp_path, kills=2, seed=0, report=lambda line: None, data=data)
    assert trials[0].during_save  # the second instant is drawn from the run after start-up, saves included
    assert all(trial.killed and not trial.restarted for trial in trials)  # each resumed, from a checkpoint or none
    assert [trial.line() for trial in trials if not trial.ok] == []
