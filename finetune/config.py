"""The finetuning configuration: one dataclass, the training recipes and the presets that fill it.

A config is resolved by `FinetuneConfig.from_preset` with the precedence of both stages (`avvp.presets`): the
defaults, then the preset (`tiny`, `demo`, `paper`: the model's width and the number of epochs), then the model's
recipe (the paper's, the release's, or HAN's own for `han`), then whatever the caller sets explicitly. The run
directory stores the result as `config.json`, from which the model is rebuilt alone.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

from avvp.config_cli import cli
from avvp.errors import ConfigError
from avvp.finetune.losses import LossWeights
from avvp.finetune.models import REGISTRY, STREAMS, ParserSizes
from avvp.inputs import check_sizes
from avvp.precision import MIXED_PRECISION
from avvp.presets import resolve_settings

RECIPES: dict[str, dict] = {
    # The paper's text: lambda_g 0.6, lambda_ad 0.4, Adam 3e-4 halved every 5 epochs, 40 epochs, batch 64.
    "paper": dict(
        lr=3e-4, lr_step=5, lr_gamma=0.5, lambda_guided=0.6, lambda_adv=0.4,
        gcaa_first_snippet=False, adv_on_every_row=False, reversal_epoch_offset=0, select_ties_later=False,
    ),
    # The paper release's scripts (main_avvp*.py): BCE + 0.3 (BCE_a + BCE_v) + 0.3 BCE_mod on every Base-family
    # net, Adam 6e-4 with StepLR(6, 0.5) per epoch, epochs counted from 1 in the reversal schedule, `>=`
    # selection, and the `[0]` of its GCAA layers; 40 epochs, batch 64.
    "release": dict(
        lr=6e-4, lr_step=6, lr_gamma=0.5, lambda_guided=0.3, lambda_adv=0.3,
        gcaa_first_snippet=True, adv_on_every_row=True, reversal_epoch_offset=1, select_ties_later=True,
    ),
    # HAN's release: lr x0.1 every 10 epochs, batch 16, its three BCE terms weighed equally, `>=` selection.
    "han": dict(
        batch_size=16, lr=3e-4, lr_step=10, lr_gamma=0.1, lambda_guided=1.0,
        gcaa_first_snippet=False, adv_on_every_row=False, reversal_epoch_offset=0, select_ties_later=True,
    ),
}  # fmt: skip
"""Training recipes. `han` always trains with HAN's; every other model with the paper's (default) or the
release's (`--recipe release`). All three train 40 epochs, the default, and leave the number of epochs to the
preset (a recipe wins over a preset: `avvp.presets`); the paper's and the release's batch of 64 is the default
too, which the demo preset narrows to 16, HAN's own batch."""
RELEASE_E2E_RECIPE = dict(
    lr=1e-6, frontend_lr=1e-6, lr_step=40, lr_gamma=1.0, lambda_guided=1.0, lambda_adv=0.0,
    audio_smoothing=0.0, visual_smoothing=0.1, gcaa_first_snippet=False, adv_on_every_row=False,
    reversal_epoch_offset=0, select_ties_later=True, continue_pretraining_optimizer=True,
)  # fmt: skip
"""`--recipe release` for `release-avg` (main_avvp_{uni,cross,multi}.py end to end): one Adam at a constant 1e-6 for
encoder and head, continuing the pretraining run's moments; BCE(video) + BCE(audio) + BCE(visual, targets smoothed
0.1); batch 64 and 40 epochs (the defaults), `>=` selection, no discriminator."""
RECIPE_HELP = {
    "paper": "the paper's text (lambda_g 0.6, lambda_ad 0.4, lr 3e-4 halved every 5 epochs, GCAA on every snippet)",
    "release": "the paper release's scripts (release-avg end to end: one Adam at 1e-6 continuing pretraining's "
    "moments, BCE + BCE_a + BCE_v; the Base family: 1 BCE + 0.3 (BCE_a + BCE_v) + 0.3 BCE_mod with a discriminator "
    "on every Base-family row, lr 6e-4 halved every 6 epochs, reversal epochs from 1, >= selection, GCAA's [0])",
    "han": "HAN's release (lr 3e-4 x0.1 every 10 epochs, batch 16, three BCE terms weighed 1); the only one for han",
}
"""One line per recipe, for --help and the README."""
PRESETS: dict[str, dict] = {
    "tiny": dict(epochs=2, hidden_size=64, intermediate_size=64),
    "demo": dict(epochs=20, batch_size=16, hidden_size=128, intermediate_size=128),
    "paper": {},
}
"""Presets under the recipe: tiny (tests, seconds); demo (minutes on 2 CPU cores: the first 20 epochs of the
recipe's schedule, a narrower model, and batch 16 so that LLP-sim demo's 1,400 train videos still give many
optimizer steps per epoch); paper (the recipe and sizes as published)."""


