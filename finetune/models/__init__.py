"""The parser family: one registry of named variants, the shared parts, and the model wrapper.

`han` is the Hybrid Attention Network; `mmil` the MMIL head alone (the default head on a pretrained encoder
trained end to end); `release-avg` the same head reading the encoder's motion tokens, as the paper release's
`avg`; every other name is `Base` with a combination of the switches `adv`, `skip`, `gcaa` (written in that
order: `base-adv-skip-gcaa`). The paper's rows are `PAPER_ROWS`.
"""

from __future__ import annotations

from itertools import product

import torch
from torch import nn

from avvp.classes import STREAMS
from avvp.finetune.models.base import Base
from avvp.finetune.models.han import HAN
from avvp.finetune.models.parts import MMILParser, ParserOutput
from avvp.finetune.models.sizes import ParserSizes


def _base_name(adv: bool, skip: bool, gcaa: bool) -> str:
    return "-".join(["base"] + [name for name, on in (("adv", adv), ("skip", skip), ("gcaa", gcaa)) if on])


REGISTRY: dict[str, dict] = (
    {"han": {"arch": "han"}}
    | {
        _base_name(adv, skip, gcaa): {"arch": "base", "adv": adv, "skip": skip, "gcaa": gcaa}
        for adv, skip, gcaa in product((False, True), repeat=3)
    }
    | {"mmil": {"arch": "mmil"}}
    | {"release-avg": {"arch": "mmil", "encoded_motion": True}}
)
"""Variant name -> architecture and switches. `release-avg` is the paper release's end-to-end model (`avg`'s `avvp`
branch): the MMIL head alone, like `mmil`, but on a frontend that feeds it the *encoded* motion tokens."""
PAPER_ROWS = ("han", "base", "base-gcaa", "base-adv-skip", "base-adv-skip-gcaa")
"""The rows of the paper's tables that involve no pretraining, in table order."""


def has_discriminator(name: str, adv_on_every_row: bool = False) -> bool:
    """Whether the variant trains a modality discriminator (and so has the adversarial loss term).

    `adv_on_every_row`: every Base-family variant has one, as in the paper release's scripts.
    """
    spec = REGISTRY[name]
    return bool(spec.get("adv") or (adv_on_every_row and spec["arch"] == "base"))


def build_parser(
    name: str,
    widths: dict[str, int],
    sizes: ParserSizes,
    gcaa_first_snippet: bool = False,
    adv_on_every_row: bool = False,
) -> nn.Module:
    """A registered parser of the given `sizes` for inputs of the given widths, e.g. {"audio": 128, "visual": 2048,
    "motion": 512}.

    `gcaa_first_snippet` and `adv_on_every_row` reproduce the paper release (see FinetuneConfig); they apply to
    the Base family only.
    """
    spec = dict(REGISTRY[name])
    arch = spec.pop("arch")
    if arch == "han":
        return HAN(widths, sizes)
    if arch == "mmil":
        return MMILParser(widths, sizes.hidden_size)
    spec["adv"] = has_discriminator(name, adv_on_every_row)
    return Base(widths, sizes, **spec, gcaa_first_snippet=gcaa_first_snippet)


def build_model(cfg, frontend: nn.Module | None = None) -> FinetuneModel:
    """The model a finetuning config describes (`cfg.model`, `cfg.input_widths`, sizes, switches), with a frontend."""
    parser = build_parser(
        cfg.model,
        cfg.input_widths,
        cfg.parser_sizes(),
        gcaa_first_snippet=cfg.gcaa_first_snippet,
        adv_on_every_row=cfg.adv_on_every_row,
    )
    return FinetuneModel(parser, frontend)


class FinetuneModel(nn.Module):
    """A parser, optionally behind a frontend.

    The frontend (e.g. a pretrained encoder trained end to end) is any module that maps the batch's raw
    streams {"audio", "visual", "motion"} to the feature dict the parser reads (same keys, its own widths);
    the training loop gives its parameters their own learning rate.
    """

    def __init__(self, parser: nn.Module, frontend: nn.Module | None = None):
        super().__init__()
        self.parser = parser
        self.frontend = frontend

    def forward(self, features: dict[str, torch.Tensor], adv_strength: float = 0.0) -> ParserOutput:
        if self.frontend is not None:
            features = self.frontend(features)
        return self.parser(features, adv_strength)


__all__ = [
    "PAPER_ROWS",
    "REGISTRY",
    "STREAMS",
    "FinetuneModel",
    "ParserOutput",
    "ParserSizes",
    "build_model",
    "build_parser",
    "has_discriminator",
]
