"""Print the test figures of finetuning runs side by side, one row per run (the ten numbers of metrics.json).

python scripts/compare_runs.py runs/quickstart/run-raw runs/quickstart/run-e2e
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from avvp.metrics import LEVELS, SCORE_NAMES, SCORE_TITLES


def main(runs: list[str]) -> int:
    if not runs:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    width = max(len(Path(run).name) for run in runs) + 2
    titles = [f"{level[:3]} {SCORE_TITLES[name]}" for level in LEVELS for name in SCORE_NAMES]
    header = " " * width + "".join(f"{title:>13}" for title in titles)
    print(header)
    for run in runs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            print(f"error: {path}: no such file; is {run} a finished avvp-finetune run?", file=sys.stderr)
            return 1
        test = json.loads(path.read_text())["test"]
        figures = "".join(f"{test[level][name]:>13.1f}" for level in LEVELS for name in SCORE_NAMES)
        print(f"{Path(run).name:<{width}}{figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
