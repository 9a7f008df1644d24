"""Print the test figures of finetuning runs side by side (F1 in %, higher is better), one row per run.

python scripts/compare_runs.py runs/quickstart/run-raw runs/quickstart/run-e2e [--effect RUN CONTROL]

`--effect RUN CONTROL` also prints RUN minus CONTROL (a pretraining effect when CONTROL is RUN's untrained control).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from avvp.metrics import LEVELS, SCORE_NAMES, SCORE_TITLES


def _test_scores(run: str) -> dict | None:
    path = Path(run) / "metrics.json"
    if not path.is_file():
        print(f"error: {path}: no such file; is {run} a finished avvp-finetune run?", file=sys.stderr)
        return None
    return json.loads(path.read_text())["test"]


def main(args: list[str]) -> int:
    effect = None
    if "--effect" in args:
        at = args.index("--effect")
        effect, args = args[at + 1 : at + 3], args[:at] + args[at + 3 :]
        if len(effect) != 2:
            print("error: --effect takes two runs: RUN CONTROL", file=sys.stderr)
            return 2
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    scores = {}
    for run in dict.fromkeys(args + (effect or [])):
        scores[run] = _test_scores(run)
        if scores[run] is None:
            return 1
    width = max(len(Path(run).name) for run in args) + 2
    for level in LEVELS:
        print(f"{level}-level F1 (%, higher is better)")
        print(" " * width + "".join(f"{SCORE_TITLES[name]:>10}" for name in SCORE_NAMES))
        for run in args:
            print(f"{Path(run).name:<{width}}" + "".join(f"{scores[run][level][name]:>10.1f}" for name in SCORE_NAMES))
    if effect:
        run, control = effect
        difference = scores[run]["segment"]["type_av"] - scores[control]["segment"]["type_av"]
        print(f"{Path(run).name} minus {Path(control).name}: {difference:+.1f} segment Type@AV (this seed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
