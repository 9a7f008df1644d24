"""Base (Lamba et al., Interspeech 2021) and its switches `skip`, `adv`, `gcaa`: one class, one set of flags.

Per modality a self-attention layer, then cross-modal attention of each modality over the other's
self-attended features, a feed-forward block, and the MMIL head.

- without `skip` the cross-attended features go on alone (normalised), so each stream carries mostly the
  other modality's content;
- `skip`: a linear layer shared by both modalities maps the cross-attended features, whose output is added
  back to the modality's own self-attended features and normalised, so each stream keeps its own signal;
- `adv`: a modality discriminator on the snippet features just before MMIL pooling, behind a gradient
  reversal layer (see `finetune.models.discriminator`);
- `gcaa`: global-context-aware attention for the self- and the cross-attention.
"""

from __future__ import annotations

import torch
from torch import nn

from finetune.models.attention import Attention, FeedForward, SelfAttentionLayer
from finetune.models.discriminator import ModalityDiscriminator
from finetune.models.mmil import InputProjection, MMILHead, ParserOutput

MODALITIES = ("audio", "visual")


class Base(nn.Module):
    """The Base parser with optional skip connection, modality discriminator and GCAA."""

    def __init__(
        self,
        widths: dict[str, int],
        d_model: int = 512,
        heads: int = 1,
        ff_dim: int = 512,
        dropout: float = 0.1,
        skip: bool = False,
        adv: bool = False,
        gcaa: bool = False,
    ):
        super().__init__()
        self.inputs = InputProjection(widths, d_model)
        self.self_layers = nn.ModuleDict(
            {m: SelfAttentionLayer(d_model, heads, ff_dim, dropout, global_context=gcaa) for m in MODALITIES}
        )
        self.cross_attn = nn.ModuleDict(
            {m: Attention(d_model, heads, dropout, global_context=gcaa) for m in MODALITIES}
        )
        self.cross_norm = nn.ModuleDict({m: nn.LayerNorm(d_model) for m in MODALITIES})
        self.cross_ff = nn.ModuleDict({m: FeedForward(d_model, ff_dim, dropout) for m in MODALITIES})
        self.skip = nn.Linear(d_model, d_model) if skip else None
        self.discriminator = ModalityDiscriminator(d_model, dropout=dropout) if adv else None
        self.dropout = nn.Dropout(dropout)
        self.head = MMILHead(d_model)

    def _cross(self, modality: str, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        # own, other (B, T, D): self-attended features of this modality and of the other one
        attended = self.dropout(self.cross_attn[modality](own, other))  # (B, T, D)
        if self.skip is not None:
            attended = own + self.skip(attended)
        return self.cross_ff[modality](self.cross_norm[modality](attended))

    def forward(self, features: dict[str, torch.Tensor], adv_strength: float = 0.0) -> ParserOutput:
        audio, visual = self.inputs(features)  # (B, T, D) each
        audio, visual = self.self_layers["audio"](audio), self.self_layers["visual"](visual)
        x = torch.stack([self._cross("audio", audio, visual), self._cross("visual", visual, audio)], dim=2)  # (B,T,2,D)
        output = self.head(x)
        if self.discriminator is not None:
            output.modality_logits = self.discriminator(x, adv_strength)  # (B, T, 2)
        return output
