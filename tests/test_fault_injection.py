"""SIGKILL at instants drawn from a seed (during checkpoint saves and anywhere), then --resume: the results equal
the uninterrupted run's (benchmarks/fault_injection.py; its `--kills 20` version is the long one).

`inject` forks its trainers. A fork copies only the forking thread, so it runs in a fresh interpreter here: the
test process holds threads of earlier tests (PyAV's decoder threads, torch's pools) whose locks a forked child
could inherit held, and then wait on forever. That interpreter imports the trainer before it forks (an import
starts no thread), so that the five runs of each test do not import torch each.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DRIVER = """
import json, sys
from pathlib import Path
from avvp.benchmarks.fault_injection import inject, pretrain_data

trainer, work, data = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
import torch._dynamo  # imported once here, not by each forked run (torch's optimizers import it on first use)
if trainer == "finetune":
    import avvp.finetune.train
else:
    import avvp.pretrain.train
data = Path(data) if trainer == "finetune" else pretrain_data(work / "data")
trials = inject(trainer, work, kills=2, seed=0, report=lambda line: None, data=data)
print(json.dumps([
    {"during_save": t.during_save, "killed": t.killed, "restarted": t.restarted, "ok": t.ok, "line": t.line()}
    for t in trials
]))
"""


@pytest.mark.parametrize("trainer", ["finetune", "pretrain"])
def test_killed_at_any_instant_resumes_to_the_uninterrupted_results(trainer, tiny_llp, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, trainer, str(tmp_path), str(tiny_llp)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    trials = json.loads(done.stdout.strip().splitlines()[-1])
    assert trials[0]["during_save"]  # the second instant is drawn from the run after start-up, saves included
    assert all(trial["killed"] and not trial["restarted"] for trial in trials)  # each resumed, from a checkpoint
    assert [trial["line"] for trial in trials if not trial["ok"]] == []
