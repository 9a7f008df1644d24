"""The UNITER-style audio-visual encoder: a transformers config/model pair around a BERT encoder.

Each stream (audio, visual, motion) is projected to the hidden size (Linear -> LayerNorm); the three ten-snippet
streams form one 30-token sequence fed to `BertModel` through `inputs_embeds`, with `token_type_ids` = modality
(0 audio, 1 visual, 2 motion) and `position_ids` = snippet index (0..9), so time and modality are embedded as
UNITER embeds image regions. The model returns the contextual embedding of every snippet of every stream.

Two architectures, chosen by `AVEncoderConfig.architecture` (recorded in config.json):

- `toolkit` (the default, described above): per-feature standardisation of the inputs, BERT's learned position
  embeddings, three token types, token order audio, visual, motion. Standardising removes the large common
  component of the raw features that otherwise drowns the differences the AVG loss separates.
- `release`: the paper release's `UniterModel` (model/model.py of jayaprakash-a/Cross-Modal-learning-for-Audio-
  Visual-Video-Parsing). Each stream is embedded as LayerNorm(LayerNorm(Linear(x + m)) + P[t] + E[type]) with m a
  learned vector added to every input feature (row 1 of its `mask_embedding`), P a frozen (10, H) table per stream
  and two token types (visual 0; audio and motion 1); token order visual, audio, motion; no standardisation. The
  release builds P as a sinusoidal table, but its `init_weights` then overwrites every `nn.Embedding`, P included,
  with N(0, 0.02), and P is never trained: a fresh release encoder here draws P the same way. The BERT layers are
  the same as ours (post-norm, erf GELU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import BertConfig, BertModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import logging as hf_logging

from avvp.classes import NUM_SNIPPETS, STREAMS
from avvp.errors import AvvpError, StoreError
from avvp.inputs import check_input_file, check_sizes
from avvp.pretrain.config import ARCHITECTURES, PretrainConfig
from avvp.store import RAW_WIDTHS, store_info

# The input streams are avvp.classes.STREAMS in token-type order: token type k is STREAMS[k].
RELEASE_STREAMS = ("visual", "audio", "motion")
"""The release's token order (RGB, audio, R(2+1)D)."""
RELEASE_TOKEN_TYPES = {"visual": 0, "audio": 1, "motion": 1}
"""The release's two token types: RGB 0, audio and R(2+1)D 1."""


RUN_DEFAULTS = PretrainConfig()
"""The pretraining config's defaults: the encoder's sizes default to them, so they are written once."""
RENAMED = {
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "dropout",
}
"""config.json keys of encoders saved before the encoder took the run's field names (BERT's) -> the names now; such
an encoder loads unchanged."""
ENCODER_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "dropout", "architecture")
"""The settings of a pretraining run (PretrainConfig) that the encoder's config takes, by the same names."""


