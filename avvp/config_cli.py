"""Command-line options made from a config dataclass, so that a setting is declared once: as its field.

The option of the field `batch_size: int = 64` with the docstring "Videos per batch." is `--batch-size`, an
int, default 64, help "Videos per batch.". A field's `metadata` (`field(..., metadata=cli(...))`) can give it
other flag names, hide it, read it as a path, or keep it off the command line (a value the program fills in).
Typer reads a command's parameters from `inspect.signature`, so `config_command` gives the command function a
signature built from the fields:

    @app.command()
    @config_command(PretrainConfig, preset_fields=RESOLVED)
    def pretrain(**settings) -> None:
        cfg = PretrainConfig.from_preset(**settings)
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import typer

CLI = "cli"
"""The key of a field's metadata read here."""


def cli(
    *aliases: str, flags: str | None = None, hidden: bool = False, path: bool = False, exclude: bool = False
) -> dict:
    """A field's command-line metadata, for `dataclasses.field(metadata=cli(...))`.

    `aliases`: more flag names (old names kept working, e.g. "--layers"); `flags`: the flag declaration itself
    when it is not `--field-name` (e.g. "--show-progress/--quiet"); `hidden`: left out of --help; `path`: read
    as a path (stored as str when the field is a str); `exclude`: not a setting (filled in by the program).
    """
    return {CLI: dict(aliases=aliases, flags=flags, hidden=hidden, path=path, exclude=exclude)}


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body), on one line; base classes too."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def flag_name(name: str) -> str:
    """The flag of a field: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def cli_fields(cls: type, names: Iterable[str] | None = None) -> list[dataclasses.Field]:
    """The fields a command line sets: `names` (in that order), or every field not excluded by its metadata."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    if names is not None:
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        return [by_name[name] for name in names]
    return [f for f in by_name.values() if not f.metadata.get(CLI, {}).get("exclude")]


def field_default(f: dataclasses.Field):
    """A field's default value (its factory called), or `...` when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def config_options(
    cls: type,
    names: Iterable[str] | None = None,
    *,
    preset_fields: Collection[str] | Mapping[str, str] = (),
    preset_note: str = "the preset's value",
    optional: Collection[str] = (),
) -> list[inspect.Parameter]:
    """One keyword parameter with a `typer.Option` per field of `cls` (see `cli_fields` for `names`).

    `preset_fields`: fields whose default comes from a preset or recipe; their option defaults to None
    ("not given") and its help says so: `preset_note`, or the field's own note where `preset_fields` maps
    names to notes. `optional`: required fields whose option may be left out, defaulting to None (a command
    that checks them itself).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    parameters = []
    for f in cli_fields(cls, names):
        meta = f.metadata.get(CLI, {})
        annotation = Path if meta.get("path") else hints[f.name]
        default = field_default(f)
        help_text = docs.get(f.name, "")
        show_default = True
        if f.name in preset_fields:
            note = preset_fields[f.name] if isinstance(preset_fields, Mapping) else preset_note
            help_text += f"  [default: {default}, or {note}]"
            default, show_default = None, False
        if f.name in optional or (meta.get("path") and default == ""):
            default = None  # not given: the field's default (an empty path means none)
        if default is None and type(None) not in typing.get_args(annotation):
            annotation = annotation | None
        if meta.get("flags"):
            declarations = [meta["flags"]]
        elif hints[f.name] is bool and (default is None or default is True):
            declarations = [f"{flag_name(f.name)}/--no-{f.name.replace('_', '-')}"]
        else:
            declarations = [flag_name(f.name)]
        option = typer.Option(
            default,
            *declarations,
            *meta.get("aliases", ()),
            help=help_text,
            hidden=meta.get("hidden", False),
            show_default=show_default,
        )
        parameters.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    return parameters


def config_command(cls: type, names: Iterable[str] | None = None, **options) -> Callable[[Callable], Callable]:
    """Give a command function `f(own parameters..., **settings)` an option per field (`config_options`) after its
    own parameters; Typer then passes the field values in `settings`, by field name."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        function.__signature__ = signature.replace(parameters=[*own, *config_options(cls, names, **options)])
        return function

    return decorate


def missing_flags(values: dict, names: Iterable[str]) -> list[str]:
    """The flags of the fields in `names` that `values` (from `config_values`) leaves unset or empty."""
    return [flag_name(name) for name in names if not values.get(name)]


def config_values(cls: type, settings: dict) -> dict:
    """The values given on the command line, as field values: None (not given) is left out, so that the field
    keeps its default (or its preset's), and a path given for a str field becomes a str."""
    hints = typing.get_type_hints(cls)
    return {
        name: str(value) if isinstance(value, Path) and hints.get(name) is str else value
        for name, value in settings.items()
        if value is not None
    }
