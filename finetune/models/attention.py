"""Attention: multi-head scaled dot-product attention, optionally global-context-aware (GCAA).

GCAA (context-aware self-attention, Yang et al., AAAI 2019, as used by Lamba et al. 2021) gates a global
context vector into each query and key before the usual scaled dot-product attention:

    c = mean_t(x)                       the sequence's global context, (B, 1, D)
    c_q = U_q c                         context projected into query space
    lambda_q = sigmoid(w_q . q + w_c . c_q)   one gate per position, (B, T, 1)
    q' = (1 - lambda_q) q + lambda_q c_q

and likewise for the keys with the context of the key sequence (in cross-attention the queries and keys
come from different modalities, so each side is gated with its own sequence's context).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of `query` over `context`; `global_context=True` makes it GCAA.

    The projections match `torch.nn.MultiheadAttention` (q, k, v, out), so its weights load directly.
    """

    def __init__(self, d_model: int, heads: int = 1, dropout: float = 0.0, global_context: bool = False):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.global_context = global_context
        if global_context:
            self.context_q = nn.Linear(d_model, d_model, bias=False)
            self.context_k = nn.Linear(d_model, d_model, bias=False)
            self.gate_q = nn.Linear(2 * d_model, 1)
            self.gate_k = nn.Linear(2 * d_model, 1)
        self.fixed_gate: float | None = None
        """Force every GCAA gate lambda to this value (tests and ablations); None = learned gates."""

    def _gate(self, x: torch.Tensor, proj: torch.Tensor, context: nn.Linear, gate: nn.Linear) -> torch.Tensor:
        # x (B, T, D) the layer input, proj (B, T, D) its query or key projection
        global_context = context(x.mean(dim=1, keepdim=True)).expand_as(proj)  # (B, T, D)
        if self.fixed_gate is None:
            weight = torch.sigmoid(gate(torch.cat([proj, global_context], dim=-1)))  # (B, T, 1)
        else:
            weight = torch.full_like(proj[..., :1], self.fixed_gate)
        return (1 - weight) * proj + weight * global_context

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # query (B, Tq, D) attends over context (B, Tk, D); returns (B, Tq, D)
        q, k, v = self.q_proj(query), self.k_proj(context), self.v_proj(context)
        if self.global_context:
            q = self._gate(query, q, self.context_q, self.gate_q)
            k = self._gate(context, k, self.context_k, self.gate_k)
        batch, length, width = q.shape
        q, k, v = (t.unflatten(-1, (self.heads, width // self.heads)).transpose(1, 2) for t in (q, k, v))  # (B,H,T,D/H)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, width))


class FeedForward(nn.Module):
    """The post-norm feed-forward block: x <- LN(x + dropout(W2 dropout(relu(W1 x))))."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.linear2 = nn.Linear(ff_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, T, D)
        return self.norm(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class SelfAttentionLayer(nn.Module):
    """A post-norm Transformer encoder layer: x <- LN(x + dropout(attn(x, x))), then the feed-forward block."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float, global_context: bool = False):
        super().__init__()
        self.attn = Attention(d_model, heads, dropout, global_context)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.ff = FeedForward(d_model, ff_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, T, D)
        return self.ff(self.norm(x + self.dropout(self.attn(x, x))))
