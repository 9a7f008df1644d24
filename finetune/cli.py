"""`avvp-finetune`: train a parser (the default command), `evaluate` a saved run, import official weights
(`import-han` for HAN's release, `import-release` for the paper release's Base-family nets)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avvp.console import run_app, typer_app
from avvp.errors import ConfigError

app = typer_app(
    "Train and evaluate the AVVP event parsers (HAN, Base, +GCAA, +Adv+Skip, +Adv+Skip+GCAA) on weak labels."
)


@app.callback(invoke_without_command=True)
def finetune(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None,
        help="Parser: han, base, base-gcaa, base-adv-skip, base-adv-skip-gcaa (default), mmil (default with --e2e).",
    ),
    features: Path | None = typer.Option(None, help="Feature store (llp.h5 or exported embeddings)."),
    annotations: Path | None = typer.Option(None, help="Folder with the LLP annotation files (AVVP_*.csv)."),
    out: Path | None = typer.Option(None, help="Run directory to create (runs/NAME)."),
    preset: str = typer.Option("paper", help="tiny (seconds), demo (minutes on a CPU) or paper (the full schedule)."),
    recipe: str | None = typer.Option(
        None,
        help="paper (default): the paper's text; release: what the paper release's scripts do (han: HAN's own).",
    ),
    epochs: int | None = typer.Option(None, help="Epochs (default: the recipe's 40, or the preset's)."),
    batch_size: int | None = typer.Option(None, help="Videos per batch [64; HAN 16]."),
    lr: float | None = typer.Option(None, help="Adam learning rate [3e-4]."),
    lr_step: int | None = typer.Option(None, help="Epochs between learning-rate decays [the recipe's: 5]."),
    seed: int = typer.Option(0, help="Seed; CPU runs with one seed repeat exactly."),
    train_fraction: float = typer.Option(
        1.0, help="Train on this share of the training videos: a stratified subset, seeded by --seed; (0, 1]."
    ),
    mixed_precision: str = typer.Option(
        "auto", help="auto (bf16 on a GPU), no, or bf16 (also on a CPU: faster where it has bf16 instructions)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out."),
    e2e: bool = typer.Option(False, "--e2e", help="Train the pretrained --encoder jointly with the parser."),
    encoder: Path | None = typer.Option(None, help="Pretrained encoder directory (the --out of avvp-pretrain)."),
    encoder_lr: float | None = typer.Option(None, help="Learning rate of the encoder with --e2e [lr / 10]."),
    labels: Path | None = typer.Option(
        None, help="Refined audio/visual labels (avvp-finetune refine) for the modality terms; the joint keeps weak."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a parser with weak labels, select it on validation Type@AV, score the test split once."""
    if ctx.invoked_subcommand is not None:
        return
    from avvp.metrics import format_table
    from finetune.config import make_config
    from finetune.train import train

    missing = [
        flag for flag, value in (("--features", features), ("--annotations", annotations), ("--out", out)) if not value
    ]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; see avvp-finetune --help")
    if e2e and encoder is None:
        raise ConfigError("--e2e needs --encoder DIR (a pretrained encoder from avvp-pretrain)")
    if encoder_lr is not None and not e2e:
        raise ConfigError("--encoder-lr is the learning rate of the encoder with --e2e; without --e2e there is none")
    if encoder is not None and not e2e:
        raise ConfigError(
            "--encoder is used with --e2e; for a frozen encoder, export its embeddings (avvp-pretrain export) "
            "and pass the exported store as --features"
        )
    frontend, frontend_config = None, {}
    if e2e:
        from finetune.frontend import load_frontend

        frontend, frontend_config = load_frontend(encoder, features)
    cfg = make_config(
        model or ("mmil" if e2e else "base-adv-skip-gcaa"),
        preset,
        recipe,
        features=str(features),
        annotations=str(annotations),
        out=str(out),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_step=lr_step,
        seed=seed,
        train_fraction=train_fraction,
        mixed_precision=mixed_precision,
        frontend=str(encoder.resolve()) if e2e else None,
        frontend_lr=encoder_lr,
        frontend_config=frontend_config or None,
        labels=str(labels) if labels is not None else None,
    )
    run = train(cfg, resume=resume, overwrite=overwrite, frontend=frontend, show_progress=not quiet)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    origin = f" on the encoder {cfg.frontend} (end to end)" if cfg.frontend else ""
    origin += f" with the refined labels {cfg.labels}" if cfg.labels else ""
    print(f"{cfg.model}{origin}: best epoch {metrics['best_epoch']} by {metrics['selection']}")
    print(f"test ({metrics['test_videos']} videos):")
    print(format_table(metrics["test"]))
    print(f"run directory: {run}")


