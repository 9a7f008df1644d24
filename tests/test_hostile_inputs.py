"""The hostile-input harness: every command of the command lines, run on the inputs of `benchmarks.hostile.CASES`.

Each case holds the invariants of the output and input layers (benchmarks/hostile.py says which): one error
line naming the file, field or option, or exit 0; nothing outside the case's folder touched; nothing staged
left; memory under a cap. A command without cases fails `test_every_command_has_cases`: add its cases to
`COMMAND_CASES` in benchmarks/hostile.py. The long version: `python -m benchmarks.hostile --cases 2000`.
"""

from __future__ import annotations

import pytest
from conftest import run_cli, trained_tiny_run

from benchmarks.hostile import CASES, COMMAND_CASES, Sandbox, commands, describe, run_case


def test_every_command_has_cases():
    assert [command for command in commands() if not COMMAND_CASES.get(command)] == []
    assert [command for command in COMMAND_CASES if command not in commands()] == []


@pytest.fixture(scope="module")
def tiny_run(tiny_llp, tmp_path_factory):
    return trained_tiny_run("base", tiny_llp, tmp_path_factory.mktemp("hostile_run") / "run")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_input_holds_the_invariants(case, tiny_llp, tmp_path, request):
    run = request.getfixturevalue("tiny_run") if case.needs_run else None
    outcome = run_case(case, Sandbox(tmp_path, tiny_llp, run), runner=run_cli)
    assert outcome.violations == [], describe(outcome)


def test_the_memory_cap_holds_inside_a_case():
    import numpy as np

    from benchmarks.hostile import memory_cap

    with memory_cap(256 << 20), pytest.raises(MemoryError):
        np.ones(1 << 30, dtype=np.uint8)  # 1 GiB past a 256 MiB cap
    np.ones(1 << 28, dtype=np.uint8)  # the cap is gone after the block


def test_the_harness_sees_a_traceback_a_touched_sentinel_and_a_staged_file(tiny_llp, tmp_path):
    """A command that breaks every invariant at once is reported for each (the harness can fail)."""
    from benchmarks.hostile import Case

    def vandal(main, *args):
        (sandbox.sentinel / "victim.txt").write_text("overwritten")
        (sandbox.work / ".out.stage-abcdefgh.tmp").write_text("left")
        return 1, "", "Traceback (most recent call last):\nValueError: boom\n"

    sandbox = Sandbox(tmp_path, tiny_llp)
    case = Case("avvp data baselines", "vandal", lambda sb: ["--annotations", sb.corpus], ("baselines",))
    outcome = run_case(case, sandbox, runner=vandal)
    found = " | ".join(outcome.violations)
    for violation in ("a traceback", "not exactly one error line", "lacks", "changed outside", "left behind"):
        assert violation in found, found
