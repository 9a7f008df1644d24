"""Export the contextual embeddings of a pretrained encoder as a feature store any parser reads.

The output store has the streams `audio` and `visual` (N, 10, H) — the encoder's contextual embeddings — and
`motion` carried over from the input store as it is, for the same videos in the same order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from avvp.classes import NUM_SNIPPETS, STREAMS
from avvp.console import progress
from avvp.errors import StoreError
from avvp.pretrain.config import EXPORT_BATCH_SIZE as BATCH_SIZE
from avvp.pretrain.modeling import check_store_fits, load_encoder
from avvp.runs import check_free_space, output_lock, writing
from avvp.store import StoreWriter, float_dtype, iter_store


def export_embeddings(
    encoder: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    overwrite: bool = False,
    batch_size: int = BATCH_SIZE,
    dtype: str | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> Path:
    """Run the encoder over every video of `features`, writing the embedding store `out` chunk by chunk.

    dtype: of the output streams; None keeps the input store's motion dtype (so motion is carried over exactly).
    One writer at a time per `out` (`avvp.runs.output_lock`); a full disk is a one-line error, nothing left.
    """
    if Path(out).resolve() == Path(features).resolve():
        raise StoreError(f"{out}: is the input --features; write the embeddings to another file")
    with output_lock(out), writing(out):
        return _export(encoder, features, Path(out), overwrite, batch_size, dtype, device, show_progress)


def _export(encoder, features, out: Path, overwrite: bool, batch_size: int, dtype, device, show_progress: bool) -> Path:
    model = load_encoder(encoder)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    info = check_store_fits(model, features, encoder)
    widths = model.config.stream_sizes()
    dtype = dtype or info["streams"]["motion"]["dtype"]
    hidden = model.config.hidden_size
    attrs = {"encoder": str(encoder), "features": str(features), "embedding": "avvp-pretrain contextual snippets"}
    out_widths = {"audio": hidden, "visual": hidden, "motion": widths["motion"]}
    itemsize = (float_dtype(dtype) or np.dtype(np.float32)).itemsize  # StoreWriter refuses other dtypes
    check_free_space(out, info["videos"] * NUM_SNIPPETS * sum(out_widths.values()) * itemsize)
    with (
        StoreWriter(out, out_widths, dtype=dtype, source=str(features), attrs=attrs, overwrite=overwrite) as writer,
        progress(disable=not show_progress) as bar,
    ):
        task = bar.add_task("export", total=info["videos"])
        for video_ids, streams in iter_store(features, STREAMS, chunk_size=batch_size, widths=widths):
            inputs = [torch.from_numpy(np.asarray(streams[name], dtype=np.float32)).to(device) for name in STREAMS]
            with torch.inference_mode():
                output = model(*inputs)
            writer.append(
                video_ids,
                audio=output.audio.float().cpu().numpy(),
                visual=output.visual.float().cpu().numpy(),
                motion=streams["motion"],
            )
            bar.update(task, advance=len(video_ids))
    return out