@strict
class AVEncoderConfig(PreTrainedConfig):
    """Everything needed to rebuild the encoder; saved as config.json by `save_pretrained`.

    The sizes have the names of the run's settings (PretrainConfig); `bert_config` is the one place they become
    BERT's names.
    """

    model_type = "avvp_av_encoder"

    audio_size: int = RAW_WIDTHS["audio"]
    visual_size: int = RAW_WIDTHS["visual"]
    motion_size: int = RAW_WIDTHS["motion"]
    hidden_size: int = RUN_DEFAULTS.hidden_size
    num_layers: int = RUN_DEFAULTS.num_layers
    num_heads: int = RUN_DEFAULTS.num_heads
    intermediate_size: int = RUN_DEFAULTS.intermediate_size
    dropout: float | int = RUN_DEFAULTS.dropout
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    architecture: str = RUN_DEFAULTS.architecture

    def __post_init__(self, **kwargs):
        kwargs = self.with_current_names(kwargs)  # the fields come as fields; only an old name comes here
        for name in set(RENAMED.values()) & set(kwargs):
            setattr(self, name, kwargs.pop(name))
        super().__post_init__(**kwargs)

    @staticmethod
    def with_current_names(saved: dict) -> dict:
        """The keys of a saved config under today's names (RENAMED); ValueError when its two dropouts differ."""
        old = {name: saved[name] for name in RENAMED if name in saved}
        dropouts = {old[name] for name in ("hidden_dropout_prob", "attention_probs_dropout_prob") if name in old}
        if len(dropouts) > 1:
            raise ValueError(f"hidden_dropout_prob and attention_probs_dropout_prob differ ({sorted(dropouts)})")
        return {**{key: value for key, value in saved.items() if key not in RENAMED},
                **{RENAMED[name]: value for name, value in old.items()}}  # fmt: skip

    def validate_architecture(self):
        """The architecture is one of ARCHITECTURES (called by `strict` on construction)."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r}: expected one of {', '.join(ARCHITECTURES)}")

    def stream_sizes(self) -> dict[str, int]:
        """Input width of each stream."""
        return {"audio": self.audio_size, "visual": self.visual_size, "motion": self.motion_size}

    def bert_config(self) -> BertConfig:
        """The BERT encoder's config, in BERT's names: three token types (modalities), ten positions (snippets), no
        vocabulary, `dropout` on both the hidden states and the attention probabilities."""
        return BertConfig(
            vocab_size=1,  # inputs always come as inputs_embeds; the word embeddings are dropped
            pad_token_id=None,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            max_position_embeddings=NUM_SNIPPETS,
            type_vocab_size=len(STREAMS),
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )


class AVEncoderOutput(NamedTuple):
    """Contextual snippet embeddings, each (B, 10, H); unpacks as `audio, visual, motion = encoder(...)`."""

    audio: torch.Tensor
    visual: torch.Tensor
    motion: torch.Tensor


class StreamProjection(nn.Module):
    """Standardise -> Linear -> LayerNorm from a stream's feature width to the hidden size (UNITER's region
    embedding, after per-feature standardisation).

    `mean` and `std` are the pretraining corpus's per-feature statistics (saved with the weights). The raw
    streams share a large common component (ResNet and VGGish features of any two snippets have cosines near 1),
    which drowns the differences the AVG loss must separate unless it is taken out first.
    """

    def __init__(self, in_features: int, hidden_size: int, eps: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.linear = nn.Linear(in_features, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear((features - self.mean) / self.std))


class ReleaseStreamEmbedding(nn.Module):
    """One stream as the release embeds it: LayerNorm(LayerNorm(Linear(x + m)) + P[t] + E[type]), then dropout.

    Names map to the release's `Uniter*Embeddings`: `feature_offset` is row 1 of `mask_embedding` (its masks are
    all ones), `linear`/`norm` are `img_linear`/`img_layer_norm` (`audio_*` for audio), `positions` is
    `position_embeddings.weight` (frozen), `output_norm` is `LayerNorm`.
    """

    def __init__(self, in_features: int, hidden_size: int, eps: float, dropout: float):
        super().__init__()
        self.feature_offset = nn.Parameter(torch.zeros(in_features))
        self.linear = nn.Linear(in_features, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.register_buffer("positions", torch.zeros(NUM_SNIPPETS, hidden_size))  # frozen, as the release's
        self.output_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        # features (B, T, W)   token_type (H,)
        projected = self.norm(self.linear(features + self.feature_offset))  # (B, T, H)
        return self.dropout(self.output_norm(projected + self.positions + token_type))  # (B, T, H)


class GivenEmbeddings(nn.Module):
    """BERT's embedding layer replaced by the identity: the release architecture computes its own embeddings."""

    def forward(self, inputs_embeds: torch.Tensor, **unused) -> torch.Tensor:
        return inputs_embeds


