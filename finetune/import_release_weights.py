"""Convert a state dict saved by the paper release's scripts into a run directory of our Base family.

The release (Lamba et al., `jayaprakash-a/Cross-Modal-learning-for-Audio-Visual-Video-Parsing`) saves
`torch.save(model.state_dict())` of its `MMIL_Net`, one net per file:

| our row              | release net                    | attention                          |
|----------------------|--------------------------------|------------------------------------|
| base                 | nets/net_audiovisual_basic.py  | nn.MultiheadAttention              |
| base-gcaa            | nets/net_audiovisual_gcaa.py   | GlobalContextAwareAttention        |
| base-adv-skip        | nets/net_audiovisual_adv_skip.py | nn.MultiheadAttention            |
| base-adv-skip-gcaa   | nets/net_audiovisual.py        | GlobalContextAwareAttention        |

Its names: `fc_a`, `fc_v`, `fc_st`, `fc_fusion` (inputs), `sa_layer_a`/`sa_layer_v` (self-attention layers:
`self_attn`, `linear1`, `linear2`, `norm1`, `norm2`), `cma_layer.layers.0` (the one cross-modal layer: `cm_attn`
and the same), `shared_fc`, `norm_a`/`norm_v` (the skip's LayerNorms), `mod_classifier` (`fc1`, `norm1`, `fc2`,
`norm2`, `fc3`), `fc_prob`, `fc_frame_att`, `fc_av_att` (MMIL head). Every net saves all of them, used or not
(`norm_a`/`norm_v` without skip, `cma_layer.norm1/norm2` always unused), so the keys tell GCAA from plain
attention but not skip from no skip: `--model` says which row the net is. The imported run has the release's
recipe (so the discriminator is built on every row and the GCAA rows keep the release's `[0]`).

`release-avg` is the release's end-to-end model, `avg` of model/model.py, saved as `final.pt` by
main_avvp_{uni,cross,multi}.py: its `uniter.*` becomes the run's encoder (ours of the `release`
architecture, `avvp.pretrain.release_encoder`) and its head `fc_a`, `fc_v`, `fc_st`, `fc_fusion`, `fc_prob`,
`fc_frame_att`, `fc_av_att` the `release-avg` parser reading the encoded audio, visual and motion tokens. A
`pretrained.pt` has the same keys but a head never trained (`avvp.pretrain.head_untrained`): refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avvp.errors import ConfigError
from avvp.finetune.config import FinetuneConfig, unknown_model_message
from avvp.finetune.encoder import E2EEncoder
from avvp.finetune.models import REGISTRY, FinetuneModel, build_model
from avvp.finetune.weights import (
    check_weights,
    finite_float_weights,
    imported_sizes,
    listing,
    read_reference,
    save_imported_run,
    unpack_attention,
)
from avvp.output import MARKER, check_replaceable_dir
from avvp.pretrain import RELEASE_HEADS, head_untrained, release_encoder, split_avg

RELEASE_ROWS = {
    "base": "nets/net_audiovisual_basic.py",
    "base-gcaa": "nets/net_audiovisual_gcaa.py",
    "base-adv-skip": "nets/net_audiovisual_adv_skip.py",
    "base-adv-skip-gcaa": "nets/net_audiovisual.py",
}
"""The paper's rows and the release net that computes each (any other Base-family switch set imports too)."""
LINEARS = {
    "fc_a": "inputs.audio_proj",
    "fc_v": "inputs.visual_proj",
    "fc_st": "inputs.motion_proj",
    "fc_fusion": "inputs.fuse",
    "fc_prob": "head.prob",
    "fc_frame_att": "head.temporal_att",
    "fc_av_att": "head.modality_att",
    "shared_fc": "shared_fc",
}
LAYERS = {"sa_layer_a": "self_layers.audio", "sa_layer_v": "self_layers.visual", "cma_layer.layers.0": "cross_layer"}
LAYER_PARTS = {"linear1": "ff.linear1", "linear2": "ff.linear2", "norm1": "norm", "norm2": "ff.norm"}
GCAA_PARTS = {
    "qx_linear": "q_proj",
    "kx_linear": "k_proj",
    "vx_linear": "v_proj",
    "out": "out_proj",
    "qc_linear": "context_q",
    "kc_linear": "context_k",
    "Vqx_linear": "gate_q_x",
    "Vqc_linear": "gate_q_c",
    "Vkx_linear": "gate_k_x",
    "Vkc_linear": "gate_k_c",
}
SKIP_NORMS = {"norm_a": "skip_norm.audio", "norm_v": "skip_norm.visual"}
DISCRIMINATOR = ("fc1", "norm1", "fc2", "norm2", "fc3")
BATCH_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
UNUSED_PREFIXES = ("cma_layer.norm1.", "cma_layer.norm2.")