@app.command()
def evaluate(
    run: Path = typer.Option(..., help="Run directory (config.json + model.safetensors)."),
    split: str = typer.Option("test", help="val or test."),
    features: Path | None = typer.Option(None, help="Feature store [the one the run was trained on]."),
    annotations: Path | None = typer.Option(None, help="Annotation folder [the run's]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Re-score a saved run on the val or test split with the official LLP evaluation."""
    from avvp.metrics import format_table
    from finetune.evaluate import evaluate_run

    scores = evaluate_run(run, split, features, annotations)
    if as_json:
        from avvp.console import print_json

        print_json({"run": str(run), "split": split, **scores})
    else:
        print(f"{run} on {split}:")
        print(format_table(scores))


@app.command()
def refine(
    run: Path = typer.Option(..., help="A finished run (the first model) whose audio and visual heads decide."),
    features: Path = typer.Option(..., help="Feature store of the training videos (the one the run was trained on)."),
    annotations: Path = typer.Option(..., help="Annotation folder (AVVP_train.csv; LLP-sim's training truth if any)."),
    out: Path = typer.Option(..., help="Label file to write (HDF5), for avvp-finetune --labels."),
    seed: int = typer.Option(0, help="Seed of the swap partners."),
    audio_threshold: float = typer.Option(
        0.5, help="An audio label goes when, visual swapped, both streams fall below this x the normalised audio error."
    ),
    visual_threshold: float = typer.Option(
        0.5, help="A visual label goes when, audio swapped, both streams fall below this x the normalised visual error."
    ),
    batch_size: int = typer.Option(256, help="Videos per batch (one forward pass of 3x as many)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing label file."),
) -> None:
    """Modality-aware label refinement (MA): per training video and class, is the weak label heard, seen, or both?"""
    from avvp.modality_labels import format_report
    from finetune.refine import refine as refine_labels

    labels = refine_labels(
        run, features, annotations, out, seed, audio_threshold, visual_threshold, batch_size, overwrite
    )
    print(format_report(labels.attrs["report"]))
    videos, seconds = len(labels.video_ids), labels.attrs["seconds"]
    print(f"refined {videos} videos in {seconds:.1f} s ({videos / seconds:.0f} videos/s)")
    print(f"wrote {out}")


@app.command("import-han")
def import_han(
    checkpoint: Path = typer.Argument(..., help="State dict saved by the HAN reference release (MMIL_Net.pt)."),
    out: Path = typer.Option(..., help="Run directory to create (e.g. runs/han-official)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
) -> None:
    """Turn the official HAN weights into a run directory of our `han` (for evaluate and avvp parse)."""
    from finetune.import_han_weights import import_han as convert

    print(f"wrote {convert(checkpoint, out, overwrite)}")


@app.command("import-release")
def import_release(
    checkpoint: Path = typer.Argument(..., help="State dict saved by the paper release's scripts (MMIL_Net.pt)."),
    model: str = typer.Option(
        ...,
        help="The row the net is: base (net_audiovisual_basic), base-gcaa (_gcaa), base-adv-skip (_adv_skip), "
        "base-adv-skip-gcaa (net_audiovisual); skip and non-skip nets save the same keys, so say which.",
    ),
    out: Path = typer.Option(..., help="Run directory to create (e.g. runs/bass-release)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
) -> None:
    """Turn weights of the paper release (Lamba et al.) into a run directory giving its probabilities."""
    from finetune.import_release_weights import import_release as convert

    print(f"wrote {convert(checkpoint, model, out, overwrite)}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
