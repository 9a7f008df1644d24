"""Speed benchmarks, one section per stage: python -m avvp.benchmarks.speed [SECTION ...] (default: every section).

Each section is a module with `run() -> list[str]`, the lines of its report, and `SMOKE`, the keyword arguments
of a run at a tiny size (`--smoke`: what the test suite runs, so that no section goes stale unseen); add yours to
SECTIONS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

SECTIONS = {
    "evaluate": "avvp.benchmarks.bench_metrics",
    "grounding": "avvp.benchmarks.bench_grounding",
    "finetune": "avvp.benchmarks.bench_finetune",
    "pretrain": "avvp.benchmarks.bench_pretrain",
    "refine": "avvp.benchmarks.bench_refine",
    "extract": "avvp.benchmarks.bench_extract",
}
"""Section name -> module with a `run()` function."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that each section runs (seconds)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; expected any of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    for name in args.sections or list(SECTIONS):
        start = time.perf_counter()
        module = importlib.import_module(SECTIONS[name])
        lines = module.run(**(module.SMOKE if args.smoke else {}))
        print(f"== {name} ({time.perf_counter() - start:.1f} s)")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    from avvp.console import run_app

    run_app(lambda: sys.exit(main()))