def key_map(gcaa: bool, skip: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(release key -> our key for plain copies, release packed `in_proj` prefix -> our attention prefix)."""
    copies: dict[str, str] = {}
    packed: dict[str, str] = {}

    def linear(release: str, ours: str, params=("weight", "bias")) -> None:
        copies.update({f"{release}.{p}": f"parser.{ours}.{p}" for p in params})

    for release, ours in LINEARS.items():
        linear(release, ours)
    for release_layer, our_layer in LAYERS.items():
        for release, ours in LAYER_PARTS.items():
            linear(f"{release_layer}.{release}", f"{our_layer}.{ours}")
        attention = f"{release_layer}.{'cm_attn' if release_layer.startswith('cma') else 'self_attn'}"
        if gcaa:
            for release, ours in GCAA_PARTS.items():
                linear(f"{attention}.{release}", f"{our_layer}.attn.{ours}")
        else:
            packed[attention] = f"parser.{our_layer}.attn"
            linear(f"{attention}.out_proj", f"{our_layer}.attn.out_proj")
    if skip:
        for release, ours in SKIP_NORMS.items():
            linear(release, ours)
    for part in DISCRIMINATOR:
        params = ("weight", "bias", *BATCH_NORM_BUFFERS) if part.startswith("norm") else ("weight", "bias")
        linear(f"mod_classifier.{part}", f"discriminator.{part}", params)
    return copies, packed


AVG_LINEARS = dict(zip(
    ("fc_a", "fc_v", "fc_st", "fc_fusion", "fc_prob", "fc_frame_att", "fc_av_att"),
    ("inputs.audio_proj", "inputs.visual_proj", "inputs.motion_proj", "inputs.fuse", "head.prob", "head.temporal_att",
     "head.modality_att"),
    strict=True,
))  # fmt: skip
"""The release `avg` head's linear layers -> the `release-avg` parser's."""


def release_row_of(state: dict[str, torch.Tensor]) -> str:
    """What the keys look like: 'HAN', 'GCAA' (a GCAA net of the release), 'plain' (MultiheadAttention), or '?'."""
    if any(key.startswith("hat_encoder.") for key in state):
        return "HAN"
    if "sa_layer_a.self_attn.qx_linear.weight" in state:
        return "GCAA"
    if "sa_layer_a.self_attn.in_proj_weight" in state:
        return "plain"
    return "?"


def convert_release(state: dict[str, torch.Tensor], model: str, source: str = "state dict") -> dict[str, torch.Tensor]:
    """A release state dict -> our `FinetuneModel` state dict for `model`; a mismatch is a one-line error."""
    spec = REGISTRY[model]
    looks_like = release_row_of(state)
    if looks_like == "HAN":
        raise ConfigError(f"{source} is a HAN checkpoint (hat_encoder.*); import it with avvp-finetune import-han")
    if any(key.startswith("uniter.") for key in state):
        raise ConfigError(
            f"{source} is the release's end-to-end avg model (uniter.*), not its {model} net; import it with "
            "--model release-avg"
        )
    if looks_like != "?" and (looks_like == "GCAA") != spec["gcaa"]:
        rows = "base-gcaa or base-adv-skip-gcaa" if looks_like == "GCAA" else "base or base-adv-skip"
        kind = "global-context-aware attention" if looks_like == "GCAA" else "plain multi-head attention"
        raise ConfigError(f"{source}: its keys are those of a net with {kind} ({rows}), not of --model {model}")
    copies, packed = key_map(spec["gcaa"], spec["skip"])
    wanted = list(copies) + [f"{prefix}.{p}" for prefix in packed for p in ("in_proj_weight", "in_proj_bias")]
    ignored = (*UNUSED_PREFIXES, *(() if spec["skip"] else tuple(f"{name}." for name in SKIP_NORMS)))
    missing = [key for key in wanted if key not in state]
    unexpected = [key for key in state if key not in wanted and not key.startswith(ignored)]
    if missing or unexpected:
        hint = f" (its keys look like a {looks_like} net)" if looks_like != "?" else ""
        raise ConfigError(
            f"{source} is not a state dict of the release's {model} net{hint}; "
            f"{listing(missing=missing, unexpected=unexpected)}"
        )
    converted = {ours: state[release] for release, ours in copies.items()} | unpack_attention(state, packed, source)
    return finite_float_weights(converted, source)


def import_release(
    checkpoint: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    overwrite: bool = False,
    encoder_heads: int = RELEASE_HEADS,
) -> Path:
    """Write a run directory (config.json, model.safetensors) of our `model` holding the release's weights."""
    if model not in REGISTRY:
        raise ConfigError(unknown_model_message(model))
    check_replaceable_dir(out, overwrite, markers=(MARKER, "config.json"), inputs=[checkpoint])  # before reading
    if model == "release-avg":
        return import_release_avg(checkpoint, out, encoder_heads, overwrite)
    if REGISTRY[model]["arch"] != "base":
        hint = "; for HAN's release use avvp-finetune import-han" if model == "han" else ""
        raise ConfigError(f"--model {model}: the paper release's nets are the Base family (base, base-gcaa, ...){hint}")
    checkpoint = Path(checkpoint)
    state = read_reference(checkpoint)
    weights = convert_release(state, model, source=str(checkpoint))
    cfg = FinetuneConfig.from_preset(
        "paper",
        "release",
        model=model,
        out=str(out),
        imported_from=str(checkpoint.resolve()),
        **imported_sizes(weights, "parser.cross_layer.ff.linear1.weight"),
    )
    what = f"{checkpoint} does not fit a {model} of its own sizes"
    return save_imported_run(build_model(cfg), cfg, weights, what, overwrite)


def release_avg_model(
    state: dict[str, torch.Tensor], heads: int, source: str, out: str = ""
) -> tuple[FinetuneConfig, FinetuneModel, dict[str, torch.Tensor]]:
    """(config, model in eval mode holding them, weights) of a `release-avg` run from the release's `final.pt`."""
    _, head = split_avg(state, source)
    if not head:
        raise ConfigError(
            f"{source}: a UniterModel alone, without the avg head; import it with avvp-pretrain import-release"
        )
    if head_untrained(head):
        raise ConfigError(
            f"{source}: its avg head (fc_a ... fc_av_att) was never trained (every weight within PyTorch's initial "
            "bound): a pretrained.pt, not a final.pt; import it with avvp-pretrain import-release"
        )
    encoder = release_encoder(state, heads, source)
    weights = {f"frontend.encoder.{key}": value for key, value in encoder.state_dict().items()}
    weights |= finite_float_weights(
        {f"parser.{ours}.{param}": head[f"{release}.{param}"] for release, ours in AVG_LINEARS.items()
         for param in ("weight", "bias")},
        source,
    )  # fmt: skip
    hidden = encoder.config.hidden_size
    origin = str(Path(source).resolve())
    cfg = FinetuneConfig.from_preset(
        "paper",
        "release",
        model="release-avg",
        out=out,
        imported_from=origin,
        frontend=origin,
        frontend_config=encoder.config.to_dict(),
        hidden_size=int(head["fc_a.weight"].shape[0]),
        input_widths={"audio": hidden, "visual": hidden, "motion": hidden},
        continue_pretraining_optimizer=False,
    )
    model = build_model(cfg, E2EEncoder(encoder, encoded_motion=True))
    check_weights(model, weights, f"{source} does not fit a release-avg of its own sizes")
    model.load_state_dict(weights)
    return cfg, model.eval(), weights


def import_release_avg(checkpoint: str | os.PathLike, out: str | os.PathLike, heads: int, overwrite: bool) -> Path:
    """A `release-avg` run directory (its encoder the release's UNITER) from the release's `final.pt`."""
    checkpoint = Path(checkpoint)
    cfg, model, weights = release_avg_model(read_reference(checkpoint), heads, str(checkpoint), str(out))
    return save_imported_run(model, cfg, weights, f"{checkpoint} does not fit a release-avg", overwrite)
