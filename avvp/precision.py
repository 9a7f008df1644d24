"""Mixed precision: the modes the training commands take, and what Accelerate is asked for."""

from __future__ import annotations

from accelerate.utils import parse_flag_from_env

MIXED_PRECISION = ("auto", "no", "bf16")
"""auto: bf16 on a GPU that supports it, else full precision; no: full precision; bf16: bf16 autocast, also on a
CPU (faster where it has bf16 instructions, e.g. AVX512-BF16 or AMX; numbers differ slightly from full precision)."""


def resolve_mixed_precision(mode: str) -> str:
    """Accelerate's `mixed_precision` for one of MIXED_PRECISION.

    auto is bf16 where the run will be on a GPU with bf16 support; a run forced onto the CPU
    (`accelerate launch --cpu`, ACCELERATE_USE_CPU=1) stays in full precision.
    """
    if mode != "auto":
        return mode
    import torch

    on_gpu = torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")
    return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
