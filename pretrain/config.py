"""PretrainConfig: every setting of a pretraining run, with the named size/schedule presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avvp.config_cli import cli
from avvp.errors import ConfigError
from avvp.inputs import check_sizes
from avvp.precision import MIXED_PRECISION
from avvp.presets import resolve_settings
from avvp.pretrain.losses import OBJECTIVES, RELEASE_MARGIN, check_margins, check_variant

EXPORT_BATCH_SIZE = 256
"""`avvp-pretrain export`: videos per forward pass (and per written chunk)."""

PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=2, epochs=2, batch_size=16, lr=1e-3),
    "demo": dict(hidden_size=256, num_layers=4, num_heads=4, epochs=5, batch_size=64, lr=2e-4),
    "paper": dict(hidden_size=1024, num_layers=12, num_heads=16, epochs=20, batch_size=128, lr=5e-5),
}
"""Encoder size and schedule per preset: `tiny` for tests (seconds on CPU), `demo` for CPU minutes, `paper` the
size of the authors' UNITER-based release (hidden 1024, 12 layers, 16 heads; a GPU)."""

POS_MARGIN, NEG_MARGIN = 0.8, 0.3
"""The toolkit's hinge margins p > n (measured on LLP-sim demo: README, Pretraining)."""

RECIPES: dict[str, dict] = {
    "toolkit": {},
    # main_avvp_multi.py of the paper's release: Adam (no weight decay) at a constant 1e-6, no clipping, batch 16,
    # 40 epochs, 20% held out, p = n = 0.7, no cross-video negatives, the checkpoint of the lowest validation loss.
    "release": dict(
        architecture="release",
        hide_motion=True,
        pos_margin=RELEASE_MARGIN,
        neg_margin=RELEASE_MARGIN,
        in_batch_negatives=False,
        objective="hinge",
        lr=1e-6,
        weight_decay=0.0,
        warmup=0.0,
        schedule="constant",
        max_grad_norm=0.0,
        batch_size=16,
        epochs=40,
        val_fraction=0.2,
        select="loss",
        pair_sampling="release",
    ),
}
"""Objective and optimisation per recipe, over the preset (which sets the encoder size; the recipe wins where both
set a field, `avvp.presets`): `toolkit` (the defaults below) or `release` (the authors' choices, on the release's
architecture with its motion tokens hidden: batch 16 and 40 epochs at every preset)."""
ARCHITECTURES = ("toolkit", "release")
"""The encoder architectures (avvp.pretrain.modeling): ours, and the paper release's UniterModel."""
ARCHITECTURE_SIZES: dict[tuple[str, str], dict] = {
    ("release", "paper"): dict(num_heads=8, intermediate_size=3072),
}
"""(architecture, preset) -> sizes that differ from the preset's: the release's UniterConfig has 8 heads and a
feed-forward width of 3072 at hidden 1024."""
SELECTIONS = ("auc", "loss", "last")
"""Which epoch's encoder a run keeps: highest held-out AUC, lowest held-out loss, or the last."""
SCHEDULES = ("linear", "constant")
PAIR_SAMPLINGS = ("all", "release")

PATH_FIELDS = ("features", "labels", "out")
RUN_FLAG_FIELDS = ("resume", "overwrite", "keep_checkpoints")
"""Fields of the files written before the run flags left the config (`avvp.runs.RunFlags`): read and ignored."""
PRESET_FIELDS = frozenset(name for table in (*PRESETS.values(), *RECIPES.values()) for name in table)
"""The settings a preset or a recipe sets: on the command line they default to the preset's or recipe's value."""
INIT_FIELDS = ("features", "out", "labels", "variant", "preset", "recipe", "architecture", "hidden_size",
               "num_layers", "num_heads", "intermediate_size", "dropout", "val_fraction", "seed")  # fmt: skip
"""The settings of `avvp-pretrain init`: those that shape the untrained encoder, and those it records."""


