"""Speed benchmarks, one section per stage: python -m benchmarks.speed [SECTION ...] (default: every section).

Each section is a module with `run() -> list[str]`, the lines of its report; add yours to SECTIONS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

SECTIONS = {
    "evaluate": "benchmarks.bench_metrics",
    "grounding": "benchmarks.bench_grounding",
    "finetune": "benchmarks.bench_finetune",
    "pretrain": "benchmarks.bench_pretrain",
    "refine": "benchmarks.bench_refine",
    "extract": "benchmarks.bench_extract",
}
"""Section name -> module with a `run()` function."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; expected any of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    for name in args.sections or list(SECTIONS):
        start = time.perf_counter()
        lines = importlib.import_module(SECTIONS[name]).run()
        print(f"== {name} ({time.perf_counter() - start:.1f} s)")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
