"""`--help` of every command of the four entry points: flags shown as flags, every help text printed whole.

The commands are found by walking the Typer apps named in pyproject.toml's [project.scripts], so a new command
or entry point is covered without a change here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def entry_points() -> dict[str, typer.Typer]:
    """Script name -> the Typer app of its command line (the script runs it through `avvp.commands.entry`)."""
    from avvp.commands.entry import MODULES

    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    return {name: importlib.import_module(MODULES[name]).app for name in scripts}


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every command and group under a command (typer's own click classes), with the arguments that reach it."""
    found = [(path, command)]
    if hasattr(command, "commands"):  # a group
        for name, sub in command.commands.items():
            found += command_paths(sub, (*path, name))
    return found


def all_commands() -> list:
    return [
        pytest.param(script, app, path, command, id=" ".join((script, *path)))
        for script, app in entry_points().items()
        for path, command in command_paths(typer.main.get_command(app))
    ]


def squeezed(text: str) -> str:
    """Text without its whitespace: the help formatter may wrap a line anywhere (even after a hyphen)."""
    return "".join(text.split())


def test_the_walk_finds_every_entry_point_and_the_nested_groups():
    ids = {" ".join((param.values[0], *param.values[2])) for param in all_commands()}
    assert {"avvp", "avvp-groundtruth", "avvp-pretrain", "avvp-finetune"} <= ids
    assert {"avvp data synth", "avvp bench tables", "avvp-pretrain export", "avvp-finetune evaluate"} <= ids


@pytest.mark.parametrize("script, app, path, command", all_commands())
def test_help_shows_flags_as_flags_and_every_help_text_whole(script, app, path, command):
    result = CliRunner().invoke(app, [*path, "--help"], prog_name=script)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert not re.search(r"\s\.(\s|$)", result.output), f"a help text lost its end:\n{result.output}"
    if command.context_settings.get("help_option_names") == []:
        return  # `avvp bench ...` passes --help on to the benchmark's own argparse help
    output = squeezed(result.output)
    for param in command.params:
        if getattr(param, "help", None):
            assert squeezed(param.help) in output, f"{param.name}: help {param.help!r} not printed whole"
    if command.help:
        assert squeezed(command.help.split("\f")[0]) in output


def test_no_command_line_imports_transformers_before_it_runs():
    """`--help` and a bad option answer without transformers (seconds to import): only a run that builds or loads
    an encoder imports it (`avvp.pretrain` imports its parts on first use)."""
    import subprocess
    import sys

    from avvp.commands.entry import MODULES

    probe = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    probe += "print('transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe, *MODULES.values()], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["False"], done.stderr[-2000:]