def recipe_name(model: str, recipe: str | None = None) -> str:
    """The recipe a model trains with: HAN's for `han`, else `recipe` (default: the paper's)."""
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if model == "han":
        if recipe not in (None, "han"):
            raise ConfigError(f"--recipe {recipe}: han trains with HAN's own recipe (the only one for han)")
        return "han"
    return recipe or "paper"


MISSING = ("error", "skip")
"""`--missing`: what a video of the annotations absent from the feature store does."""
RENAMED = {"d_model": "hidden_size", "heads": "num_heads", "ff_dim": "intermediate_size"}
"""Old field names -> the names the pretraining encoder's config uses too; a run saved under the old ones loads."""
DEFAULT_MODEL = "base-adv-skip-gcaa"
DEFAULT_FRONTEND_MODEL = "mmil"
"""The parser on a trainable frontend (a pretrained encoder end to end): the MMIL head alone."""
PRESET_FIELDS = {
    **{name: "the --preset's or --recipe's" for table in (*PRESETS.values(), *RECIPES.values()) for name in table},
    "model": f"{DEFAULT_FRONTEND_MODEL} with --e2e, release-avg on a release-architecture encoder",
    "recipe": "han for han",
}
"""The settings a preset, a recipe or the model sets: on the command line they default to None (not given), and
`FinetuneConfig.from_preset` fills them in; the help says from what."""


def unknown_model_message(model: str) -> str:
    return f"unknown model {model!r}; choose one of {', '.join(REGISTRY)}"


