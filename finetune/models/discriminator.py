"""The modality discriminator and the gradient reversal layer in front of it (the `adv` switch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    """The paper release's `Modality_classifier`, behind a gradient reversal layer.

    Linear(D, 128) - BatchNorm1d - ReLU - Linear(128, 10) - BatchNorm1d - ReLU - Linear(10, 1), applied to ReLU
    of every snippet feature entering the MMIL head (the batch norms see all B*T*2 snippet features at once).
    It returns logits; the release's `mod_pred` is their sigmoid. The release also shuffles the features before
    the classifier, which changes nothing: the batch statistics and the mean BCE are the same in any order.
    """

    def __init__(self, hidden_size: int, layer_widths: tuple[int, int] = (128, 10)):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, layer_widths[0])
        self.norm1 = nn.BatchNorm1d(layer_widths[0])
        self.fc2 = nn.Linear(layer_widths[0], layer_widths[1])
        self.norm2 = nn.BatchNorm1d(layer_widths[1])
        self.fc3 = nn.Linear(layer_widths[1], 1)

    def forward(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        # x (B, T, 2, D) snippet features -> (B, T, 2) logits that the feature is visual
        rows = reverse_gradient(F.relu(x), strength).flatten(0, -2)  # (B*T*2, D)
        hidden = F.relu(self.norm1(self.fc1(rows)))  # (B*T*2, 128)
        hidden = F.relu(self.norm2(self.fc2(hidden)))  # (B*T*2, 10)
        return self.fc3(hidden).view(x.shape[:-1])