@dataclass
class PretrainConfig:
    """A pretraining run; the defaults are the `demo` preset. Saved as pretrain_config.json in the run directory."""

    features: str = field(default="", metadata=cli(path=True))
    """Pretraining feature store with the audio, visual and motion streams."""
    labels: str = field(default="", metadata=cli(path=True))
    """AVG label file for the same videos in the same order (avvp-groundtruth build)."""
    out: str = field(default="", metadata=cli(path=True))
    """Run directory: the encoder (config.json, model.safetensors), metrics.json, log.jsonl, checkpoints/."""
    variant: str = "multi"
    """Modality pairs of the AVG loss: uni (a-a, v-v), cross (a-v, v-a) or multi (both)."""
    preset: str = "demo"
    """Named size and schedule (PRESETS) the other fields started from."""
    recipe: str = "toolkit"
    """Named objective and optimisation (RECIPES) applied over the preset (it wins where both set a field):
    toolkit or release."""
    architecture: str = "toolkit"
    """Encoder architecture (avvp.pretrain.modeling.ARCHITECTURES): `toolkit` (ours: standardised inputs, learned
    positions, three token types) or `release` (the paper release's UniterModel); recorded in config.json."""
    hide_motion: bool = False
    """Train with the motion tokens zeroed and masked out of attention, as the release's pretraining does (its
    AudioSet corpus has no R(2+1)D features)."""
    hidden_size: int = 256
    """Width of the encoder (every token and output embedding)."""
    num_layers: int = field(default=4, metadata=cli("--layers"))
    """BERT layers."""
    num_heads: int = field(default=4, metadata=cli("--heads"))
    """Attention heads per layer; must divide hidden_size."""
    intermediate_size: int | None = None
    """Feed-forward width of each layer; None means 4 x hidden_size."""
    dropout: float = 0.1
    """Dropout on hidden states and attention probabilities."""
    epochs: int = 5
    """Passes over the training part of the corpus."""
    batch_size: int = 64
    """Videos per batch on each process (the global batch is this x processes x grad_accum)."""
    grad_accum: int = 1
    """Batches whose gradients are accumulated before each optimizer step."""
    lr: float = 2e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and LayerNorm weights)."""
    warmup: float = 0.1
    """Share of the optimizer steps spent warming the learning rate up linearly; then the schedule."""
    schedule: str = "linear"
    """After the warm-up: linear decay to 0 (`linear`) or the peak rate throughout (`constant`, the release's)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 turns clipping off)."""
    objective: str = "hinge"
    """`hinge` (the AVG loss with margins p, n) or `infonce` (softmax at `temperature`, avvp.pretrain.losses)."""
    pos_margin: float = POS_MARGIN
    """p: grounded pairs are pulled above this cosine similarity (hinge)."""
    neg_margin: float = NEG_MARGIN
    """n: other pairs are pushed below this cosine similarity (hinge); at most p."""
    in_batch_negatives: bool = True
    """Hinge: also treat every snippet of the other videos in the (global) batch as a negative."""
    temperature: float = 0.1
    """InfoNCE temperature tau."""
    pair_sampling: str = "all"
    """Hinge pairs per batch: `all` (every snippet of every video an anchor, every pair type of the variant) or
    `release` (one random anchor snippet per batch; `multi` alternates cross-modal pairs in even epochs and
    same-modal pairs in odd ones, as main_avvp_multi.py)."""
    select: str = "auc"
    """The encoder kept: the epoch of the highest held-out AUC (`auc`), lowest held-out loss (`loss`), or `last`."""
    val_fraction: float = 0.1
    """Share of the corpus held out for the validation loss and grounding accuracy (0: none)."""
    save_every: int = 500
    """Save the Accelerate state every this many optimizer steps (and at the end of every epoch)."""
    log_every: int = 10
    """Write the mean training loss to log.jsonl every this many optimizer steps."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (the learning-rate schedule is set for them); None: all epochs."""
    mixed_precision: str = "auto"
    """auto (bf16 on a GPU, none on the CPU), no, or bf16."""
    seed: int = 0
    """Seed of the initial weights, the held-out split, the shuffling and dropout."""
    untrained: bool = field(default=False, metadata=cli(exclude=True))
    """True for a control written by `avvp-pretrain init`: the step-0 encoder of a run with these settings,
    never trained (it can be finetuned and exported like any encoder, but not resumed)."""

    def __post_init__(self):
        check_variant(self.variant)
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"--architecture {self.architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"--mixed-precision {self.mixed_precision!r}: expected one of {', '.join(MIXED_PRECISION)}"
            )
        positive = ("hidden_size", "num_layers", "num_heads", "epochs", "batch_size", "grad_accum", "save_every")
        for name in positive + ("log_every",):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps {self.max_steps}: must be at least 1")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"--hidden-size {self.hidden_size} is not a multiple of --heads {self.num_heads}")
        check_margins(self.pos_margin, self.neg_margin)
        for name, allowed in (("recipe", RECIPES), ("objective", OBJECTIVES), ("select", SELECTIONS),
                              ("schedule", SCHEDULES), ("pair_sampling", PAIR_SAMPLINGS)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature {self.temperature}: must be a positive number")
        if self.select != "last" and self.val_fraction == 0:
            raise ConfigError(f"--select {self.select} needs held-out videos; give --val-fraction > 0 or --select last")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {self.val_fraction}: expected a share in [0, 1)")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"--warmup {self.warmup}: expected a share in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout {self.dropout}: expected a probability in [0, 1)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr {self.lr}: must be a positive number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay {self.weight_decay}: must be a number >= 0")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: must be at least 0")
        check_sizes("the pretraining config", asdict(self), ConfigError)  # sizes and seed bounded
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size

    @classmethod
    def from_preset(cls, preset: str = "demo", recipe: str = "toolkit", **overrides) -> PretrainConfig:
        """Resolve a config: the preset's values, then the recipe's over them, then every override that is not
        None over both (`avvp.presets`); the release architecture at the paper size takes its own heads and
        feed-forward width (ARCHITECTURE_SIZES) unless they are given."""
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
        if recipe not in RECIPES:
            raise ConfigError(f"--recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
        values = resolve_settings(PRESETS[preset], RECIPES[recipe], overrides)
        architecture_sizes = ARCHITECTURE_SIZES.get((values.get("architecture", "toolkit"), preset), {})
        values.update({name: value for name, value in architecture_sizes.items() if overrides.get(name) is None})
        return cls(preset=preset, recipe=recipe, **values)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> PretrainConfig:
        """Read a saved pretrain_config.json (`avvp.runs.load_config`: each field checked, errors name the file)."""
        from avvp.runs import load_config

        return load_config(cls, path, "the pretrain_config.json of a pretraining run", dropped=RUN_FLAG_FIELDS)
