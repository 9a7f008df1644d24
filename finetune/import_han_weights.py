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
from safetensors.torch import save_file

from avvp.errors import ConfigError
from avvp.io import atomic_dir
from finetune.config import make_config
from finetune.models import build_model
from finetune.weights import check_weights, listing, read_reference

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
UNUSED_PREFIXES = ("audio_encoder.", "visual_encoder.", "cmt_encoder.", "hat_encoder.norm1.", "hat_encoder.norm2.")


def reference_keys() -> list[str]:
    """Every key the conversion reads from a reference state dict."""
    keys = [f"{name}.{p}" for name in LINEAR_NAMES for p in ("weight", "bias")]
    return keys + [f"{name}.{p}" for name in PACKED_ATTENTION for p in ("in_proj_weight", "in_proj_bias")]


def convert_reference(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Reference state dict -> our `FinetuneModel` state dict; missing or unexpected keys are a one-line error."""
    wanted = reference_keys()
    missing = [key for key in wanted if key not in state]
    unexpected = [key for key in state if key not in wanted and not key.startswith(UNUSED_PREFIXES)]
    if missing or unexpected:
        problems = listing(missing=missing, unexpected=unexpected)
        raise ConfigError(f"{source} is not a HAN reference state dict; {problems}")
    converted = {}
    for reference, ours in LINEAR_NAMES.items():
        for p in ("weight", "bias"):
            converted[f"{ours}.{p}"] = state[f"{reference}.{p}"]
    for reference, ours in PACKED_ATTENTION.items():
        weight, bias = state[f"{reference}.in_proj_weight"], state[f"{reference}.in_proj_bias"]
        if weight.ndim != 2 or weight.shape[0] % 3 or bias.shape != (weight.shape[0],):
            raise ConfigError(
                f"{source}: {reference}.in_proj_weight/bias have shapes {tuple(weight.shape)}/{tuple(bias.shape)}; "
                "expected (3D, D) and (3D,)"
            )
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), weight.chunk(3), bias.chunk(3), strict=True):
            converted[f"{ours}.{name}.weight"], converted[f"{ours}.{name}.bias"] = w, b
    converted = {key: value.detach().float().contiguous() for key, value in converted.items()}
    broken = [key for key, value in converted.items() if not torch.isfinite(value).all()]
    if broken:
        raise ConfigError(f"{source}: non-finite values (NaN or inf) in {', '.join(broken[:3])}")
    return converted


def import_han(checkpoint: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a run directory (config.json, model.safetensors) of our `han` holding the reference weights."""
    checkpoint = Path(checkpoint)
    state = read_reference(checkpoint)
    weights = convert_reference(state, source=str(checkpoint))
    d_model, audio_width = weights["parser.inputs.audio_proj.weight"].shape
    cfg = make_config(
        "han",
        "paper",
        out=str(out),
        d_model=int(d_model),
        ff_dim=int(weights["parser.layer.linear1.weight"].shape[0]),
        heads=1,
        input_widths={
            "audio": int(audio_width),
            "visual": int(weights["parser.inputs.visual_proj.weight"].shape[1]),
            "motion": int(weights["parser.inputs.motion_proj.weight"].shape[1]),
        },
        imported_from=str(checkpoint.resolve()),
    )
    check_weights(build_model(cfg), weights, f"{checkpoint} does not fit a HAN of its own sizes")
    with atomic_dir(out, overwrite) as tmp:
        cfg.save(tmp / "config.json")
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return Path(out)
