"""Parser weights from files: the releases' PyTorch checkpoints read safely, and the check that weights fit a model.

Used by the run loader (`avvp.finetune.evaluate.load_run`) and the two converters of published weights
(`avvp.finetune.import_han_weights`, `avvp.finetune.import_release_weights`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from avvp.errors import ConfigError
from avvp.inputs import read_torch_weights


def read_reference(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a reference release's checkpoint (HAN's or the paper's) as a state dict, with `weights_only=True`
    and every value checked (`avvp.inputs.read_torch_weights`). A `module.` prefix on every key (a
    DataParallel save) is dropped.
    """
    state = read_torch_weights(path, ConfigError)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def check_weights(model: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """Fail in one line, listing missing/unexpected keys and shape mismatches, unless `weights` fit `model`."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in weights.items()}
    problems = listing(
        missing=[k for k in expected if k not in found],
        unexpected=[k for k in found if k not in expected],
        shape_mismatch=[f"{k} {found[k]} vs {expected[k]}" for k in expected if k in found and found[k] != expected[k]],
    )
    if problems:
        raise ConfigError(f"{what}; {problems}")


def listing(**groups: list[str]) -> str:
    """'missing (2): a, b; unexpected (1): c' for the non-empty groups (underscores read as spaces), at most 6 each."""
    return "; ".join(
        f"{label.replace('_', ' ')} ({len(names)}): " + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        for label, names in groups.items()
        if names
    )


def unpack_attention(state: dict[str, torch.Tensor], packed: dict[str, str], source: str) -> dict[str, torch.Tensor]:
    """`nn.MultiheadAttention` weights -> our `Attention`'s: each packed `in_proj` split into q/k/v thirds.

    `packed` maps a release attention prefix (holding `in_proj_weight`, `in_proj_bias`) to ours.
    """
    converted = {}
    for release, ours in packed.items():
        weight, bias = state[f"{release}.in_proj_weight"], state[f"{release}.in_proj_bias"]
        if weight.ndim != 2 or weight.shape[0] % 3 or bias.shape != (weight.shape[0],):
            raise ConfigError(
                f"{source}: {release}.in_proj_weight/bias have shapes {tuple(weight.shape)}/{tuple(bias.shape)}; "
                "expected (3D, D) and (3D,)"
            )
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), weight.chunk(3), bias.chunk(3), strict=True):
            converted[f"{ours}.{name}.weight"], converted[f"{ours}.{name}.bias"] = w, b
    return converted


def finite_float_weights(weights: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Converted weights as contiguous float32 (integer buffers such as batch-norm counters kept); NaN/inf refused."""
    weights = {
        key: value.detach().contiguous() if not value.is_floating_point() else value.detach().float().contiguous()
        for key, value in weights.items()
    }
    broken = [key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise ConfigError(f"{source}: non-finite values (NaN or inf) in {', '.join(broken[:3])}")
    return weights


def imported_sizes(weights: dict[str, torch.Tensor], ff_key: str) -> dict:
    """The config sizes of converted parser weights: hidden_size, intermediate_size (from `ff_key`), one head, input
    widths."""
    hidden_size, audio_width = weights["parser.inputs.audio_proj.weight"].shape
    return dict(
        hidden_size=int(hidden_size),
        intermediate_size=int(weights[ff_key].shape[0]),
        num_heads=1,
        input_widths={
            "audio": int(audio_width),
            "visual": int(weights["parser.inputs.visual_proj.weight"].shape[1]),
            "motion": int(weights["parser.inputs.motion_proj.weight"].shape[1]),
        },
    )


def save_imported_run(model: nn.Module, cfg, weights: dict[str, torch.Tensor], what: str, overwrite: bool) -> Path:
    """Check that converted `weights` fit `model` (built from `cfg`), then write cfg.out atomically."""
    from safetensors.torch import save_file

    from avvp.output import MARKER, atomic_dir

    check_weights(model, weights, what)
    with atomic_dir(cfg.out, overwrite, markers=(MARKER, "config.json")) as tmp:
        cfg.save(tmp / "config.json")
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return Path(cfg.out)
