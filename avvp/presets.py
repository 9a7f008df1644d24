"""How both stages resolve a config: one precedence, written once.

A config's fields start at the dataclass defaults; the preset's values replace them, the recipe's replace the
preset's, and every value given explicitly (the command line, a caller's keyword) replaces both. A preset picks
the scale (the model's size, the length of the schedule: tiny for tests, demo for CPU minutes, paper as
published); a recipe names one paper's or release's objective and optimisation, which hold at any scale. The
recipe is the more specific choice of the two, so it wins where both set a field (pretraining's `release` sets
batch 16 and 40 epochs over every preset).
"""

from __future__ import annotations

from collections.abc import Mapping

PRECEDENCE = (
    "Settings resolve as: the defaults, then the --preset's values, then the --recipe's (a recipe, the objective "
    "and optimisation of one paper or release, is the more specific choice and wins over a preset, which picks "
    "the scale), then every option given here, which wins over both."
)
"""The rule in one sentence, for both commands' --help."""


def resolve_settings(preset: Mapping, recipe: Mapping, given: Mapping) -> dict:
    """The field values a config starts from: `preset`'s, then `recipe`'s over them, then the `given` values that
    are not None (None: not given) over both."""
    return {**preset, **recipe, **{name: value for name, value in given.items() if value is not None}}
