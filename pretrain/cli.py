"""`avvp-pretrain`: pretrain the audio-visual encoder (the default command), `init` its untrained control, and
`export` its embeddings. The options of the first two are PretrainConfig's fields (avvp.config_cli)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from avvp.config_cli import config_command, config_values, missing_flags
from avvp.console import run_app, typer_app
from avvp.errors import ConfigError
from avvp.presets import PRECEDENCE
from avvp.pretrain.config import EXPORT_BATCH_SIZE, INIT_FIELDS, PATH_FIELDS, PRESET_FIELDS, PretrainConfig
from avvp.runs import RunFlags

app = typer_app(
    "Pretrain the UNITER-style audio-visual encoder with the AVG loss (the default command), or export its "
    "snippet embeddings (`export`). One device: avvp-pretrain --features ... --labels ... --out ...; several: "
    "accelerate launch --num_processes N $(which avvp-pretrain) ...; several CPU processes: "
    "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N $(which avvp-pretrain) ... " + PRECEDENCE
)
PRESET_NOTE = "the --preset's or --recipe's"


@app.callback(invoke_without_command=True)
@config_command(PretrainConfig, preset_fields=PRESET_FIELDS, preset_note=PRESET_NOTE)
@config_command(RunFlags)
def pretrain(ctx: typer.Context, **settings) -> None:
    """Pretrain the encoder (the default command; `init` and `export` are the others).

    The options after --keep-checkpoints are PretrainConfig's fields; a run's pretrain_config.json holds them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from avvp.pretrain.train import train

    flags = RunFlags.pop_from(settings)
    values = config_values(PretrainConfig, settings)
    missing = missing_flags(values, PATH_FIELDS)
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; see avvp-pretrain --help")
    train(PretrainConfig.from_preset(**values), **dataclasses.asdict(flags))


@app.command()
@config_command(PretrainConfig, INIT_FIELDS, preset_fields=PRESET_FIELDS, preset_note=PRESET_NOTE)
@config_command(RunFlags, ("overwrite",))
def init(**settings) -> None:
    """Write the untrained control: the encoder a pretraining run with these settings starts from, step 0.

    Only the encoder's sizes, dropout, seed and held-out share (the statistics leave it out) shape its weights; the
    labels and the variant are recorded only.
    """
    from avvp.pretrain.control import write_control

    flags = RunFlags.pop_from(settings)
    values = config_values(PretrainConfig, settings)
    missing = missing_flags(values, ("features", "out"))
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; see avvp-pretrain init --help")
    cfg = PretrainConfig.from_preset(**values)
    print(f"wrote {write_control(cfg, overwrite=flags.overwrite)} (untrained control, step 0, seed {cfg.seed})")


@app.command()
def export(
    encoder: Path = typer.Option(..., help="Pretrained encoder: the --out folder of avvp-pretrain."),
    features: Path = typer.Option(..., help="Feature store to encode (e.g. the LLP store)."),
    out: Path = typer.Option(..., help="Output feature store: audio, visual embeddings (width H), motion as is."),
    batch_size: int = typer.Option(EXPORT_BATCH_SIZE, help="Videos per forward pass (and per written chunk)."),
    dtype: str | None = typer.Option(None, help="float16 or float32 (default: the input store's motion dtype)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output store."),
) -> None:
    """Write the encoder's contextual embeddings of every video as a feature store any parser reads."""
    from avvp.pretrain.export import export_embeddings

    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    path = export_embeddings(encoder, features, out, overwrite=overwrite, batch_size=batch_size, dtype=dtype)
    print(f"wrote {path}")


@app.command("import-release")
def import_release(
    checkpoint: Path = typer.Argument(..., help="pretrained.pt of the paper release's main_avvp_{uni,cross,multi}.py."),
    out: Path = typer.Option(..., help="Encoder directory to create (config.json + model.safetensors)."),
    heads: int = typer.Option(8, help="Attention heads (not in a state dict; the release's UniterConfig has 8)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing directory."),
) -> None:
    """Turn the release's pretrained UNITER into an encoder of the `release` architecture (for --e2e and export)."""
    from avvp.pretrain.import_release import import_release as convert

    print(f"wrote {convert(checkpoint, out, heads, overwrite)}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
