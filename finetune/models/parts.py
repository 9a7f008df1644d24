"""The parts every parser shares: input projections, the attentive MMIL pooling head, the output record."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avvp.classes import NUM_CLASSES


@dataclass
class ParserOutput:
    """What a parser returns. Modality axis order: 0 = audio, 1 = visual."""

    video_prob: torch.Tensor
    """(B, 25) joint video-level class probabilities."""
    audio_prob: torch.Tensor
    """(B, 25) video-level probabilities of the audio stream."""
    visual_prob: torch.Tensor
    """(B, 25) video-level probabilities of the visual stream."""
    snippet_prob: torch.Tensor
    """(B, 10, 2, 25) class probability per snippet and modality."""
    modality_logits: torch.Tensor | None = None
    """(B, 10, 2) discriminator logits that a snippet feature is visual (models with `adv` only)."""


class InputProjection(nn.Module):
    """Audio and visual||motion features -> two (B, T, D) sequences.

    Widths come from the feature store: 128/2048/512 for the LLP release, anything for exported embeddings.
    The visual stream holds the mean of each second's 8 frames; HAN's release projects the 80 frames and
    averages after, which is the same thing since a linear map commutes with the mean.
    """

    def __init__(self, widths: dict[str, int], hidden_size: int):
        super().__init__()
        self.audio_proj = nn.Linear(widths["audio"], hidden_size)
        self.visual_proj = nn.Linear(widths["visual"], hidden_size)
        self.motion_proj = nn.Linear(widths["motion"], hidden_size)
        self.fuse = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # audio (B, T, Wa)   visual (B, T, Wv)   motion (B, T, Wm)
        audio = self.audio_proj(features["audio"])  # (B, T, D)
        visual = self.fuse(
            torch.cat([self.visual_proj(features["visual"]), self.motion_proj(features["motion"])], dim=-1)
        )  # (B, T, D)
        return audio, visual


class MMILHead(nn.Module):
    """Attentive multimodal multiple-instance pooling (HAN): snippet probabilities, temporal and modality attention."""

    def __init__(self, hidden_size: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.prob = nn.Linear(hidden_size, num_classes)
        self.temporal_att = nn.Linear(hidden_size, num_classes)
        self.modality_att = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> ParserOutput:
        # x (B, T, 2, D): snippet features of the audio (0) and visual (1) streams
        snippet_prob = torch.sigmoid(self.prob(x))  # (B, T, 2, C)
        temporal_weight = torch.softmax(self.temporal_att(x), dim=1)  # (B, T, 2, C), sums to 1 over T
        modality_weight = torch.softmax(self.modality_att(x), dim=2)  # (B, T, 2, C), sums to 1 over modalities
        attended = temporal_weight * snippet_prob  # (B, T, 2, C)
        return ParserOutput(
            video_prob=(attended * modality_weight).sum(dim=(1, 2)),  # (B, C)
            audio_prob=attended[:, :, 0].sum(dim=1),  # (B, C)
            visual_prob=attended[:, :, 1].sum(dim=1),  # (B, C)
            snippet_prob=snippet_prob,
        )


class MMILParser(nn.Module):
    """Input projections and the MMIL head alone, no attention: the default head on a pretrained encoder (--e2e),
    whose contextual embeddings already mix time and modality."""

    def __init__(self, widths: dict[str, int], hidden_size: int):
        super().__init__()
        self.inputs = InputProjection(widths, hidden_size)
        self.head = MMILHead(hidden_size)

    def forward(self, features: dict[str, torch.Tensor], adv_strength: float = 0.0) -> ParserOutput:
        audio, visual = self.inputs(features)  # (B, T, D) each
        return self.head(torch.stack([audio, visual], dim=2))  # (B, T, 2, D)
