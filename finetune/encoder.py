"""A pretrained encoder in front of a parser, trained with it end to end (`avvp-finetune --e2e --encoder DIR`).

The encoder comes through the pretraining stage's public API (`avvp.pretrain.load_encoder`). Its contextual audio and
visual embeddings replace the raw audio and visual streams; motion passes through as it is, exactly as in the
stores `avvp-pretrain export` writes, so the frozen ("Pretrained") and end-to-end rows feed the parser alike.
With `encoded_motion` (the model `release-avg`, the paper release's `avg`) the encoded motion tokens replace the
raw motion too.
The encoder's config is kept in the run's config.json (`frontend_config`), so a run is rebuilt from its own
files even when the encoder directory it started from is gone.

On disk the encoder keeps the name it had before: the config.json fields `frontend` (where it came from: --encoder),
`frontend_lr` (--encoder-lr) and `frontend_config`, and its weights `frontend.encoder.*` in model.safetensors (the
`FinetuneModel.frontend` slot), so that every run written before loads unchanged.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from avvp.errors import ConfigError


class E2EEncoder(nn.Module):
    """The pretrained encoder in front of a parser. Raw streams {"audio", "visual", "motion"} -> {"audio":
    (B, 10, H), "visual": (B, 10, H), "motion": as is, or (B, 10, H) encoded with `encoded_motion`}."""

    def __init__(self, encoder: nn.Module, encoded_motion: bool = False):
        super().__init__()
        self.encoder = encoder
        self.input_widths = dict(encoder.config.stream_sizes())
        self.read_encoded_motion(encoded_motion)

    def read_encoded_motion(self, encoded_motion: bool = True) -> None:
        """Give the parser the encoded motion tokens (True) or the raw motion (False)."""
        self.encoded_motion = encoded_motion
        hidden = self.encoder.config.hidden_size
        self.output_widths = {"audio": hidden, "visual": hidden}
        self.output_widths["motion"] = hidden if encoded_motion else self.input_widths["motion"]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # audio (B, 10, 128)   visual (B, 10, 2048)   motion (B, 10, 512)
        encoded = self.encoder(features["audio"], features["visual"], features["motion"])  # each (B, 10, H)
        motion = encoded.motion if self.encoded_motion else features["motion"]
        return {"audio": encoded.audio, "visual": encoded.visual, "motion": motion}


def load_e2e_encoder(encoder_dir: str | os.PathLike, features: str | os.PathLike) -> tuple[E2EEncoder, dict]:
    """The encoder saved by avvp-pretrain in `encoder_dir`, ready to train with a parser, and its config as a dict.

    The feature store must hold the streams at the widths the encoder was pretrained on.
    """
    from avvp.pretrain import check_store_fits, load_encoder

    encoder = load_encoder(encoder_dir)
    check_store_fits(encoder, features, encoder_dir, hint="for exported embeddings, train without --e2e")
    e2e_encoder = E2EEncoder(encoder)
    e2e_encoder.train()
    return e2e_encoder, e2e_encoder.encoder.config.to_dict()


def e2e_encoder_from_config(config: dict, encoded_motion: bool = False) -> E2EEncoder:
    """An untrained encoder of the architecture `config` describes (weights come from the run's safetensors)."""
    from avvp.pretrain import AVEncoderConfig, AVEncoderModel

    try:
        encoder_config = AVEncoderConfig.from_dict(dict(config))
    except Exception as error:  # transformers validates the fields in its own ways
        raise ConfigError(f"frontend_config does not describe an avvp-pretrain encoder ({error})") from None
    return E2EEncoder(AVEncoderModel(encoder_config), encoded_motion)


def pretraining_optimizer(encoder_dir: str | os.PathLike, encoder: nn.Module) -> tuple[dict, str]:
    """The Adam moments the encoder's pretraining run ended with, by parameter name, and a line saying so for
    config.json; ({}, why not) where the run saved none (an untrained control, an imported encoder)."""
    from avvp.pretrain import final_optimizer_moments

    moments, origin = final_optimizer_moments(encoder_dir, encoder)
    return moments, origin


def continue_optimizer(optimizer: torch.optim.Optimizer, encoder: nn.Module, moments: dict) -> None:
    """Put the pretraining run's Adam moments (`pretraining_optimizer`) into `optimizer` for the encoder's
    parameters: one optimizer across both phases, as the release's scripts (before `accelerator.prepare`)."""
    for name, parameter in encoder.named_parameters():
        if name in moments:
            optimizer.state[parameter] = {key: value.clone() for key, value in moments[name].items()}
