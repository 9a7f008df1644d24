"""What a new user meets first: the quickstart's log, and the README's examples run as written after it.

One tiny run of `scripts/quickstart.sh` (AVVP_PRESET=tiny, the same steps as the default) in a scratch copy of
the scripts makes `runs/quickstart/` there; then every bash block of README.md runs in that folder, as a user runs
it after the quickstart and `source .venv/bin/activate` (here: this interpreter's bin first on PATH), with the
README's own paths. The substitutions, as README.md ("How the examples are tested") states them: `--preset demo`
becomes `--preset tiny`, and the activation line is a no-op. A block preceded by `<!-- skip-test: REASON -->` is
not run (real LLP, a GPU, weights, placeholders or minutes of work).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!--\s*skip-test:\s*(.+?)\s*-->")
ESCAPE = "\x1b"


def readme_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """Each ```bash block of a README: (line of its fence, its code, the skip reason or None)."""
    blocks, lines = [], text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            start, code = index, []
            index += 1
            while lines[index].strip() != "```":
                code.append(lines[index])
                index += 1
            previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
            reason = SKIP.search(previous)
            blocks.append((start + 1, "\n".join(code), reason.group(1) if reason else None))
        index += 1
    return blocks


def as_tested(code: str) -> str:
    """A block as the test runs it (README.md, "How the examples are tested")."""
    code = re.sub(r"^\s*source \.venv/bin/activate.*$", "true", code, flags=re.M)
    return code.replace("--preset demo", "--preset tiny")


def user_env() -> dict[str, str]:
    """This interpreter's environment as a user's shell after activation: its bin first on PATH, this checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "COV_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("COLUMNS", None)
    return env


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, str]:
    """A scratch checkout (scripts/ copied) after `AVVP_PRESET=tiny bash scripts/quickstart.sh > log`: (it, log)."""
    root = tmp_path_factory.mktemp("newcomer")
    shutil.copytree(REPO / "scripts", root / "scripts")
    env = user_env() | {
        "AVVP_PRESET": "tiny",
        "AVVP_SKIP_SETUP": "1",
        "AVVP_VENV": str(Path(sys.executable).parents[1]),
    }
    done = subprocess.run(  # stdout and stderr into one log, as `> log 2>&1` writes it
        ["bash", "scripts/quickstart.sh"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = done.stdout
    assert done.returncode == 0, log[-3000:]
    return root, log


def test_the_quickstart_log_fits_100_columns_without_escape_codes(quickstart):
    root, log = quickstart
    assert ESCAPE not in log  # redirected to a file: no bold, no colours
    assert [line for line in log.splitlines() if len(line) > 100] == []
    steps = re.findall(r"^\(step: (\d+) s\)$", log, flags=re.M)
    assert len(steps) == 11  # each step says its time
    assert "run-e2e minus run-e2e-control: " in log and "source " in log.splitlines()[-1]
    assert not list((root / "runs" / "quickstart").glob("*/checkpoints"))  # finished runs keep no checkpoints


def test_the_readme_blocks_are_marked_and_parsed():
    blocks = readme_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    runnable = [block for block in blocks if block[2] is None]
    assert len(runnable) >= 5 and len(blocks) > len(runnable)
    for line, code, reason in blocks:
        if reason is None:  # a synopsis ([--option], UPPER placeholders) cannot run as written: mark it
            assert not re.search(r"\[--|\bDIR\b|\bID1\b|\.\.\. ", code), f"README.md:{line}: mark it skip-test"


def test_every_runnable_readme_block_runs_after_the_quickstart(quickstart):
    root, _ = quickstart
    failed = []
    for line, code, reason in readme_blocks((REPO / "README.md").read_text(encoding="utf-8")):
        if reason is not None:
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", as_tested(code)],
            cwd=root,
            env=user_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            failed.append(f"README.md:{line}: exit {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
    assert failed == []
