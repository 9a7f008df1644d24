"""Ctrl-C in `python -m avvp.benchmarks.NAME` ends as the console scripts do: one line, "interrupted", exit 130."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN_MODULES = sorted(
    f"avvp.benchmarks.{path.stem}"
    for path in (ROOT / "benchmarks").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
)

# Runs each module as `python -m` does (runpy, __name__ == "__main__"), with Ctrl-C arriving while it reads its
# options (every benchmark starts with argparse), and reports its exit status and what it printed on stderr.
PROBE = """
import argparse, contextlib, io, json, runpy, sys, warnings

# One process runs them all: a module another one imported is run again (runpy warns; python -m would not).
warnings.filterwarnings("ignore", "'avvp.benchmarks", RuntimeWarning)

def ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt

argparse.ArgumentParser.parse_args = ctrl_c
argparse.ArgumentParser.parse_known_args = ctrl_c
results = {}
for name in sys.argv[1:]:
    stderr = io.StringIO()
    code = "returned"
    with contextlib.redirect_stderr(stderr):
        try:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        except SystemExit as done:
            code = done.code
        except BaseException as error:
            code = type(error).__name__
    results[name] = [code, stderr.getvalue()]
print(json.dumps(results))
"""


def test_ctrl_c_in_every_benchmark_is_one_line():
    assert len(MAIN_MODULES) >= 10
    done = subprocess.run([sys.executable, "-c", PROBE, *MAIN_MODULES], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert {name: tuple(result) for name, result in results.items()} == {
        name: (130, "interrupted\n") for name in MAIN_MODULES
    }
