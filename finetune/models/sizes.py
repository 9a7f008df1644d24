"""The sizes every parser module reads: one typed slice of `FinetuneConfig`, so a setting keeps its name."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParserSizes:
    """Widths, heads and dropout of a parser; `FinetuneConfig.parser_sizes()` (the defaults live there)."""

    hidden_size: int
    """Width of the projected snippet features, the attention layers and the MMIL head (D)."""
    num_heads: int
    """Attention heads of every attention layer; must divide hidden_size."""
    intermediate_size: int
    """Width of the feed-forward blocks."""
    dropout: float
    """Dropout in the attention and feed-forward blocks."""
