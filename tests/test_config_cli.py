"""avvp.config_cli: a command's options made from a config dataclass (names, types, defaults, help, metadata)."""

from __future__ import annotations

import importlib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from avvp.config_cli import CLI, cli, cli_fields, config_command, config_values, field_docs, flag_name
from avvp.console import typer_app


@dataclass
class Base:
    features: str = field(default="", metadata=cli(path=True))
    """Feature store
    to read."""


@dataclass
class Toy(Base):
    num_layers: int = 4
    """Encoder layers."""
    lr: float | None = None
    """Learning rate; none: the schedule's."""
    fast: bool = False
    """Go fast."""
    negatives: bool = True
    """Use negatives."""
    show_progress: bool = field(default=True, metadata=cli(flags="--show-progress/--quiet"))
    """Draw a progress bar."""
    width: int = field(default=8, metadata=cli("--w"))
    """Width."""
    secret: int = field(default=3, metadata=cli(hidden=True))
    """Not shown."""
    widths: dict = field(default_factory=dict, metadata=cli(exclude=True))
    """Filled in by the program."""


def toy_app():
    app = typer_app("Toy.")
    seen = {}

    @app.command()
    @config_command(Toy, preset_fields={"num_layers"})
    def run(**settings) -> None:
        seen.update(config_values(Toy, settings))

    @app.command()
    def other() -> None:
        """A second command, so that `run` is a subcommand."""

    return app, seen


def invoke(*args: str) -> tuple[str, dict]:
    app, seen = toy_app()
    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code == 0, result.output
    return result.output, seen


def test_field_docs_come_from_the_class_body_and_its_bases_on_one_line():
    docs = field_docs(Toy)
    assert docs["features"] == "Feature store to read."
    assert docs["num_layers"] == "Encoder layers."
    assert "widths" in docs and len(docs) == 9


def test_nothing_given_leaves_every_field_to_its_default():
    _, seen = invoke()
    assert seen == {"fast": False, "negatives": True, "show_progress": True, "width": 8, "secret": 3}
    assert Toy(**seen) == Toy()


def test_each_option_is_named_after_its_field_and_sets_it():
    args = ["--features", "a/b.h5", "--num-layers", "2", "--lr", "0.5", "--fast", "--no-negatives", "--quiet"]
    _, seen = invoke(*args, "--w", "5", "--secret", "7")
    assert Toy(**seen) == Toy("a/b.h5", 2, 0.5, True, False, False, 5, 7)
    assert invoke("--width", "6")[1]["width"] == 6  # the alias beside the field's own name


def test_help_has_every_docstring_and_marks_preset_defaults():
    output, _ = invoke("--help")
    assert "--features <path>" in output and "Feature store to read." in output
    assert "Encoderlayers.[default:4,orthepreset'svalue]" in "".join(output.split())
    assert "--negatives / --no-negatives" in output and "--show-progress / --quiet" in output
    assert "--width, --w <int>" in output and "[default: 8]" in output
    assert "--secret" not in output and "--widths" not in output


def test_a_path_for_a_str_field_is_stored_as_a_str():
    assert config_values(Toy, {"features": Path("x/y.h5"), "lr": None}) == {"features": "x/y.h5"}


def test_an_unknown_field_name_is_refused():
    with pytest.raises(ValueError, match="no field"):
        config_command(Toy, names=["features", "depth"])(lambda **settings: None)


# --- the stages' command lines: every config field is an option of the same name, default and effect ---------


class Captured(Exception):
    """Raised by the patched-in stage function with the config the command line built."""


@dataclass
class Case:
    """A command line made from a config: how to run it, and what it hands on."""

    script: str
    path: tuple[str, ...]
    config: type
    target: str
    """module.function the command passes its config to (patched to capture it)."""
    required: dict[str, str]
    """The options the command needs, and their values."""
    probes: dict[str, tuple]
    """Per field whose value cannot be made up from its type: (value given, value expected in the config)."""
    names: tuple[str, ...] | None = None
    """The fields the command sets, if not all."""
    extra: dict[str, list[str]] = field(default_factory=dict)
    """More arguments a field's option needs beside it."""
    patches: dict[str, object] = field(default_factory=dict)
    """module.function -> a stand-in, for what the command does before it builds the config."""

    @property
    def id(self) -> str:
        return " ".join((self.script, *self.path))


