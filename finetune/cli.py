"""`avvp-finetune`: train a parser (the default command), `evaluate` a saved run, import official weights
(`import-han` for HAN's release, `import-release` for the paper release's Base-family nets)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from avvp.config_cli import config_command, config_values, missing_flags
from avvp.console import run_app, typer_app
from avvp.errors import ConfigError
from avvp.finetune.config import PRESET_FIELDS, FinetuneConfig
from avvp.finetune.models import REGISTRY
from avvp.finetune.refine import BATCH_SIZE as REFINE_BATCH_SIZE
from avvp.finetune.refine import THRESHOLD as REFINE_THRESHOLD
from avvp.presets import PRECEDENCE
from avvp.runs import RunFlags

app = typer_app(
    "Train and evaluate the AVVP event parsers (HAN, Base, +GCAA, +Adv+Skip, +Adv+Skip+GCAA) on weak labels. "
    + PRECEDENCE
)


@app.callback(invoke_without_command=True)
@config_command(FinetuneConfig, preset_fields=PRESET_FIELDS)
@config_command(RunFlags)
def finetune(
    ctx: typer.Context,
    e2e: bool = typer.Option(False, "--e2e", help="Train the pretrained --encoder jointly with the parser."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    **settings,
) -> None:
    """Train a parser with weak labels, select it on validation Type@AV, score the test split once.

    The options after --keep-checkpoints are FinetuneConfig's fields; a run's config.json holds them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from avvp.finetune.train import train
    from avvp.metrics import format_table

    flags = RunFlags.pop_from(settings)
    values = config_values(FinetuneConfig, settings)
    missing = missing_flags(values, ("features", "annotations", "out"))
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; see avvp-finetune --help")
    # --e2e is what the command does with --encoder (train it jointly with the parser), not a setting of the run.
    encoder_dir = values.get("frontend")
    if e2e and not encoder_dir:
        raise ConfigError("--e2e needs --encoder DIR (a pretrained encoder from avvp-pretrain)")
    if encoder_dir and not e2e:
        raise ConfigError(
            "--encoder is used with --e2e; for a frozen encoder, export its embeddings (avvp-pretrain export) "
            "and pass the exported store as --features"
        )
    encoder = None
    if e2e:
        from avvp.finetune.encoder import load_e2e_encoder

        encoder, values["frontend_config"] = load_e2e_encoder(encoder_dir, values["features"])
        values["frontend"] = str(Path(encoder_dir).resolve())
    cfg = FinetuneConfig.from_preset(**values)
    if encoder is not None and REGISTRY[cfg.model].get("encoded_motion"):
        encoder.read_encoded_motion()
    if encoder is not None and cfg.continue_pretraining_optimizer:
        from dataclasses import replace

        from avvp.finetune.encoder import pretraining_optimizer

        _, origin = pretraining_optimizer(encoder_dir, encoder.encoder)
        cfg = replace(cfg, optimizer_origin=origin)
        print(f"optimizer: {origin}")
    run = train(cfg, **dataclasses.asdict(flags), encoder=encoder, show_progress=not quiet)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    origin = f" on the encoder {encoder_dir} (end to end)" if cfg.frontend else ""
    origin += f" with the refined labels {cfg.labels}" if cfg.labels else ""
    print(f"{cfg.model}{origin}:")
    print(f"best epoch {metrics['best_epoch']} by {metrics['selection']}")
    gaps = {split: count for split, count in metrics.get("left_out", {}).items() if count}
    if gaps:
        print(
            "left out (not in the feature store, --missing skip): "
            + ", ".join(f"{count} {split} video(s)" for split, count in gaps.items())
            + f"; listed in {run / 'metrics.json'}"
        )
    if metrics["test"] is None:
        print("no test scores (--no-eval)")
    else:
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
    missing: str | None = typer.Option(
        None,
        help="A video of the split absent from the store: error, or skip (score the videos present) [the run's].",
    ),
) -> None:
    """Re-score a saved run on the val or test split with the official LLP evaluation."""
    from avvp.finetune.evaluate import score_run
    from avvp.metrics import format_table

    scores, data = score_run(run, split, features, annotations, missing)
    videos, left_out = len(data.video_ids), len(data.left_out)
    if as_json:
        from avvp.console import print_json

        print_json({"run": str(run), "split": split, "videos": videos, "left_out": left_out, **scores})
    else:
        gap = f"; {left_out} left out, not in the store (--missing skip)" if left_out else ""
        print(f"{run} on {split} ({videos} videos{gap}):")
        print(format_table(scores))


@app.command()
def refine(
    run: Path = typer.Option(..., help="A finished run (the first model) whose audio and visual heads decide."),
    features: Path = typer.Option(..., help="Feature store of the training videos (the one the run was trained on)."),
    annotations: Path = typer.Option(..., help="Annotation folder (AVVP_train.csv; LLP-sim's training truth if any)."),
    out: Path = typer.Option(..., help="Label file to write (HDF5), for avvp-finetune --labels."),
    seed: int = typer.Option(0, help="Seed of the swap partners."),
    audio_threshold: float = typer.Option(
        REFINE_THRESHOLD,
        help="An audio label goes when, visual swapped, both streams fall below this x the normalised audio error.",
    ),
    visual_threshold: float = typer.Option(
        REFINE_THRESHOLD,
        help="A visual label goes when, audio swapped, both streams fall below this x the normalised visual error.",
    ),
    batch_size: int = typer.Option(REFINE_BATCH_SIZE, help="Videos per batch (one forward pass of 3x as many)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing label file."),
    missing: str = typer.Option(
        "error", help="A training video absent from the store: error, or skip (refine the videos present)."
    ),
) -> None:
    """Modality-aware label refinement (MA): per training video and class, is the weak label heard, seen, or both?"""
    from avvp.finetune.refine import refine as refine_labels
    from avvp.modality_labels import format_report

    labels = refine_labels(
        run, features, annotations, out, seed, audio_threshold, visual_threshold, batch_size, overwrite, missing
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
    from avvp.finetune.import_han_weights import import_han as convert

    print(f"wrote {convert(checkpoint, out, overwrite)}")


@app.command("import-release")
def import_release(
    checkpoint: Path = typer.Argument(
        ..., help="State dict saved by the paper release's scripts (MMIL_Net.pt, or final.pt for release-avg)."
    ),
    model: str = typer.Option(
        ...,
        help="The row the net is: base (net_audiovisual_basic), base-gcaa (_gcaa), base-adv-skip (_adv_skip), "
        "base-adv-skip-gcaa (net_audiovisual); skip and non-skip nets save the same keys, so say which; "
        "release-avg for the final.pt of main_avvp_{uni,cross,multi}.py (the end-to-end avg model).",
    ),
    out: Path = typer.Option(..., help="Run directory to create (e.g. runs/bass-release)."),
    encoder_heads: int = typer.Option(
        8, help="release-avg: attention heads of its UNITER (not in a state dict; the release's UniterConfig has 8)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
) -> None:
    """Turn weights of the paper release (Lamba et al.) into a run directory giving its probabilities."""
    from avvp.finetune.import_release_weights import import_release as convert

    print(f"wrote {convert(checkpoint, model, out, overwrite, encoder_heads)}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
