"""Console helpers shared by every command line: the Typer app, one-line user errors and progress bars."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from collections.abc import Callable

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avvp.errors import AvvpError

err_console = Console(stderr=True)


def typer_app(help: str, **settings) -> typer.Typer:
    """A Typer app (or command group) as every avvp command line makes one; `settings` go to `typer.Typer`.

    Help is click's plain layout (`rich_markup_mode=None`). Typer 0.29's rich layout prints a value type after
    every option, flags included (`--json <bool>`, even `--help <bool>`), as if they took a value, and reads
    any `[...]` of a help text as rich markup: "Feature store [the one the run was trained on]." printed as
    "Feature store .". Errors stay one line (`run_app`), and progress bars stay rich.
    """
    return typer.Typer(
        help=help,
        rich_markup_mode=None,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        **settings,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_app(app: Callable[[], object]) -> None:
    """Run a Typer app; a user error becomes one line on stderr and exit status 1, with no traceback; Ctrl-C
    (here or inside Typer) is one line, "interrupted", and exit status 130.

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
    except SystemExit as exit_info:
        # Typer turns a Ctrl-C inside a command into a silent exit 130 (typer.core: `raise Exit(130)`).
        if exit_info.code == 130 and _caused_by_ctrl_c(exit_info):
            print("interrupted", file=sys.stderr)
        raise


def _caused_by_ctrl_c(error: BaseException) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def json_safe(value):
    """`value` with every NaN or infinity replaced by None (JSON's null), so that it prints as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def print_json(data) -> None:
    """Print `data` as strict JSON (no NaN: a score that does not exist is null), indented."""
    print(json.dumps(json_safe(data), indent=2, allow_nan=False))


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