@dataclass
class FinetuneConfig:
    """Everything a finetuning run needs; `config.json` of a run directory."""

    model: str = DEFAULT_MODEL
    """Parser variant, one of avvp.finetune.models.REGISTRY (han, base, base-gcaa, base-adv-skip, base-adv-skip-gcaa,
    mmil, release-avg)."""
    features: str = field(default="", metadata=cli(path=True))
    """Feature store (HDF5) holding the train, val and test videos."""
    annotations: str = field(default="", metadata=cli(path=True))
    """Folder with the LLP annotation files (AVVP_*.csv)."""
    out: str = field(default="", metadata=cli(path=True))
    """Run directory."""
    preset: str = "paper"
    """Preset the model width and the number of epochs came from: tiny, demo or paper (the recipe wins where
    both set a field)."""
    epochs: int = 40
    """Training epochs."""
    batch_size: int = 64
    """Videos per training batch (over all processes)."""
    lr: float = 3e-4
    """Adam learning rate of the parser."""
    lr_step: int = 5
    """Epochs between learning-rate decays."""
    lr_gamma: float = 0.5
    """Learning-rate factor at each decay."""
    lambda_guided: float = 0.6
    """Weight of the modality-guided loss L_g."""
    lambda_adv: float = 0.4
    """Weight of the modality-discriminator loss (reversed for the encoder); used by `adv` variants only."""
    audio_smoothing: float = 0.0
    """Label smoothing (toward 0.5) of the audio targets of L_g."""
    visual_smoothing: float = 0.1
    """Label smoothing (toward 0.5) of the visual targets of L_g."""
    hidden_size: int = 512
    """Width of the projected snippet features and of the attention layers."""
    num_heads: int = field(default=1, metadata=cli("--heads"))
    """Attention heads."""
    intermediate_size: int = 512
    """Width of the feed-forward blocks."""
    dropout: float = 0.1
    """Dropout in the attention and feed-forward blocks."""
    seed: int = 0
    """Seed of initialisation, dropout and batch order; CPU runs with one seed repeat exactly."""
    mixed_precision: str = "auto"
    """auto (bf16 on a GPU that supports it, else full precision), no, or bf16 (also on a CPU; avvp.precision)."""
    input_widths: dict[str, int] = field(default_factory=dict, metadata=cli(exclude=True))
    """Width of each input stream, read from the feature store at the start of training."""
    frontend: str = field(default="", metadata=cli("--encoder", path=True))
    """Where the frontend module came from: on the command line, the pretrained encoder (the --out of
    avvp-pretrain) trained with the parser under --e2e; empty: raw features."""
    frontend_lr: float | None = field(default=None, metadata=cli("--encoder-lr"))
    """Learning rate of the frontend's parameters; default lr / 10."""
    frontend_config: dict = field(default_factory=dict, metadata=cli(exclude=True))
    """The frontend encoder's own config (rebuilds its architecture; its weights are in model.safetensors)."""
    imported_from: str = field(default="", metadata=cli(exclude=True))
    """The file the weights were converted from, for runs not trained here (import-han, import-release)."""
    recipe: str = "paper"
    """The training recipe the schedule and the release switches below came from: paper, release or han (it wins
    over the preset where both set a field)."""
    gcaa_first_snippet: bool = False
    """GCAA layers give every snippet snippet 0's attended vector, as the paper release's `[0]` of its (T, B, D)
    attention output does (a defect; on under the release recipe and for imported release checkpoints)."""
    adv_on_every_row: bool = False
    """Every Base-family variant trains the modality discriminator, as the paper release's scripts do (Base+GCAA
    included); otherwise only the `adv` variants have one."""
    reversal_epoch_offset: int = 0
    """Epochs added to the training progress p of the gradient-reversal schedule; 1 in the release, whose epochs
    count from 1 (p runs from 1/E to about 1 + 1/E)."""
    select_ties_later: bool = False
    """A tie of the validation score selects the later epoch (the releases' `>=`); otherwise the earlier."""
    train_fraction: float = 1.0
    """Share of the training videos trained on: a subset stratified by label and seeded by `seed`
    (`avvp.finetune.data.train_subset`); 1 trains on all of them."""
    continue_pretraining_optimizer: bool = field(default=False, metadata=cli(exclude=True))
    """Start from the Adam moments the encoder's pretraining run ended with (the release's one optimizer across
    pretraining and finetuning; `--recipe release` of release-avg); `optimizer_origin` says whether there were any."""
    optimizer_origin: str = field(default="", metadata=cli(exclude=True))
    """Where the encoder's optimizer state came from under `continue_pretraining_optimizer`: the pretraining
    checkpoint, or why it starts fresh (an untrained control or an imported encoder saved none)."""
    labels: str = field(default="", metadata=cli(path=True))
    """Refined audio and visual labels of the training videos (`avvp-finetune refine`, MA) for the targets of L_g;
    empty: the weak labels (L_wsl always has the weak labels)."""
    missing: str = "error"
    """A video of the annotations absent from the feature store: error, or skip (train, validate and test on the
    videos present; metrics.json says how many were left out per split). Stores of extracted features have gaps
    (YouTube videos disappear)."""
    left_out: dict[str, int] = field(default_factory=dict, metadata=cli(exclude=True))
    """Per split read, how many of its videos the feature store lacks (left out under --missing skip); filled by
    the run."""
    evaluation: bool = field(default=True, metadata=cli(flags="--eval/--no-eval"))
    """Validate every epoch and score the test split (needs AVVP_eval_audio.csv and AVVP_eval_visual.csv);
    --no-eval trains on AVVP_train.csv alone, keeps the last epoch and writes no test scores."""

    def __post_init__(self):
        if self.model not in REGISTRY:
            raise ConfigError(unknown_model_message(self.model))
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.reversal_epoch_offset < 0:
            raise ConfigError(f"reversal_epoch_offset must be at least 0, got {self.reversal_epoch_offset}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"--mixed-precision {self.mixed_precision!r}: expected one of {', '.join(MIXED_PRECISION)}"
            )
        for name in ("epochs", "batch_size", "lr_step", "hidden_size", "num_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "frontend_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        for name in ("lambda_guided", "lambda_adv"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if self.missing not in MISSING:
            raise ConfigError(f"--missing {self.missing!r}: expected one of {', '.join(MISSING)}")
        if not 0 < self.train_fraction <= 1:  # also refuses NaN
            raise ConfigError(f"--train-fraction {self.train_fraction}: a share of the training videos, in (0, 1]")
        if self.seed < 0:
            raise ConfigError(f"seed must be at least 0, got {self.seed}")
        check_sizes("the finetuning config", asdict(self), ConfigError)  # widths, heads, seed bounded
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        for name in ("audio_smoothing", "visual_smoothing", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        missing = [name for name in STREAMS if name not in self.input_widths]
        if self.input_widths and missing:
            raise ConfigError(f"input_widths {self.input_widths} lack the stream(s) {', '.join(missing)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.frontend_config:  # a run saved before the encoder's sizes took the run's names reads as one now
            from avvp.pretrain import AVEncoderConfig

            try:
                self.frontend_config = AVEncoderConfig.with_current_names(self.frontend_config)
            except ValueError as error:
                raise ConfigError(f"frontend_config: {error}") from None
        if REGISTRY[self.model].get("encoded_motion") and not self.frontend:
            raise ConfigError(
                f"--model {self.model} reads the encoded motion tokens of an encoder: train it with --e2e --encoder DIR"
            )
        if self.frontend_lr is not None and not self.frontend:
            raise ConfigError(
                "--encoder-lr is the learning rate of the encoder with --e2e; without --e2e there is none"
            )

    def parser_sizes(self) -> ParserSizes:
        """The widths, heads and dropout the parser modules read."""
        return ParserSizes(self.hidden_size, self.num_heads, self.intermediate_size, self.dropout)

    def loss_weights(self) -> LossWeights:
        """The weights and label smoothing `parser_loss` reads."""
        return LossWeights(self.lambda_guided, self.lambda_adv, self.audio_smoothing, self.visual_smoothing)

    @classmethod
    def from_preset(cls, preset: str = "paper", recipe: str | None = None, **overrides) -> FinetuneConfig:
        """Resolve a config: the preset's values, then the model's recipe over them, then `overrides` (None values
        are ignored) over both (`avvp.presets`).

        `model` (an override): default base-adv-skip-gcaa, or on a frontend mmil (release-avg on the release
        architecture). `recipe`: paper (default) or release for every model but `han`, which always has HAN's.
        """
        model = overrides.pop("model", None)
        if model is None and overrides.get("frontend"):
            frontend_config = overrides.get("frontend_config") or {}
            model = "release-avg" if frontend_config.get("architecture") == "release" else None
        model = model or (DEFAULT_FRONTEND_MODEL if overrides.get("frontend") else DEFAULT_MODEL)
        if model not in REGISTRY:
            raise ConfigError(unknown_model_message(model))
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        recipe = recipe_name(model, recipe)
        table = RELEASE_E2E_RECIPE if (model, recipe) == ("release-avg", "release") else RECIPES[recipe]
        values = resolve_settings(PRESETS[preset], table, overrides)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(model=model, preset=preset, recipe=recipe, **values)

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON (atomically)."""
        from avvp.io import atomic_path

        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> FinetuneConfig:
        """Read a `config.json` (`avvp.runs.load_config`): unknown or malformed fields are a one-line error."""
        from avvp.runs import load_config

        return load_config(cls, path, "the config.json of a finetuning run", renamed=RENAMED)
