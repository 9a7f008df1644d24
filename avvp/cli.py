"""`avvp`: the umbrella command line (data, evaluate, parse)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avvp.console import run_app

app = typer.Typer(
    help="Audio-visual video parsing on LLP: data, evaluation, parsing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Feature stores and annotations: import, synthesize, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


@app.command()
def evaluate(
    pred_audio: Path = typer.Option(
        ..., help="Audio predictions in the LLP eval format (filename onset offset event_labels)."
    ),
    pred_visual: Path = typer.Option(..., help="Visual predictions in the LLP eval format."),
    annotations: Path = typer.Option(..., help="Folder with the LLP annotation files (AVVP_*.csv)."),
    split: str = typer.Option("test", help="Split to score: test or val."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print segment-level F1 per class."),
) -> None:
    """Score predictions in the LLP eval format with the official segment- and event-level F1."""
    from avvp.annotations import load_split, read_predictions
    from avvp.classes import CLASSES
    from avvp.errors import AvvpError
    from avvp.metrics import evaluate as score
    from avvp.metrics import format_table, per_class_f1

    if split not in ("val", "test"):
        raise AvvpError(f"--split {split!r}: only val and test have snippet-level annotations")
    truth = load_split(annotations, split).dense
    pred = read_predictions(pred_audio, pred_visual, truth.video_ids)
    scores = score(pred, truth)
    classes = per_class_f1(pred, truth) if per_class else None
    if as_json:
        result: dict = {"split": split, "videos": len(truth.video_ids), **scores}
        if classes is not None:
            result["per_class_segment_f1"] = {
                name: {c: (None if v != v else round(100 * float(v), 4)) for c, v in zip(CLASSES, values, strict=True)}
                for name, values in classes.items()
            }
        print(json.dumps(result, indent=2))
        return
    print(f"{split}: {len(truth.video_ids)} videos")
    print(format_table(scores))
    if classes is not None:
        print(f"\n{'class':<24}{'Audio':>8}{'Visual':>8}{'AV':>8}")
        for i, name in enumerate(CLASSES):
            print(f"{name:<24}" + "".join(f"{100 * classes[m][i]:>8.1f}" for m in ("audio", "visual", "av")))


# --- data commands (import-han, synth, stats) are registered below ---


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
