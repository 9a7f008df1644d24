"""HAN (Tian et al., ECCV 2020): one hybrid-attention layer shared by both modalities, then the MMIL head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avvp.finetune.models.attention import Attention
from avvp.finetune.models.parts import InputProjection, MMILHead, ParserOutput
from avvp.finetune.models.sizes import ParserSizes


class HybridAttentionLayer(nn.Module):
    """x <- LN(x + self-attn(x) + cross-attn(x, other)), then the post-norm feed-forward block.

    Parameter names follow the reference release's `HANLayer`, so its weights map one to one.
    """

    def __init__(self, sizes: ParserSizes):
        super().__init__()
        self.self_attn = Attention(sizes.hidden_size, sizes.num_heads, sizes.dropout)
        self.cm_attn = Attention(sizes.hidden_size, sizes.num_heads, sizes.dropout)
        self.linear1 = nn.Linear(sizes.hidden_size, sizes.intermediate_size)
        self.linear2 = nn.Linear(sizes.intermediate_size, sizes.hidden_size)
        self.norm1 = nn.LayerNorm(sizes.hidden_size)
        self.norm2 = nn.LayerNorm(sizes.hidden_size)
        self.dropout = nn.Dropout(sizes.dropout)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        # x, other (B, T, D) -> (B, T, D)
        x = self.norm1(x + self.dropout(self.self_attn(x, x)) + self.dropout(self.cm_attn(x, other)))
        return self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class HAN(nn.Module):
    """The Hybrid Attention Network parser."""

    def __init__(self, widths: dict[str, int], sizes: ParserSizes):
        super().__init__()
        self.inputs = InputProjection(widths, sizes.hidden_size)
        self.layer = HybridAttentionLayer(sizes)
        self.head = MMILHead(sizes.hidden_size)

    def forward(self, features: dict[str, torch.Tensor], adv_strength: float = 0.0) -> ParserOutput:
        audio, visual = self.inputs(features)  # (B, T, D) each
        # Both directions use the one shared layer, each attending over the other's input.
        x = torch.stack([self.layer(audio, visual), self.layer(visual, audio)], dim=2)  # (B, T, 2, D)
        return self.head(x)
