"""Attention as the releases compute it: multi-head scaled dot-product attention, optionally global-context-aware.

Plain attention is `nn.MultiheadAttention` of the HAN and paper releases, with its initialisation (the packed
q/k/v projection xavier-uniform, zero biases), split into q/k/v projections so that its weights load directly.

GCAA is what the paper release's `GlobalContextAwareAttention` computes, whatever its citation: docs/design.md names
it after Xuan et al. (AAAI 2020); the formula the release implements is the gated global context of
context-aware self-attention (Yang et al., AAAI 2019). We implement the release's formula, since a row named
after the paper must compute what its code computes. The global context of a sequence (the mean of its layer
inputs over the snippets) is projected with a biased linear and gated into each projected query and key before
the usual scaled dot-product attention,

    c_q = U_q mean_t(query) + b_q          c_k = U_k mean_t(keys) + b_k          (B, 1, D)
    lambda_q = sigmoid(V_qx q + V_qc c_q)  lambda_k = sigmoid(V_kx k + V_kc c_k)  (B, T, 1), four biased linears
    q' = (1 - lambda_q) q + lambda_q c_q   k' = (1 - lambda_k) k + lambda_k c_k

In cross-attention the queries and keys come from different modalities, so each side is gated with its own
sequence's context. Its projections are plain `nn.Linear`s with their default initialisation, as in the release.

`first_snippet=True` reproduces a defect of the paper release's GCAA layers: they take `[0]` of the attention
output laid out (T, B, D), i.e. snippet 0's attended vector, which the residual then adds to every snippet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avvp.finetune.models.sizes import ParserSizes


class Attention(nn.Module):
    """Multi-head attention of `query` over `context`; `global_context=True` makes it GCAA."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        dropout: float,
        global_context: bool = False,
        first_snippet: bool = False,
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.global_context = global_context
        self.first_snippet = first_snippet
        """Every query position gets position 0's output (the paper release's `[0]` defect)."""
        if global_context:
            self.context_q = nn.Linear(hidden_size, hidden_size)  # release: qc_linear
            self.context_k = nn.Linear(hidden_size, hidden_size)  # release: kc_linear
            self.gate_q_x = nn.Linear(hidden_size, 1)  # release: Vqx_linear
            self.gate_q_c = nn.Linear(hidden_size, 1)  # release: Vqc_linear
            self.gate_k_x = nn.Linear(hidden_size, 1)  # release: Vkx_linear
            self.gate_k_c = nn.Linear(hidden_size, 1)  # release: Vkc_linear
        else:
            self._init_as_multihead_attention()
        self.fixed_gate: float | None = None
        """Force every GCAA gate lambda to this value (tests and ablations); None = learned gates."""

    @torch.no_grad()
    def _init_as_multihead_attention(self) -> None:
        # nn.MultiheadAttention: xavier-uniform over the packed (3D, D) in-projection, zero in/out biases.
        packed = torch.empty(3 * self.q_proj.out_features, self.q_proj.in_features)
        nn.init.xavier_uniform_(packed)
        for proj, weight in zip((self.q_proj, self.k_proj, self.v_proj), packed.chunk(3), strict=True):
            proj.weight.copy_(weight)
            proj.bias.zero_()
        self.out_proj.bias.zero_()

    def _gate(self, sequence: torch.Tensor, proj: torch.Tensor, side: str) -> torch.Tensor:
        # sequence (B, T, D) the layer input, proj (B, T, D) its query or key projection
        context = getattr(self, f"context_{side}")(sequence.mean(dim=1, keepdim=True))  # (B, 1, D)
        if self.fixed_gate is None:
            gate_x, gate_c = getattr(self, f"gate_{side}_x"), getattr(self, f"gate_{side}_c")
            weight = torch.sigmoid(gate_x(proj) + gate_c(context))  # (B, T, 1)
        else:
            weight = torch.full_like(proj[..., :1], self.fixed_gate)
        return (1 - weight) * proj + weight * context

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # query (B, Tq, D) attends over context (B, Tk, D); returns (B, Tq, D)
        q, k, v = self.q_proj(query), self.k_proj(context), self.v_proj(context)
        if self.global_context:
            q, k = self._gate(query, q, "q"), self._gate(context, k, "k")
        batch, length, width = q.shape
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        output = self.out_proj(attended.transpose(1, 2).reshape(batch, length, width))  # (B, Tq, D)
        if self.first_snippet:
            output = output[:, :1].expand_as(output)
        return output


class FeedForward(nn.Module):
    """The post-norm feed-forward block: x <- LN(x + dropout(W2 dropout(relu(W1 x))))."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(hidden_size, intermediate_size)
        self.linear2 = nn.Linear(intermediate_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, T, D)
        return self.norm(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class AttentionLayer(nn.Module):
    """A post-norm Transformer layer: x <- LN(x + dropout(attn(x, context))), then the feed-forward block.

    With no `context` it is self-attention (the release's `SANLayer`); with the other modality's features it
    is the release's cross-modal `CMANLayer`.
    """

    def __init__(self, sizes: ParserSizes, global_context: bool = False, first_snippet: bool = False):
        super().__init__()
        self.attn = Attention(sizes.hidden_size, sizes.num_heads, sizes.dropout, global_context, first_snippet)
        self.norm = nn.LayerNorm(sizes.hidden_size)
        self.dropout = nn.Dropout(sizes.dropout)
        self.ff = FeedForward(sizes.hidden_size, sizes.intermediate_size, sizes.dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x (B, T, D), context (B, Tk, D) or None for self-attention
        attended = self.attn(x, x if context is None else context)
        return self.ff(self.norm(x + self.dropout(attended)))
