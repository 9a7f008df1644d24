"""`avvp-pretrain`: pretrain the audio-visual encoder (the default command), `init` its untrained control, and
`export` its embeddings."""

from __future__ import annotations

from pathlib import Path

import typer

from avvp.console import run_app, typer_app
from avvp.errors import ConfigError
from pretrain.config import PretrainConfig

D = PretrainConfig  # the defaults of the settings no preset changes

app = typer_app(
    "Pretrain the UNITER-style audio-visual encoder with the AVG loss (the default command), or export its "
    "snippet embeddings (`export`). One device: avvp-pretrain --features ... --labels ... --out ...; several: "
    "accelerate launch --num_processes N $(which avvp-pretrain) ...; several CPU processes: "
    "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N $(which avvp-pretrain) ..."
)


@app.callback(invoke_without_command=True)
def pretrain(
    ctx: typer.Context,
    features: Path | None = typer.Option(None, help="Pretraining feature store (audio, visual, motion)."),
    labels: Path | None = typer.Option(None, help="AVG label file for the same videos (avvp-groundtruth build)."),
    out: Path | None = typer.Option(None, help="Run directory: the encoder, metrics.json, log.jsonl, checkpoints/."),
    variant: str = typer.Option(D.variant, help="AVG loss pairs: uni (a-a, v-v), cross (a-v, v-a) or multi (both)."),
    preset: str = typer.Option(D.preset, help="Encoder size and schedule: tiny, demo or paper."),
    hidden_size: int | None = typer.Option(None, help="Encoder width (default: the preset's)."),
    layers: int | None = typer.Option(None, help="BERT layers (default: the preset's)."),
    heads: int | None = typer.Option(None, help="Attention heads (default: the preset's)."),
    epochs: int | None = typer.Option(None, help="Epochs (default: the preset's)."),
    batch_size: int | None = typer.Option(None, help="Videos per batch on each process (default: the preset's)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default: the preset's)."),
    recipe: str = typer.Option(D.recipe, help="Objective and optimisation: toolkit, or release (the authors')."),
    dropout: float = typer.Option(D.dropout, help="Dropout on hidden states and attention probabilities."),
    grad_accum: int = typer.Option(D.grad_accum, help="Batches accumulated per optimizer step."),
    warmup: float | None = typer.Option(None, help=f"Share of the steps with a linear warm-up [{D.warmup}]."),
    objective: str | None = typer.Option(None, help=f"hinge (margins p, n) or infonce (temperature) [{D.objective}]."),
    pos_margin: float | None = typer.Option(None, help=f"p: grounded pairs pulled above this cosine [{D.pos_margin}]."),
    neg_margin: float | None = typer.Option(None, help=f"n: other pairs pushed below this cosine [{D.neg_margin}]."),
    in_batch_negatives: bool | None = typer.Option(
        None, "--in-batch-negatives/--no-in-batch-negatives", help="Hinge: other videos' snippets as negatives too."
    ),
    temperature: float | None = typer.Option(None, help=f"InfoNCE temperature [{D.temperature}]."),
    select: str | None = typer.Option(None, help=f"Encoder kept: auc, loss (held-out) or last [{D.select}]."),
    val_fraction: float | None = typer.Option(None, help=f"Held-out share of the corpus [{D.val_fraction}]."),
    save_every: int = typer.Option(D.save_every, help="Save the Accelerate state every N steps (and per epoch)."),
    max_steps: int | None = typer.Option(None, help="Stop after this many optimizer steps."),
    mixed_precision: str = typer.Option(
        D.mixed_precision,
        help="auto (bf16 on a GPU), no, or bf16 (also on a CPU: faster where it has bf16 instructions).",
    ),
    seed: int = typer.Option(D.seed, help="Seed of the weights, the held-out split, shuffling and dropout."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
) -> None:
    """Pretrain the encoder (the default command; `export` is the other one)."""
    if ctx.invoked_subcommand is not None:
        return
    from pretrain.train import train

    missing = [flag for flag, value in (("--features", features), ("--labels", labels), ("--out", out)) if not value]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; see avvp-pretrain --help")
    cfg = PretrainConfig.from_preset(
        preset,
        recipe,
        features=str(features),
        labels=str(labels),
        out=str(out),
        variant=variant,
        hidden_size=hidden_size,
        num_layers=layers,
        num_heads=heads,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        dropout=dropout,
        grad_accum=grad_accum,
        warmup=warmup,
        objective=objective,
        pos_margin=pos_margin,
        neg_margin=neg_margin,
        in_batch_negatives=in_batch_negatives,
        temperature=temperature,
        select=select,
        val_fraction=val_fraction,
        save_every=save_every,
        max_steps=max_steps,
        mixed_precision=mixed_precision,
        seed=seed,
        resume=resume,
        overwrite=overwrite,
    )
    train(cfg)


@app.command()
def init(
    features: Path = typer.Option(..., help="Pretraining feature store: its training videos give the statistics."),
    out: Path = typer.Option(..., help="Folder for the untrained encoder (as a run's --out)."),
    labels: Path | None = typer.Option(None, help="The run's AVG label file (recorded only; not read)."),
    variant: str = typer.Option(D.variant, help="The run's variant (recorded only: weights do not depend on it)."),
    preset: str = typer.Option(D.preset, help="Encoder size: tiny, demo or paper."),
    recipe: str = typer.Option(D.recipe, help="The run's recipe (its held-out share sets the statistics' videos)."),
    hidden_size: int | None = typer.Option(None, help="Encoder width (default: the preset's)."),
    layers: int | None = typer.Option(None, help="BERT layers (default: the preset's)."),
    heads: int | None = typer.Option(None, help="Attention heads (default: the preset's)."),
    dropout: float = typer.Option(D.dropout, help="Dropout on hidden states and attention probabilities."),
    val_fraction: float | None = typer.Option(None, help="Held-out share (the statistics leave it out) [recipe's]."),
    seed: int = typer.Option(D.seed, help="Seed of the weights and of the held-out split."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
) -> None:
    """Write the untrained control: the encoder a pretraining run with these settings starts from, step 0."""
    from pretrain.control import write_control

    cfg = PretrainConfig.from_preset(
        preset,
        recipe,
        features=str(features),
        labels=str(labels) if labels is not None else "",
        out=str(out),
        variant=variant,
        hidden_size=hidden_size,
        num_layers=layers,
        num_heads=heads,
        dropout=dropout,
        val_fraction=val_fraction,
        seed=seed,
        overwrite=overwrite,
    )
    print(f"wrote {write_control(cfg)} (untrained control, step 0, seed {cfg.seed})")


@app.command()
def export(
    encoder: Path = typer.Option(..., help="Pretrained encoder: the --out folder of avvp-pretrain."),
    features: Path = typer.Option(..., help="Feature store to encode (e.g. the LLP store)."),
    out: Path = typer.Option(..., help="Output feature store: audio, visual embeddings (width H), motion as is."),
    batch_size: int = typer.Option(256, help="Videos per forward pass (and per written chunk)."),
    dtype: str | None = typer.Option(None, help="float16 or float32 (default: the input store's motion dtype)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output store."),
) -> None:
    """Write the encoder's contextual embeddings of every video as a feature store any parser reads."""
    from pretrain.export import export_embeddings

    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    path = export_embeddings(encoder, features, out, overwrite=overwrite, batch_size=batch_size, dtype=dtype)
    print(f"wrote {path}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