def cases() -> list[Case]:
    from avvp.finetune.config import FinetuneConfig
    from avvp.grounding.build import GroundingConfig
    from avvp.pretrain.config import INIT_FIELDS, PretrainConfig

    pretrain_probes = {"features": ("f2.h5", "f2.h5"), "labels": ("l2.h5", "l2.h5"), "out": ("o2", "o2"),
                       "variant": ("uni", "uni"), "preset": ("tiny", "tiny"), "recipe": ("release", "release"),
                       "objective": ("infonce", "infonce"), "schedule": ("constant", "constant"),
                       "select": ("loss", "loss"), "mixed_precision": ("no", "no"),
                       "pair_sampling": ("release", "release"), "architecture": ("release", "release")}  # fmt: skip
    grounding_probes = {"features": ("f2.h5", Path("f2.h5")), "out": ("o2.h5", Path("o2.h5")),
                        "exclude_silence": ("s.npy", Path("s.npy")), "recipe": ("release", "release"),
                        "rule": ("and", "and"), "engine": ("networkx", "networkx")}  # fmt: skip
    finetune_probes = {"features": ("f2.h5", "f2.h5"), "annotations": ("a2", "a2"), "out": ("o2", "o2"),
                       "labels": ("r.h5", "r.h5"), "model": ("base", "base"), "preset": ("tiny", "tiny"),
                       "recipe": ("release", "release"), "mixed_precision": ("no", "no"), "missing": ("skip", "skip"),
                       "frontend": ("enc", str(Path("enc").resolve()))}  # fmt: skip
    encoder = {"avvp.finetune.encoder.load_e2e_encoder": lambda encoder, features: (None, {"hidden_size": 8})}
    return [
        Case("avvp-finetune", (), FinetuneConfig, "avvp.finetune.train.train",
             {"features": "f.h5", "annotations": "a", "out": "o"}, finetune_probes,
             extra={"frontend": ["--e2e"], "frontend_lr": ["--e2e", "--encoder", "enc"]}, patches=encoder),
        Case("avvp-pretrain", (), PretrainConfig, "avvp.pretrain.train.train",
             {"features": "f.h5", "labels": "l.h5", "out": "o"}, pretrain_probes),
        Case("avvp-pretrain", ("init",), PretrainConfig, "avvp.pretrain.control.write_control",
             {"features": "f.h5", "out": "o"}, pretrain_probes, names=INIT_FIELDS),
        Case("avvp-groundtruth", ("build",), GroundingConfig, "avvp.grounding.build.build",
             {"features": "f.h5", "out": "o.h5"}, grounding_probes),
    ]  # fmt: skip


def entry_app(script: str):
    """The Typer app of a console script (avvp.commands.entry names the module of each)."""
    from avvp.commands.entry import MODULES

    return importlib.import_module(MODULES[script]).app


def command_of(case: Case):
    command = typer.main.get_command(entry_app(case.script))
    for name in case.path:
        command = command.commands[name]
    return command


def option_args(command, name: str, value) -> list[str]:
    """The arguments that give field `name` the value (a flag's on or off form for a bool)."""
    param = next(param for param in command.params if param.name == name)
    if isinstance(value, bool):
        return [param.opts[0] if value else param.secondary_opts[0]]
    return [param.opts[0], str(value)]


def run_case(case: Case, monkeypatch, options: dict, *extra: str):
    """The config `case`'s command builds from its required options, then `options` (field name -> value)."""
    module, function = case.target.rsplit(".", 1)

    def capture(cfg, *args, **kwargs):
        raise Captured(cfg)

    monkeypatch.setattr(importlib.import_module(module), function, capture)
    for target, stand_in in case.patches.items():
        module, function = target.rsplit(".", 1)
        monkeypatch.setattr(importlib.import_module(module), function, stand_in)
    command = command_of(case)
    args = [arg for name, value in {**case.required, **options}.items() for arg in option_args(command, name, value)]
    result = CliRunner().invoke(entry_app(case.script), [*case.path, *args, *extra])
    assert isinstance(result.exception, Captured), f"{' '.join(args)}: {result.output} {result.exception!r}"
    return result.exception.args[0]


def required_config(case: Case):
    """The config of the required options alone, built directly: the dataclass's own defaults for the rest."""
    hints = typing.get_type_hints(case.config)
    return case.config(**{name: Path(value) if hints[name] is Path else value for name, value in case.required.items()})


def probe(case: Case, f, default) -> tuple:
    """A value other than the default for field `f`, from its type (or the case's probes): (given, expected)."""
    if f.name in case.probes:
        return case.probes[f.name]
    kind = typing.get_type_hints(case.config)[f.name]
    kind = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    if kind is bool:
        return (not default,) * 2
    if kind is int:
        return (2 * default if default else 1,) * 2
    if kind is float:
        return (default / 2 if default else 0.5,) * 2
    raise AssertionError(f"{case.config.__name__}.{f.name}: add a probe value for a {kind}")


@pytest.mark.parametrize("case", cases(), ids=lambda case: case.id)
def test_the_command_line_has_each_field_by_name_and_its_default(case, monkeypatch):
    options = {param.name: param for param in command_of(case).params}
    for f in cli_fields(case.config, case.names):
        assert f.name in options, f"{case.id}: no option for {f.name}"
        assert flag_name(f.name) in options[f.name].opts + options[f.name].secondary_opts or f.metadata[CLI]["flags"]
    assert run_case(case, monkeypatch, {}) == required_config(case)  # nothing given: the config's defaults


@pytest.mark.parametrize("case", cases(), ids=lambda case: case.id)
def test_each_option_sets_its_field(case, monkeypatch):
    defaults = required_config(case)
    for f in cli_fields(case.config, case.names):
        given, expected = probe(case, f, getattr(defaults, f.name))
        built = run_case(case, monkeypatch, {f.name: given}, *case.extra.get(f.name, ()))
        assert getattr(built, f.name) == expected, f"{case.id}: {f.name}"
