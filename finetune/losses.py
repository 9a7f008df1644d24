"""The loss terms: L = L_wsl + lambda_g L_g - lambda_ad L_ad (docs/design.md, "Models"), each a small function.

Sign convention of the adversarial term. The modality discriminator sits behind a gradient reversal layer
(GRL) of strength alpha. The loop back-propagates

    L_wsl + lambda_g L_g + lambda_ad L_ad

so the discriminator's parameters get +lambda_ad dL_ad (it *minimises* its BCE), while every parameter
before the GRL gets the gradient of L_wsl + lambda_g L_g - alpha lambda_ad L_ad: the encoder *maximises* the
discriminator's BCE, which is the "- lambda_ad L_ad" of docs/design.md (alpha rising 0 -> 1 over training). The
logged `loss` is that encoder objective, L_wsl + lambda_g L_g - lambda_ad L_ad.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avvp.finetune.models import ParserOutput

VISUAL, AUDIO = 1.0, 0.0
"""Discriminator targets: a snippet feature is visual (1) or audio (0)."""


EPSILON = 1e-7
"""Probabilities are clamped to [EPSILON, 1 - EPSILON] before the BCE, as HAN's release does: the attention-
weighted sums can round a hair above 1."""


def _bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy(prob.float().clamp(EPSILON, 1 - EPSILON), target)


def smooth_labels(labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Label smoothing toward 0.5: (1 - epsilon) y + epsilon / 2."""
    return (1 - epsilon) * labels + epsilon * 0.5


def weak_loss(video_prob: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_wsl: BCE of the joint video-level probabilities (B, 25) against the weak labels (B, 25)."""
    return _bce(video_prob, labels.float())


def guided_loss(
    audio_prob: torch.Tensor,
    visual_prob: torch.Tensor,
    labels: torch.Tensor,
    audio_smoothing: float,
    visual_smoothing: float,
    modality_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_g: BCE of each modality's video-level probabilities against label-smoothed weak labels, summed.

    With `modality_labels` (B, 2, 25), the refined audio and visual labels of `avvp-finetune refine`, each
    modality's targets are its own; a weak label the refinement took from a modality is a target of exactly 0
    there (not smoothed), as the MA release's retraining has it.
    """
    labels = labels.float()
    if modality_labels is None:
        return _bce(audio_prob, smooth_labels(labels, audio_smoothing)) + _bce(
            visual_prob, smooth_labels(labels, visual_smoothing)
        )
    refined = modality_labels.float()
    taken = (labels > 0).unsqueeze(1) & (refined == 0)  # (B, 2, 25)
    smoothed = torch.stack(
        [smooth_labels(refined[:, 0], audio_smoothing), smooth_labels(refined[:, 1], visual_smoothing)], 1
    )
    targets = smoothed.masked_fill(taken, 0.0)  # (B, 2, 25)
    return _bce(audio_prob, targets[:, 0]) + _bce(visual_prob, targets[:, 1])


def adversarial_loss(modality_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L_ad and the discriminator's accuracy, from logits (B, T, 2) whose modality axis is (audio, visual)."""
    logits = modality_logits.float()
    targets = torch.tensor([AUDIO, VISUAL], device=logits.device).expand_as(logits)  # (B, T, 2)
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    accuracy = ((logits > 0).float() == targets).float().mean()
    return loss, accuracy


@dataclass(frozen=True)
class LossWeights:
    """The loss settings of `parser_loss`: the slice of FinetuneConfig it reads (`FinetuneConfig.loss_weights()`;
    the defaults live there)."""

    lambda_guided: float
    """Weight of the modality-guided loss L_g."""
    lambda_adv: float
    """Weight of the modality-discriminator loss L_ad (reversed for the encoder)."""
    audio_smoothing: float
    """Label smoothing (toward 0.5) of the audio targets of L_g."""
    visual_smoothing: float
    """Label smoothing (toward 0.5) of the visual targets of L_g."""


@dataclass
class LossTerms:
    """The terms of one batch; `backward` is what the loop differentiates (see the module docstring)."""

    backward: torch.Tensor
    wsl: torch.Tensor
    guided: torch.Tensor
    adv: torch.Tensor | None = None
    disc_acc: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    """The encoder objective L_wsl + lambda_g L_g - lambda_ad L_ad (logged)."""

    def logged(self) -> dict[str, torch.Tensor]:
        """The named scalars to log (detached)."""
        names = ("loss", "wsl", "guided", "adv", "disc_acc")
        return {name: getattr(self, name).detach() for name in names if getattr(self, name) is not None}


def parser_loss(
    output: ParserOutput,
    labels: torch.Tensor,
    weights: LossWeights,
    modality_labels: torch.Tensor | None = None,
) -> LossTerms:
    """All terms for a batch of parser outputs and weak labels (B, 25); `modality_labels` (B, 2, 25), refined
    audio and visual labels, change L_g only (see `guided_loss`): L_wsl keeps the weak labels."""
    wsl = weak_loss(output.video_prob, labels)
    guided = guided_loss(
        output.audio_prob,
        output.visual_prob,
        labels,
        weights.audio_smoothing,
        weights.visual_smoothing,
        modality_labels,
    )
    supervised = wsl + weights.lambda_guided * guided
    if output.modality_logits is None:
        return LossTerms(backward=supervised, wsl=wsl, guided=guided, loss=supervised)
    adv, disc_acc = adversarial_loss(output.modality_logits)
    return LossTerms(
        backward=supervised + weights.lambda_adv * adv,
        wsl=wsl,
        guided=guided,
        adv=adv,
        disc_acc=disc_acc,
        loss=supervised - weights.lambda_adv * adv,
    )