class AVEncoderModel(PreTrainedModel):
    """Audio, visual and motion snippets of a video in, their contextual embeddings (B, 10, H) each out."""

    config_class = AVEncoderConfig
    config: AVEncoderConfig
    base_model_prefix = "av_encoder"
    main_input_name = "audio"
    _supports_sdpa = True

    def __init__(self, config: AVEncoderConfig):
        super().__init__(config)
        self.bert = BertModel(config.bert_config(), add_pooling_layer=False)
        if config.architecture == "release":
            self.stream_embeddings = nn.ModuleDict(
                {
                    name: ReleaseStreamEmbedding(
                        config.stream_sizes()[name],
                        config.hidden_size,
                        config.layer_norm_eps,
                        config.dropout,
                    )
                    for name in RELEASE_STREAMS
                }
            )
            self.token_type_embeddings = nn.Embedding(2, config.hidden_size)
            self.bert.embeddings = GivenEmbeddings()
        else:
            self.projections = nn.ModuleDict(
                {
                    name: StreamProjection(width, config.hidden_size, config.layer_norm_eps)
                    for name, width in config.stream_sizes().items()
                }
            )
            # No token ids ever reach the encoder; an unused parameter would also stall DDP.
            self.bert.embeddings.word_embeddings = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, StreamProjection):
            init.zeros_(module.mean)
            init.ones_(module.std)
        if isinstance(module, ReleaseStreamEmbedding):  # the release's init_weights: every embedding N(0, 0.02)
            init.normal_(module.feature_offset, std=self.config.initializer_range)
            init.normal_(module.positions, std=self.config.initializer_range)

    def get_input_embeddings(self) -> None:
        return None

    @torch.no_grad()
    def set_input_statistics(self, statistics: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Standardise each stream with per-feature (mean, std), each (W,): `avvp.pretrain.data.feature_statistics`.

        The release architecture takes the raw features: nothing to set."""
        if self.config.architecture == "release":
            return
        for name, (mean, std) in statistics.items():
            self.projections[name].mean.copy_(mean)
            self.projections[name].std.copy_(std)

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, motion: torch.Tensor, motion_attended: bool = True
    ) -> AVEncoderOutput:
        """`motion_attended=False` masks the motion tokens out as keys (no token attends to them), as the release's
        pretraining does (`attention_mask[:, 20:] = 0`); their own outputs are still computed."""
        # audio (B, T, 128)   visual (B, T, 2048)   motion (B, T, 512); T = 10 snippets
        batch, snippets = audio.shape[:2]
        if snippets != NUM_SNIPPETS or visual.shape[:2] != audio.shape[:2] or motion.shape[:2] != audio.shape[:2]:
            raise ValueError(
                f"expected (B, {NUM_SNIPPETS}, width) streams; got audio {tuple(audio.shape)}, "
                f"visual {tuple(visual.shape)}, motion {tuple(motion.shape)}"
            )
        if self.config.architecture == "release":
            return self._release_forward(audio, visual, motion, motion_attended)
        tokens = torch.cat(
            [self.projections[name](x) for name, x in zip(STREAMS, (audio, visual, motion), strict=True)], dim=1
        )  # (B, 30, H): audio snippets 0..9, visual 0..9, motion 0..9
        modality = torch.arange(len(STREAMS), device=tokens.device).repeat_interleave(NUM_SNIPPETS)  # (30,) 0,..,2
        snippet = torch.arange(NUM_SNIPPETS, device=tokens.device).repeat(len(STREAMS))  # (30,) 0..9 three times
        # An explicit all-ones mask: every token attends to every token of all three streams. Without it,
        # transformers >= 5 reads position ids that restart at 0 as packed sequences and masks each stream
        # off from the others (no cross-modal attention at all).
        attended = torch.ones(batch, tokens.shape[1], dtype=torch.long, device=tokens.device)  # (B, 30)
        if not motion_attended:
            attended[:, 2 * NUM_SNIPPETS :] = 0
        hidden = self.bert(
            inputs_embeds=tokens,
            attention_mask=attended,
            token_type_ids=modality.expand(batch, -1),
            position_ids=snippet.expand(batch, -1),
        ).last_hidden_state  # (B, 30, H)
        return AVEncoderOutput(*hidden.split(NUM_SNIPPETS, dim=1))

    def _release_forward(
        self, audio: torch.Tensor, visual: torch.Tensor, motion: torch.Tensor, motion_attended: bool
    ) -> AVEncoderOutput:
        streams = {"audio": audio, "visual": visual, "motion": motion}
        types = self.token_type_embeddings.weight  # (2, H)
        tokens = torch.cat(
            [self.stream_embeddings[name](streams[name], types[RELEASE_TOKEN_TYPES[name]]) for name in RELEASE_STREAMS],
            dim=1,
        )  # (B, 30, H): visual snippets 0..9, audio 0..9, motion 0..9
        # An explicit mask, as for ours; no position ids reach BERT (the positions are in the embeddings).
        attended = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)  # (B, 30)
        if not motion_attended:
            attended[:, 2 * NUM_SNIPPETS :] = 0
        hidden = self.bert(inputs_embeds=tokens, attention_mask=attended).last_hidden_state  # (B, 30, H)
        encoded_visual, encoded_audio, encoded_motion = hidden.split(NUM_SNIPPETS, dim=1)
        return AVEncoderOutput(encoded_audio, encoded_visual, encoded_motion)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (our own errors say what went wrong)."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def save_encoder(model: AVEncoderModel, path: str | os.PathLike) -> Path:
    """`save_pretrained` (config.json + model.safetensors), quietly."""
    with quiet_transformers():
        model.save_pretrained(path)
    return Path(path)


def load_encoder(path: str | os.PathLike) -> AVEncoderModel:
    """Load a pretrained encoder directory (config.json + model.safetensors) in eval mode on the CPU.

    A missing, corrupt or foreign directory (another model type, missing or extra weights, wrong shapes) is an
    AvvpError in one line naming the directory.
    """
    path = Path(path)
    if not path.is_dir():
        raise AvvpError(f"{path}: no such encoder directory; expected the --out folder of avvp-pretrain")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AvvpError(f"{path}: no config.json; not an encoder saved by avvp-pretrain")
    try:
        saved = json.loads(check_input_file(config_file, "config", AvvpError).read_text())
        model_type = saved.get("model_type")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        raise AvvpError(f"{config_file}: not a valid JSON config") from None
    if model_type != AVEncoderConfig.model_type:
        raise AvvpError(
            f"{config_file}: model type {model_type!r}; "
            f"expected {AVEncoderConfig.model_type!r} (an avvp-pretrain encoder)"
        )
    check_sizes(str(config_file), saved, AvvpError)  # before transformers builds 10^4 layers
    if not (path / "model.safetensors").is_file():
        raise AvvpError(f"{path}: no model.safetensors; the pretraining run did not finish")
    try:
        with quiet_transformers():
            model, info = AVEncoderModel.from_pretrained(
                path, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except Exception as error:  # transformers raises OSError, ValueError, RuntimeError, safetensors errors, ...
        reason = " ".join(str(error).split())[:200]
        raise AvvpError(f"{path}: cannot load the encoder ({type(error).__name__}: {reason})") from None
    if info["mismatched_keys"]:
        key, stored, expected = sorted(info["mismatched_keys"])[0]
        raise AvvpError(
            f"{path}: weights do not match config.json ({key} is {tuple(stored)} in model.safetensors, "
            f"{tuple(expected)} by config.json; {len(info['mismatched_keys'])} tensors differ)"
        )
    for kind in ("missing_keys", "unexpected_keys"):
        if info[kind]:
            keys = sorted(info[kind])
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            raise AvvpError(f"{path}: weights do not match config.json ({kind.replace('_', ' ')}: {shown})")
    if info["error_msgs"]:
        raise AvvpError(f"{path}: cannot load the encoder ({' '.join(str(info['error_msgs'][0]).split())[:200]})")
    return model.eval()


def check_store_fits(
    model: AVEncoderModel, features: str | os.PathLike, encoder: str | os.PathLike, hint: str = ""
) -> dict:
    """Fail in one line unless the store holds every stream the encoder reads, at its width; returns store_info.

    `hint` is appended to the width message (what to do instead).
    """
    info = store_info(features)
    for name, width in model.config.stream_sizes().items():
        if name not in info["streams"]:
            raise StoreError(f"{features}: no stream {name!r}; the encoder {encoder} reads {', '.join(STREAMS)}")
        found = info["streams"][name]["shape"][-1]
        if found != width:
            raise StoreError(
                f"{features}: stream {name!r} has width {found}; the encoder {encoder} expects {width}"
                + (f" ({hint})" if hint else "")
            )
    return info


def weights_checksum(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes in name order: equal checksums mean identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
