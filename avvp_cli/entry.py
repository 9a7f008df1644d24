"""The console entry points: each imports its command line inside a guard, so that Ctrl-C at any point (during
start-up too, while typer, torch and the rest are imported) ends in one line, "interrupted" (exit 130), never a
traceback. This module imports nothing beyond the standard library's `importlib`, `signal` and `sys`."""

import importlib
import signal
import sys


def _run(module: str) -> None:
    try:
        importlib.import_module(module).main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        # Past the command: a Ctrl-C while the interpreter shuts down ends the process quietly, not in a traceback.
        signal.signal(signal.SIGINT, signal.SIG_DFL)


MODULES = {
    "avvp": "avvp.commands.app",
    "avvp-finetune": "avvp.finetune.cli",
    "avvp-pretrain": "avvp.pretrain.cli",
    "avvp-groundtruth": "avvp.grounding.cli",
}
"""Console script -> the module holding its Typer `app` and `main`."""


def run_script(name: str) -> None:
    """Run the console script `name` (a key of MODULES) on sys.argv, as its entry point does."""
    _run(MODULES[name])


def avvp() -> None:
    _run(MODULES["avvp"])


def finetune() -> None:
    _run(MODULES["avvp-finetune"])


def pretrain() -> None:
    _run(MODULES["avvp-pretrain"])


def groundtruth() -> None:
    _run(MODULES["avvp-groundtruth"])
