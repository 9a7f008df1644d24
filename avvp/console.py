"""Console helpers shared by every command line: one-line user errors and progress bars."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avvp.errors import AvvpError

err_console = Console(stderr=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_app(app: Callable[[], object]) -> None:
    """Run a Typer app; a user error becomes one line on stderr and exit status 1, with no traceback.

    SIGTERM (a `kill`, a job scheduler, a launcher stopping its workers) unwinds like Ctrl-C does, so that
    temporary outputs are removed on the way out.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app()
    except AvvpError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def progress(disable: bool = False) -> Progress:
    """A rich progress bar on stderr (videos done / total, elapsed, remaining)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=disable,
        transient=False,
    )
