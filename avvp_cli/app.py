"""`avvp`, the umbrella command line: the core's own commands (`evaluate`, `data`, from avvp.cli) and the two that
run a stage, `parse` (finetune) and `bench` (benchmarks).

It lives outside `avvp/` so that the core imports no stage. The stages are imported only when their command
runs, so `avvp data ...` and `avvp evaluate` start without torch.
"""

from __future__ import annotations

from pathlib import Path

import typer

from avvp.cli import data_app, evaluate
from avvp.console import run_app, typer_app

app = typer_app("Audio-visual video parsing on LLP: data, evaluation, parsing.")
app.command()(evaluate)


@app.command()
def parse(
    run: Path = typer.Option(..., help="Run directory of a trained parser (avvp-finetune --out)."),
    features: Path | None = typer.Option(None, help="Feature store with the videos to parse (or --video)."),
    video: list[Path] | None = typer.Option(
        None,
        help="Video file(s) to extract (avvp data extract) and parse, instead of --features (repeatable); one "
        "timeline per video, events in the video's seconds.",
    ),
    weights: Path | None = typer.Option(
        None, help="With --video: folder holding the extraction's weight files (default: the torch cache)."
    ),
    offline: bool = typer.Option(False, "--offline", help="With --video: never download weights."),
    out: Path = typer.Option(..., help="Events JSON to write."),
    videos: str | None = typer.Option(
        None, help="Comma-separated video ids, each once (a repeat is an error); default: every video of the store."
    ),
    csv: Path | None = typer.Option(None, help="Also write pred_audio.csv / pred_visual.csv (LLP eval format) here."),
    plot: Path | None = typer.Option(
        None, help="A timeline PNG per video into this folder: ID.png, characters other than A-Za-z0-9_.- as _."
    ),
    probabilities: Path | None = typer.Option(
        None,
        help="Also write the raw probabilities here (HDF5): video_ids; video, audio, visual (N, 25) video-level; "
        "snippet (N, 10, 2, 25), modality 0 audio, 1 visual.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    annotations: Path | None = typer.Option(
        None,
        help="LLP annotation folder: report (and take in --videos) the store's videos by their LLP filenames, "
        "for a store named by YouTube id (avvp data import-han without --annotations).",
    ),
    missing: str = typer.Option(
        "error", help="A video of --videos absent from the store: error, or skip (parse the others, one note)."
    ),
) -> None:
    """Parse videos: audio, visual and audio-visual events with onset, offset and probability."""
    from avvp.errors import ConfigError

    if (features is None) == (not video):
        raise ConfigError("give either --features STORE or --video FILE (one of the two)")
    if video:
        if videos is not None or probabilities is not None or annotations is not None:
            raise ConfigError("--videos, --probabilities and --annotations go with --features, not --video")
        from avvp.extract.pipeline import ExtractConfig
        from avvp.finetune.parse_video import parse_video_files

        config = ExtractConfig(weights_dir=str(weights) if weights else None, download=not offline, workers=0)
        written: list[Path] = []
        events, result = parse_video_files(run, video, out, csv, plot, overwrite, config, written=written)
        for note in result.notes:
            print(note)
        print_parsed(events, written)
        return
    from avvp.finetune.parse import parse as parse_videos

    video_ids = [v.strip() for v in videos.split(",") if v.strip()] if videos is not None else None
    written: list[Path] = []
    events = parse_videos(
        run, features, out, video_ids, csv, plot, overwrite, probabilities, annotations, missing, written
    )
    print_parsed(events, written)


app.add_typer(data_app, name="data")
bench_app = typer_app("Benchmarks: the paper's tables (tables) and the speed report (speed).")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@bench_app.command("tables", context_settings=PASS_THROUGH)
def bench_tables(ctx: typer.Context) -> None:
    """Reproduce the paper's Tables 1 and 2 (python -m avvp.benchmarks.tables; --help for its options)."""
    from avvp.benchmarks.tables import main as tables_main

    tables_main(ctx.args)


@bench_app.command("speed", context_settings=PASS_THROUGH)
def bench_speed(ctx: typer.Context) -> None:
    """The speed report of every stage (python -m avvp.benchmarks.speed; --help for its options)."""
    from avvp.benchmarks.speed import main as speed_main

    raise typer.Exit(speed_main(ctx.args))


app.add_typer(bench_app, name="bench")


def main() -> None:
    run_app(app)


def print_parsed(events: dict[str, list[dict]], written: list[Path]) -> None:
    """What `avvp parse` found and every file it wrote, one per line."""
    print(f"parsed {sum(map(len, events.values()))} events of {len(events)} videos; wrote {len(written)} files:")
    for path in written:
        print(f"  {path}")
