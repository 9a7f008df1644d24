"""Base (Lamba et al., Interspeech 2021) and its switches `skip`, `adv`, `gcaa`: one class, one set of flags.

The forward pass of the paper release's nets (`nets/net_audiovisual_basic.py`, `_gcaa.py`, `_adv_skip.py` and
`net_audiovisual.py`, the last being Base+Adv+Skip+GCAA):

    a, v       = input projections                             (B, T, D) each
    a_s, v_s   = self-attention layer per modality             x <- LN(x + attn(x)), then the feed-forward block
    a_c        = cross(a_s, v_s),  v_c = cross(v_s, a_s)       ONE cross-modal layer used in both directions:
                                                               x <- LN(x + attn(x, other)), then its feed-forward
    x          = shared_fc([a_c, v_c])                         a Linear(D, D) shared by both modalities (B, T, 2, D)
    skip:  x_m = LN_m(x_s,m + x_m)                             the outer skip around the whole cross layer,
                                                               one LayerNorm per modality
    MMIL head on x; `adv`: the modality discriminator on ReLU(x) behind a gradient reversal layer.

`gcaa` makes every attention (self and cross) global-context-aware; `gcaa_first_snippet` reproduces the
release's `[0]` of its GCAA outputs (see `avvp.finetune.models.attention`).
"""

from __future__ import annotations

import torch
from torch import nn

from avvp.finetune.models.attention import AttentionLayer
from avvp.finetune.models.discriminator import ModalityDiscriminator
from avvp.finetune.models.parts import InputProjection, MMILHead, ParserOutput
from avvp.finetune.models.sizes import ParserSizes

MODALITIES = ("audio", "visual")


class Base(nn.Module):
    """The Base parser with optional outer skip connection, modality discriminator and GCAA."""

    def __init__(
        self,
        widths: dict[str, int],
        sizes: ParserSizes,
        skip: bool = False,
        adv: bool = False,
        gcaa: bool = False,
        gcaa_first_snippet: bool = False,
    ):
        super().__init__()
        hidden_size = sizes.hidden_size
        layer = dict(sizes=sizes, global_context=gcaa, first_snippet=gcaa and gcaa_first_snippet)
        self.inputs = InputProjection(widths, hidden_size)
        self.self_layers = nn.ModuleDict({m: AttentionLayer(**layer) for m in MODALITIES})
        self.cross_layer = AttentionLayer(**layer)
        self.shared_fc = nn.Linear(hidden_size, hidden_size)
        self.skip_norm = nn.ModuleDict({m: nn.LayerNorm(hidden_size) for m in MODALITIES}) if skip else None
        self.discriminator = ModalityDiscriminator(hidden_size) if adv else None
        self.head = MMILHead(hidden_size)

    def forward(self, features: dict[str, torch.Tensor], adv_strength: float = 0.0) -> ParserOutput:
        audio, visual = self.inputs(features)  # (B, T, D) each
        audio, visual = self.self_layers["audio"](audio), self.self_layers["visual"](visual)
        crossed = torch.stack([self.cross_layer(audio, visual), self.cross_layer(visual, audio)], dim=2)  # (B,T,2,D)
        x = self.shared_fc(crossed)  # (B, T, 2, D)
        if self.skip_norm is not None:
            x = torch.stack(
                [self.skip_norm["audio"](audio + x[:, :, 0]), self.skip_norm["visual"](visual + x[:, :, 1])], dim=2
            )  # (B, T, 2, D)
        output = self.head(x)
        if self.discriminator is not None:
            output.modality_logits = self.discriminator(x, adv_strength)  # (B, T, 2)
        return output
