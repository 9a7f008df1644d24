"""Pretraining stage: UNITER-style audio-visual encoder trained with AVG contrastive losses.

Public API (what other stages use; everything else is internal):

    from avvp.pretrain import load_encoder
    encoder = load_encoder("runs/pre-multi")        # AVEncoderModel, eval mode, on the CPU
    out = encoder(audio, visual, motion)            # (B, 10, 128), (B, 10, 2048), (B, 10, 512) float tensors
    out.audio, out.visual, out.motion               # contextual embeddings (B, 10, H), H = encoder.config.hidden_size
    audio_emb, visual_emb, motion_emb = out         # the output is a NamedTuple, so it also unpacks

- `load_encoder(path)` reads a directory written by `avvp-pretrain` (config.json + model.safetensors, through
  `AVEncoderModel.from_pretrained`); a missing, corrupt or foreign directory (another model type, missing or extra
  weights, wrong shapes) raises `avvp.errors.AvvpError` with a one-line message naming it.
- `check_store_fits(encoder, features, encoder_dir, hint="")` fails in one line unless a store holds the streams
  the encoder reads at its widths.
- `encoder.config` is an `AVEncoderConfig`: `hidden_size`, and `stream_sizes()` the input widths it expects.
- The encoder is an ordinary `torch.nn.Module` (`.train()`, `.parameters()`, `.to(device)`), for end-to-end
  finetuning; `save_encoder(model, path)` writes it back in the same format.
- `final_optimizer_moments(run_dir, encoder)`: the Adam moments a pretraining run ended with, by parameter name
  (the release's end-to-end recipe continues them while finetuning), and a line saying where they came from.
- `split_avg(state, source)`, `head_untrained(head)`, `release_encoder(state, heads, source)`: the paper release's
  `avg` state dicts (pretrained.pt, final.pt) split into UNITER and head, and its UNITER as our encoder of the
  `release` architecture (`avvp.pretrain.import_release`); `AVG_HEAD` the head's linear layers.
- `export_embeddings(encoder_dir, features, out)` writes the embeddings of every video of a store as a new store
  (streams audio, visual of width H; motion carried over), the input of a frozen-encoder parser.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from avvp.pretrain.export import export_embeddings
    from avvp.pretrain.import_release import AVG_HEAD, RELEASE_HEADS, head_untrained, release_encoder, split_avg
    from avvp.pretrain.modeling import (
        AVEncoderConfig,
        AVEncoderModel,
        AVEncoderOutput,
        check_store_fits,
        load_encoder,
        save_encoder,
    )

_HOMES = {
    "export_embeddings": "export",
    **dict.fromkeys(("AVG_HEAD", "RELEASE_HEADS", "head_untrained", "release_encoder", "split_avg"), "import_release"),
    **dict.fromkeys(
        ("AVEncoderConfig", "AVEncoderModel", "AVEncoderOutput", "check_store_fits", "load_encoder", "save_encoder"),
        "modeling",
    ),
}
"""Public name -> its module. Imported on first use (PEP 562), so that what needs only `avvp.pretrain.config`
(`avvp-pretrain --help`, a bad option, the finetuning config) does not import transformers (seconds)."""


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def final_optimizer_moments(run_dir, encoder):
    """`avvp.pretrain.train.final_optimizer_moments` (imported when called: the training loop pulls in Accelerate)."""
    from avvp.pretrain.train import final_optimizer_moments as moments

    return moments(run_dir, encoder)


__all__ = [
    "AVG_HEAD",
    "RELEASE_HEADS",
    "head_untrained",
    "release_encoder",
    "split_avg",
    "AVEncoderConfig",
    "AVEncoderModel",
    "AVEncoderOutput",
    "check_store_fits",
    "export_embeddings",
    "final_optimizer_moments",
    "load_encoder",
    "save_encoder",
]
