"""Ending multi-process runs without the process-group teardown hang."""

from __future__ import annotations

import sys
import time

import torch
from accelerate import Accelerator

SETTLE_TIMEOUT_S = 60.0
MIN_WAIT_S = 0.02
"""Also let the other worker threads finish destroying what they hold (they need the GIL for a moment only)."""


def settle_collectives(accelerator: Accelerator, timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Return once the process group's worker threads hold no tensor of ours; call after a run's last collective.

    Gloo destroys a finished collective's work object on its own worker thread, after the caller already has
    the result, and letting go of the Python tensors that object holds needs the GIL. Tearing the process group
    down (when the DDP-wrapped model goes away) joins those threads while holding the GIL, so a work object not
    yet destroyed at that moment hangs the process for good (seen at the end of two-process pretraining). One
    more collective of our own, waited out with the GIL free until the process group has let go of its
    buffers, leaves the worker threads idle before teardown. A no-op in a single process and off gloo.
    """
    if accelerator.num_processes == 1 or not torch.distributed.is_initialized():
        return
    if torch.distributed.get_backend() != "gloo":  # the hang is gloo's (CPU processes); NCCL frees on its own
        return
    local = torch.zeros(1, device=accelerator.device)
    gathered = [torch.empty_like(local) for _ in range(accelerator.num_processes)]
    buffers = [local, *gathered]
    free = [sys.getrefcount(buffer) for buffer in buffers]  # counts with no collective holding them
    torch.distributed.all_gather(gathered, local)
    start = time.monotonic()
    while True:
        time.sleep(0.001)  # the GIL is free meanwhile, for every worker thread (earlier work objects too)
        waited = time.monotonic() - start
        released = [sys.getrefcount(buffer) for buffer in buffers] == free
        if (released and waited > MIN_WAIT_S) or waited > timeout:
            return
