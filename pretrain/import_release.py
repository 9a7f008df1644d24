"""The paper release's UNITER weights in (`avvp-pretrain import-release pretrained.pt --out ENCODER`).

The release's scripts (`main_avvp_uni.py`, `_cross`, `_multi` of jayaprakash-a/Cross-Modal-learning-for-Audio-
Visual-Video-Parsing) pretrain an `avg` model (a `UniterModel` under `uniter.`, plus the parser head `fc_a`, `fc_v`,
`fc_st`, `fc_fusion`, `fc_prob`, `fc_frame_att`, `fc_av_att`) and save `torch.save(model.state_dict())` twice:
`pretrained.pt` after pretraining, `final.pt` after finetuning end to end. The two hold the same keys; in
`pretrained.pt` the head was never trained (pretraining reads only the embeddings), so every head weight still lies
within PyTorch's initial bound 1/sqrt(fan_in): that is how the two are told apart.

Release key -> ours (`AVEncoderModel` with `architecture="release"`): `{rgb,audio,r2p1d}_embeddings` ->
`stream_embeddings.{visual,audio,motion}` (`img_linear`/`audio_linear` -> `linear`, `img_layer_norm`/
`audio_layer_norm` -> `norm`, `LayerNorm` -> `output_norm`, `position_embeddings.weight` -> `positions`, row 1 of
`mask_embedding.weight` -> `feature_offset`), `token_type_embeddings`, `encoder.layer.N.*` -> `bert.encoder.layer.N.*`
(BERT's names on both sides). Never used by the release's forward, so not kept: `fc_v` and `pos_layer_norm` of the
embeddings, row 0 of `mask_embedding` (zeroed in every forward), `pooler`. The number of heads is not in a state
dict: `--heads`, default 8 (`UniterConfig`'s).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch

from avvp.errors import ConfigError
from avvp.pretrain.modeling import AVEncoderConfig, AVEncoderModel, save_encoder

RELEASE_HEADS = 8
"""`UniterConfig`'s default number of attention heads (the scripts set only hidden_size)."""
RELEASE_EMBEDDINGS = {"rgb_embeddings": ("visual", "img"), "audio_embeddings": ("audio", "audio"),
                      "r2p1d_embeddings": ("motion", "img")}  # fmt: skip
"""Release embedding module -> (our stream, the prefix of its linear and layer-norm names)."""
AVG_HEAD = ("fc_a", "fc_v", "fc_st", "fc_fusion", "fc_prob", "fc_frame_att", "fc_av_att")
"""The linear layers of the release's `avg` on top of `uniter` (its `avvp` branch)."""
UNUSED = re.compile(r"(rgb|r2p1d)_embeddings\.fc_v\.|\w+_embeddings\.pos_layer_norm\.|pooler\.")
"""Release keys its forward never reads."""


def split_avg(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the `uniter` part, the head) of a release `avg` state dict; a bare `UniterModel` state dict has no head.

    A checkpoint of another model (a release parser, HAN) is a one-line error saying which import takes it.
    """
    if any(key.startswith("hat_encoder.") for key in state):
        raise ConfigError(f"{source} is HAN's parser checkpoint (hat_encoder.*), not the release's UNITER; "
                          "import it with avvp-finetune import-han")  # fmt: skip
    if any(key.startswith(("sa_layer_a.", "cma_layer.")) for key in state):
        raise ConfigError(
            f"{source} is a parser checkpoint of the release's Base family (sa_layer_a.*, cma_layer.*), not its "
            "UNITER; import it with avvp-finetune import-release --model base (or base-gcaa, base-adv-skip, ...)"
        )
    if any(key.startswith("uniter.") for key in state):
        uniter = {key.removeprefix("uniter."): value for key, value in state.items() if key.startswith("uniter.")}
        head = {key: value for key, value in state.items() if not key.startswith("uniter.")}
        expected = {f"{name}.{param}" for name in AVG_HEAD for param in ("weight", "bias")}
        missing, unexpected = sorted(expected - set(head)), sorted(set(head) - expected)
        if missing or unexpected:
            listed = ", ".join(
                [f"missing {key}" for key in missing[:3]] + [f"unexpected {key}" for key in unexpected[:3]]
            )
            raise ConfigError(f"{source}: uniter.* with a head that is not the release's avg head ({listed})")
        return uniter, head
    if "token_type_embeddings.weight" in state:
        return dict(state), {}
    shown = ", ".join(sorted(state)[:3]) or "no keys"
    raise ConfigError(f"{source} is not a state dict of the release's avg or UniterModel (uniter.*); it holds {shown}")


def head_untrained(head: dict[str, torch.Tensor]) -> bool:
    """Whether every weight and bias of the `avg` head lies within PyTorch's initial bound 1/sqrt(fan_in)."""
    for name in AVG_HEAD:
        weight, bias = head[f"{name}.weight"], head[f"{name}.bias"]
        bound = 1 / math.sqrt(weight.shape[1])
        if weight.abs().max() > bound or bias.abs().max() > bound:
            return False
    return True


