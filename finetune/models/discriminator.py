"""The modality discriminator and the gradient reversal layer in front of it (the `adv` switch)."""

from __future__ import annotations

import math

import torch
from torch import nn


def reversal_strength(progress: float) -> float:
    """GRL strength 2 / (1 + exp(-10 p)) - 1: 0 at the start of training (p = 0), close to 1 at the end (p = 1)."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the gradient by -strength."""
    return _GradientReversal.apply(x, strength)


class ModalityDiscriminator(nn.Module):
    """A small MLP that tells audio snippet features from visual ones, behind a gradient reversal layer."""

    def __init__(self, d_model: int, hidden: int | None = None, dropout: float = 0.1):
        super().__init__()
        hidden = hidden or d_model // 2
        self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        # x (B, T, 2, D) snippet features -> (B, T, 2) logits that the feature is visual
        return self.net(reverse_gradient(x, strength)).squeeze(-1)
