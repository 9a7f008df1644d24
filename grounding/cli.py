"""`avvp-groundtruth`: AVG labels from a feature store (build), threshold calibration, label statistics."""

from __future__ import annotations

from pathlib import Path

import typer

from avvp.console import run_app, typer_app
from grounding.build import BATCH_SIZE, SILENCE_THRESHOLD
from grounding.thresholds import BALANCED_SHARE

app = typer_app("Audio-visual grounding labels: per-video snippet graphs and their connected components.")


@app.command()
def build(
    features: Path = typer.Option(..., help="Feature store with 'audio' and 'visual' streams."),
    out: Path = typer.Option(..., help="AVG label file to write (HDF5)."),
    recipe: str = typer.Option(
        "toolkit",
        help="No threshold given: 'toolkit' (balanced: --grounded-share of the pairs grounded after the components "
        "are joined) or 'release' (the authors' 0.96 visual, 0.99 audio).",
    ),
    grounded_share: float = typer.Option(
        BALANCED_SHARE, help="toolkit recipe: share of the sampled videos' snippet pairs grounded (calibrated)."
    ),
    visual_threshold: float = typer.Option(
        None, help="Fixed visual cosine threshold in [-1, 1] (with only audio set: 0.96, the authors', ResNet-152)."
    ),
    audio_threshold: float = typer.Option(
        None, help="Fixed audio cosine threshold in [-1, 1] (with only visual set: 0.99, the authors', VGGish)."
    ),
    visual_quantile: float = typer.Option(
        None, help="Calibrate the visual threshold at this quantile of neighbour similarities (FAISS)."
    ),
    audio_quantile: float = typer.Option(
        None, help="Calibrate the audio threshold at this quantile of neighbour similarities (FAISS)."
    ),
    rule: str = typer.Option("or", help="Edge when the visual OR the audio test passes ('or'), or both ('and')."),
    engine: str = typer.Option("fast", help="'fast' (batched) or 'networkx' (one graph per video, reference)."),
    exclude_silence: Path = typer.Option(
        None,
        help="Silence embedding (.npy, (W,) or (1, W) for audio width W): snippets that sound like it get no edge.",
    ),
    silence_threshold: float = typer.Option(
        SILENCE_THRESHOLD, help="Cosine to the silence embedding at or above which a snippet is silent (the authors')."
    ),
    neighbours: int = typer.Option(10, help="Calibration: nearest neighbours per sampled snippet."),
    sample_videos: int = typer.Option(2000, help="Calibration: videos sampled from the store."),
    seed: int = typer.Option(0, help="Calibration: seed of the sample."),
    batch_size: int = typer.Option(BATCH_SIZE, help="Videos read and labelled at a time (memory is bounded by this)."),
    threads: int = typer.Option(0, help="Threads computing similarities (0: one per CPU core)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Label every video of a feature store: snippet graphs by the threshold rule, then connected components."""
    from avvp.avg_labels import read_avg_labels
    from grounding.build import GroundingConfig
    from grounding.build import build as run_build
    from grounding.stats import label_stats

    cfg = GroundingConfig(
        features=features,
        out=out,
        recipe=recipe,
        grounded_share=grounded_share,
        visual_threshold=visual_threshold,
        audio_threshold=audio_threshold,
        visual_quantile=visual_quantile,
        audio_quantile=audio_quantile,
        rule=rule,
        engine=engine,
        exclude_silence=exclude_silence,
        silence_threshold=silence_threshold,
        neighbours=neighbours,
        sample_videos=sample_videos,
        seed=seed,
        batch_size=batch_size,
        threads=threads,
        overwrite=overwrite,
        show_progress=not quiet,
    )
    path = run_build(cfg)
    labels = read_avg_labels(path)
    stats = label_stats(labels.components)
    print(
        f"wrote {path}: {stats.videos} videos, visual threshold {labels.attrs['visual_threshold']:.4f}, "
        f"audio threshold {labels.attrs['audio_threshold']:.4f}, rule {labels.attrs['rule']}, "
        f"{100 * stats.positive_pairs:.2f}% of snippet pairs positive"
    )


@app.command()
def calibrate(
    features: Path = typer.Option(..., help="Feature store with 'audio' and 'visual' streams."),
    quantile: list[float] = typer.Option(
        [0.5, 0.9, 0.99], help="Quantile(s) of the neighbour similarities; repeat for several."
    ),
    neighbours: int = typer.Option(10, help="Nearest neighbours per sampled snippet."),
    sample_videos: int = typer.Option(2000, help="Videos sampled from the store (all their snippets are used)."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    rule: str = typer.Option("or", help="Rule for the positive share: 'or' or 'and'."),
) -> None:
    """Print the thresholds that quantiles of the neighbour similarities give, and the positive pairs they produce."""
    from avvp.errors import ConfigError
    from grounding.graph import RULES, EdgeRule
    from grounding.thresholds import calibrate as run_calibrate
    from grounding.thresholds import check_quantile

    for q in quantile:
        check_quantile("--quantile", q)
    if seed < 0:
        raise ConfigError(f"--seed {seed}: must be at least 0")
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
    from avvp.io import check_picture
    from grounding.stats import format_stats, label_stats, plot_stats

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
        from grounding.stats import format_agreement, latent_events_of, shared_event_agreement

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
