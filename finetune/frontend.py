"""A pretrained encoder in front of a parser, trained with it end to end (`avvp-finetune --e2e --encoder DIR`).

The encoder comes through the pretraining stage's public API (`pretrain.load_encoder`). Its contextual audio and
visual embeddings replace the raw audio and visual streams; motion passes through as it is, exactly as in the
stores `avvp-pretrain export` writes, so the frozen ("Pretrained") and end-to-end rows feed the parser alike.
The encoder's config is kept in the run's config.json (`frontend_config`), so a run is rebuilt from its own
files even when the encoder directory it started from is gone.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from avvp.errors import ConfigError


class EncoderFrontend(nn.Module):
    """Raw streams {"audio", "visual", "motion"} -> {"audio": (B, 10, H), "visual": (B, 10, H), "motion": as is}."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        sizes = encoder.config.stream_sizes()
        hidden = encoder.config.hidden_size
        self.input_widths = dict(sizes)
        self.output_widths = {"audio": hidden, "visual": hidden, "motion": sizes["motion"]}

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # audio (B, 10, 128)   visual (B, 10, 2048)   motion (B, 10, 512)
        encoded = self.encoder(features["audio"], features["visual"], features["motion"])  # each (B, 10, H)
        return {"audio": encoded.audio, "visual": encoded.visual, "motion": features["motion"]}


def load_frontend(encoder_dir: str | os.PathLike, features: str | os.PathLike) -> tuple[EncoderFrontend, dict]:
    """The encoder saved by avvp-pretrain in `encoder_dir` as a trainable frontend, and its config as a dict.

    The feature store must hold the streams at the widths the encoder was pretrained on.
    """
    from pretrain import check_store_fits, load_encoder

    encoder = load_encoder(encoder_dir)
    check_store_fits(encoder, features, encoder_dir, hint="for exported embeddings, train without --e2e")
    frontend = EncoderFrontend(encoder)
    frontend.train()
    return frontend, frontend.encoder.config.to_dict()


def frontend_from_config(config: dict) -> EncoderFrontend:
    """An untrained frontend of the architecture `config` describes (weights come from the run's safetensors)."""
    from pretrain import AVEncoderConfig, AVEncoderModel

    try:
        encoder_config = AVEncoderConfig.from_dict(dict(config))
    except Exception as error:  # transformers validates the fields in its own ways
        raise ConfigError(f"frontend_config does not describe an avvp-pretrain encoder ({error})") from None
    return EncoderFrontend(AVEncoderModel(encoder_config))
