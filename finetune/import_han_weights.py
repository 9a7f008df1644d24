"""Convert a state dict saved by the HAN reference release (`MMIL_Net.pt`) into a run directory of our `han`.

Reference names (Tian et al., AVVP-ECCV20, `nets/net_audiovisual.py`): `fc_a`, `fc_v`, `fc_st`, `fc_fusion`
(input projections), `fc_prob`, `fc_frame_att`, `fc_av_att` (MMIL head), and the hybrid attention layer
`hat_encoder.layers.0.{self_attn,cm_attn}` (`nn.MultiheadAttention`: packed `in_proj_weight` = [q; k; v])
with `linear1`, `linear2`, `norm1`, `norm2`. The release also saves modules its forward pass never uses
(`audio_encoder`, `visual_encoder`, `cmt_encoder`, `hat_encoder.norm1/norm2`); they are ignored. The
reference applies `fc_v` to 80 frames and averages each 8 after; our store holds the averaged frames, which
gives the same result since a linear map commutes with the mean.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avvp.errors import ConfigError
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.models import build_model
from avvp.finetune.weights import (
    finite_float_weights,
    imported_sizes,
    listing,
    read_reference,
    save_imported_run,
    unpack_attention,
)

LINEAR_NAMES = {
    "fc_a": "parser.inputs.audio_proj",
    "fc_v": "parser.inputs.visual_proj",
    "fc_st": "parser.inputs.motion_proj",
    "fc_fusion": "parser.inputs.fuse",
    "fc_prob": "parser.head.prob",
    "fc_frame_att": "parser.head.temporal_att",
    "fc_av_att": "parser.head.modality_att",
    "hat_encoder.layers.0.linear1": "parser.layer.linear1",
    "hat_encoder.layers.0.linear2": "parser.layer.linear2",
    "hat_encoder.layers.0.norm1": "parser.layer.norm1",
    "hat_encoder.layers.0.norm2": "parser.layer.norm2",
    "hat_encoder.layers.0.self_attn.out_proj": "parser.layer.self_attn.out_proj",
    "hat_encoder.layers.0.cm_attn.out_proj": "parser.layer.cm_attn.out_proj",
}
"""Reference module -> our module, for modules with `weight` and `bias`."""
PACKED_ATTENTION = {
    "hat_encoder.layers.0.self_attn": "parser.layer.self_attn",
    "hat_encoder.layers.0.cm_attn": "parser.layer.cm_attn",
}
"""Reference `nn.MultiheadAttention` -> our `Attention`, whose q/k/v projections are the packed thirds."""
PARAMS = ("weight", "bias")
UNUSED_PREFIXES = ("audio_encoder.", "visual_encoder.", "cmt_encoder.", "hat_encoder.norm1.", "hat_encoder.norm2.")


def reference_keys() -> list[str]:
    """Every key the conversion reads from a reference state dict."""
    keys = [f"{name}.{p}" for name in LINEAR_NAMES for p in PARAMS]
    return keys + [f"{name}.{p}" for name in PACKED_ATTENTION for p in ("in_proj_weight", "in_proj_bias")]


def convert_reference(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Reference state dict -> our `FinetuneModel` state dict; missing or unexpected keys are a one-line error."""
    wanted = reference_keys()
    missing = [key for key in wanted if key not in state]
    unexpected = [key for key in state if key not in wanted and not key.startswith(UNUSED_PREFIXES)]
    if missing or unexpected:
        problems = listing(missing=missing, unexpected=unexpected)
        raise ConfigError(f"{source} is not a HAN reference state dict; {problems}")
    for key in wanted:  # a layer's weight is a matrix (a norm's a vector), every bias a vector
        rank = 1 if key.endswith("bias") or ".norm" in key else 2
        if state[key].dim() != rank:
            raise ConfigError(f"{source}: {key} has shape {tuple(state[key].shape)}; expected {rank} dimension(s)")
    converted = {f"{ours}.{p}": state[f"{reference}.{p}"] for reference, ours in LINEAR_NAMES.items() for p in PARAMS}
    converted |= unpack_attention(state, PACKED_ATTENTION, source)
    return finite_float_weights(converted, source)


def import_han(checkpoint: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a run directory (config.json, model.safetensors) of our `han` holding the reference weights."""
    checkpoint = Path(checkpoint)
    state = read_reference(checkpoint)
    weights = convert_reference(state, source=str(checkpoint))
    cfg = FinetuneConfig.from_preset(
        "paper",
        model="han",
        out=str(out),
        imported_from=str(checkpoint.resolve()),
        **imported_sizes(weights, "parser.layer.linear1.weight"),
    )
    return save_imported_run(
        build_model(cfg), cfg, weights, f"{checkpoint} does not fit a HAN of its own sizes", overwrite
    )
