"""Parser weights from files: the releases' PyTorch checkpoints read safely, and the check that weights fit a model.

Used by the run loader (`finetune.evaluate.load_run`) and the two converters of published weights
(`finetune.import_han_weights`, `finetune.import_release_weights`).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from avvp.errors import ConfigError


def read_reference(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a reference release's checkpoint (HAN's or the paper's) as a state dict, with `weights_only=True`.

    A `module.` prefix on every key (a DataParallel save) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        # torch's message is a paragraph; its "WeightsUnpickler error:" part says what was refused.
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", str(error))
        reason = reason.group(1) if reason else (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"{path}: not a loadable PyTorch state dict (torch.load with weights_only=True: {reason})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: expected a state dict of tensors (torch.save(model.state_dict()))")
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
