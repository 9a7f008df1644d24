"""`avvp-groundtruth`: AVG labels from a feature store (build), threshold calibration, label statistics."""

from __future__ import annotations

from pathlib import Path

import typer

from avvp.config_cli import config_command, config_values
from avvp.console import run_app, typer_app
from avvp.grounding.build import GroundingConfig
from avvp.inputs import MAX_SEED

app = typer_app("Audio-visual grounding labels: per-video snippet graphs and their connected components.")
CALIBRATION_FIELDS = ("features", "neighbours", "sample_videos", "seed", "rule")
"""The settings of `calibrate`: GroundingConfig's, as `build` calibrates with them."""


@app.command()
@config_command(GroundingConfig)
def build(**settings) -> None:
    """Label every video of a feature store: snippet graphs by the threshold rule, then connected components."""
    from avvp.avg_labels import read_avg_labels
    from avvp.grounding.build import build as run_build
    from avvp.grounding.stats import label_stats

    path = run_build(GroundingConfig(**config_values(GroundingConfig, settings)))
    labels = read_avg_labels(path)
    stats = label_stats(labels.components)
    print(
        f"wrote {path}: {stats.videos} videos\n"
        f"visual threshold {labels.attrs['visual_threshold']:.4f}, audio threshold "
        f"{labels.attrs['audio_threshold']:.4f}, rule {labels.attrs['rule']}, "
        f"{100 * stats.positive_pairs:.2f}% of snippet pairs positive"
    )


@app.command()
@config_command(GroundingConfig, CALIBRATION_FIELDS)
def calibrate(
    quantile: list[float] = typer.Option(
        [0.5, 0.9, 0.99], help="Quantile(s) of the neighbour similarities; repeat for several."
    ),
    **settings,
) -> None:
    """Print the thresholds that quantiles of the neighbour similarities give, and the positive pairs they produce."""
    from avvp.errors import ConfigError
    from avvp.grounding.graph import RULES, EdgeRule
    from avvp.grounding.thresholds import calibrate as run_calibrate
    from avvp.grounding.thresholds import check_quantile

    features, neighbours, sample_videos, seed, rule = (settings[name] for name in CALIBRATION_FIELDS)
    for q in quantile:
        check_quantile("--quantile", q)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: must be at least 0 and at most {MAX_SEED:,}")
    if rule not in RULES:
        raise ConfigError(f"--rule {rule!r}: choose one of {', '.join(RULES)}")
    calibration = run_calibrate(features, neighbours, sample_videos, seed)
    print(
        f"{features}: {calibration.sample_videos} sampled videos, {neighbours} neighbours per snippet (seed {seed}); "
        f"shares are of the sampled videos' snippet pairs, rule '{rule}'"
    )
    print(
        f"{'quantile':>9}{'visual thr':>12}{'audio thr':>12}"
        f"{'visual edges':>14}{'audio edges':>13}{'edges':>9}{'positive':>10}"
    )
    for q in quantile:
        edge_rule = EdgeRule(calibration.threshold("visual", q), calibration.threshold("audio", q), rule)
        share = calibration.positive_share(edge_rule)
        print(
            f"{q:>9g}{edge_rule.visual_threshold:>12.4f}{edge_rule.audio_threshold:>12.4f}"
            f"{100 * share['visual_edges']:>13.2f}%{100 * share['audio_edges']:>12.2f}%"
            f"{100 * share['edges']:>8.2f}%{100 * share['positive_pairs']:>9.2f}%"
        )


@app.command()
def stats(
    labels: Path = typer.Argument(..., help="AVG label file written by `avvp-groundtruth build`."),
    plot: Path = typer.Option(None, help="Also draw the histograms into this .png, .pdf, .svg or .jpg."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --plot."),
    latent: bool = typer.Option(
        False,
        "--latent",
        help="LLP-sim pretraining stores only: how well the labels predict shared latent events (a diagnostic of "
        "the toolkit's own data; never used in training).",
    ),
) -> None:
    """Grounded share per pair type, components per video and component sizes of an AVG label file."""
    from avvp.avg_labels import read_avg_labels
    from avvp.grounding.stats import format_stats, label_stats, plot_stats
    from avvp.io import check_picture

    if plot is not None:
        check_picture(plot, overwrite)  # before the report is printed
    avg = read_avg_labels(labels)
    figures = label_stats(avg.components)
    rule = (
        f"visual >= {avg.attrs['visual_threshold']:.4f} {avg.attrs['rule']} audio >= {avg.attrs['audio_threshold']:.4f}"
        if {"visual_threshold", "audio_threshold", "rule"} <= avg.attrs.keys()
        else "edge rule not recorded"
    )
    print(f"{labels}: {rule}; source {avg.attrs.get('source', '?')}")
    print(format_stats(figures))
    if latent:
        from avvp.grounding.stats import format_agreement, latent_events_of, shared_event_agreement

        audio_events, visual_events = latent_events_of(labels, avg)
        print("\nlabels against LLP-sim's latent events (diagnostic only):")
        print(format_agreement(shared_event_agreement(avg.components, audio_events, visual_events)))
    if plot is not None:
        plot_stats(figures, plot, title=f"{labels.name}: {rule}", overwrite=overwrite)
        print(f"wrote {plot}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