def release_encoder_config(uniter: dict[str, torch.Tensor], heads: int, source: str) -> AVEncoderConfig:
    """The encoder config of a release `UniterModel` state dict: sizes from the shapes, `heads` given."""
    try:
        hidden = int(uniter["token_type_embeddings.weight"].shape[1])
        layers = 1 + max(int(m.group(1)) for key in uniter if (m := re.match(r"encoder\.layer\.(\d+)\.", key)))
        widths = {RELEASE_EMBEDDINGS[name][0]: int(uniter[f"{name}.{prefix}_linear.weight"].shape[1])
                  for name, (_, prefix) in RELEASE_EMBEDDINGS.items()}  # fmt: skip
        intermediate = int(uniter["encoder.layer.0.intermediate.dense.weight"].shape[0])
    except (KeyError, ValueError, IndexError) as error:
        raise ConfigError(f"{source}: not a complete release UniterModel state dict ({error} missing)") from None
    if heads < 1 or hidden % heads:
        raise ConfigError(f"--heads {heads}: must divide the checkpoint's hidden size {hidden}")
    return AVEncoderConfig(
        architecture="release",
        audio_size=widths["audio"],
        visual_size=widths["visual"],
        motion_size=widths["motion"],
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=intermediate,
    )


def convert_uniter(uniter: dict[str, torch.Tensor], model: AVEncoderModel, source: str) -> dict[str, torch.Tensor]:
    """A release `UniterModel` state dict -> the state dict of `model`, our release-architecture encoder (checked
    against its keys and shapes)."""
    converted = {}
    for key, value in uniter.items():
        if UNUSED.match(key):
            continue
        name, _, rest = key.partition(".")
        if name in RELEASE_EMBEDDINGS:
            stream, prefix = RELEASE_EMBEDDINGS[name]
            parts = {f"{prefix}_linear": "linear", f"{prefix}_layer_norm": "norm", "LayerNorm": "output_norm"}
            module, _, param = rest.partition(".")
            ours = f"stream_embeddings.{stream}."
            if module in parts:
                converted[ours + f"{parts[module]}.{param}"] = value
            elif rest == "position_embeddings.weight":
                converted[ours + "positions"] = value
            elif rest == "mask_embedding.weight" and value.ndim == 2 and len(value) == 2:
                converted[ours + "feature_offset"] = value[1]  # row 0 is zeroed in every forward
            else:
                converted[key] = value  # reported as unexpected below
        elif name == "encoder":
            converted[f"bert.{key}"] = value
        else:
            converted[key] = value
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in converted.items()}
    problems = [f"missing {key}" for key in expected if key not in found]
    problems += [f"unexpected {key}" for key in found if key not in expected]
    problems += [f"{key} is {found[key]}, expected {expected[key]}" for key in expected
                 if key in found and found[key] != expected[key]]  # fmt: skip
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(f"{source}: does not fit the release's UniterModel of its own sizes: "
                          f"{'; '.join(problems[:3])}{more}")  # fmt: skip
    converted = {key: value.detach().float().contiguous() for key, value in converted.items()}
    broken = [key for key, value in converted.items() if not torch.isfinite(value).all()]
    if broken:
        raise ConfigError(f"{source}: non-finite values (NaN or inf) in {', '.join(broken[:3])}")
    return converted


def release_encoder(state: dict[str, torch.Tensor], heads: int, source: str) -> AVEncoderModel:
    """Our release-architecture encoder holding the `uniter` weights of a release state dict, in eval mode."""
    uniter, _ = split_avg(state, source)
    config = release_encoder_config(uniter, heads, source)
    model = AVEncoderModel(config)
    model.load_state_dict(convert_uniter(uniter, model, source))
    return model.eval()


def import_release(
    checkpoint: str | os.PathLike, out: str | os.PathLike, heads: int = RELEASE_HEADS, overwrite: bool = False
) -> Path:
    """Write an encoder directory (config.json + model.safetensors) from the release's `pretrained.pt`.

    `out` is checked before the checkpoint is read: an existing folder is replaced (`overwrite`) only when avvp
    wrote it, never when it holds the checkpoint."""
    from avvp.finetune.weights import read_reference  # the weights_only reader of the releases' .pt files
    from avvp.output import atomic_dir, check_replaceable_dir

    checkpoint = Path(checkpoint)
    source = str(checkpoint)
    check_replaceable_dir(out, overwrite, inputs=[checkpoint])
    state = read_reference(checkpoint)
    _, head = split_avg(state, source)
    if head and not head_untrained(head):
        raise ConfigError(
            f"{source}: its avg head (fc_a ... fc_av_att) was trained: a final.pt of the end-to-end model, not a "
            "pretrained.pt; import it with avvp-finetune import-release --model release-avg"
        )
    model = release_encoder(state, heads, source)
    with atomic_dir(out, overwrite, inputs=[checkpoint]) as tmp:
        save_encoder(model, tmp)
    return Path(out)
