"""HAN (Tian et al., ECCV 2020): one hybrid-attention layer shared by both modalities, then the MMIL head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finetune.models.attention import Attention
from finetune.models.parts import InputProjection, MMILHead, ParserOutput


class HybridAttentionLayer(nn.Module):
    """x <- LN(x + self-attn(x) + cross-attn(x, other)), then the post-norm feed-forward block.

    Parameter names follow the reference release's `HANLayer`, so its weights map one to one.
    """

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.cm_attn = Attention(d_model, heads, dropout)
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.linear2 = nn.Linear(ff_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        # x, other (B, T, D) -> (B, T, D)
        x = self.norm1(x + self.dropout(self.self_attn(x, x)) + self.dropout(self.cm_attn(x, other)))
        return self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class HAN(nn.Module):
    """The Hybrid Attention Network parser."""

    def __init__(self, widths: dict[str, int], d_model: int = 512, heads: int = 1, ff_dim: int = 512, dropout=0.1):
        super().__init__()
        self.inputs = InputProjection(widths, d_model)
        self.layer = HybridAttentionLayer(d_model, heads, ff_dim, dropout)
        self.head = MMILHead(d_model)

    def forward(self, features: dict[str, torch.Tensor], adv_strength: float = 0.0) -> ParserOutput:
        audio, visual = self.inputs(features)  # (B, T, D) each
        # Both directions use the one shared layer, each attending over the other's input.
        x = torch.stack([self.layer(audio, visual), self.layer(visual, audio)], dim=2)  # (B, T, 2, D)
        return self.head(x)
