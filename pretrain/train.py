"""The pretraining loop on Accelerate: plain `avvp-pretrain` on one device, `accelerate launch` on several.

Run directory (`cfg.out`): config.json + model.safetensors (the encoder, `save_pretrained`, written last),
pretrain_config.json (the PretrainConfig), metrics.json (the untrained encoder's and every epoch's validation
figures, throughput, each process's weight checksum), log.jsonl (training loss every `log_every` steps, appended
as the run goes), checkpoints/step_N (Accelerate state for --resume; the latest two are kept).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from avvp.console import progress as progress_bar
from avvp.distributed import settle_collectives
from avvp.errors import AvvpError, ConfigError
from avvp.io import atomic_path
from avvp.precision import resolve_mixed_precision
from pretrain.config import PretrainConfig
from pretrain.data import CorpusRows, PretrainCorpus, feature_statistics, keep_batch, load_corpus, split_rows
from pretrain.losses import accuracy_from_counts, avg_loss, grounding_counts, pretrain_losses
from pretrain.modeling import AVEncoderConfig, AVEncoderModel, save_encoder, weights_checksum

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
CONFIG_FILE = "pretrain_config.json"


@dataclass
class TrainProgress:
    """Where the run stands; checkpointed with the Accelerate state, so --resume continues from it."""

    epoch: int = 0
    """Epochs finished."""
    batches_done: int = 0
    """Batches of the current epoch already trained on (each process)."""
    step: int = 0
    """Optimizer steps so far."""
    videos: int = 0
    """Videos trained on, all processes together."""
    train_seconds: float = 0.0
    """Time in the training batches (no validation, no checkpointing)."""
    epoch_loss: dict = field(default_factory=dict)
    """Sum of each loss term over the current epoch's batches (this process)."""
    epoch_batches: int = 0
    untrained: dict | None = None
    """Validation figures of the encoder before any step."""
    epochs: list = field(default_factory=list)
    """Per-epoch figures."""

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)


def encoder_config(cfg: PretrainConfig, widths: dict[str, int]) -> AVEncoderConfig:
    """The encoder's config from the run settings and the store's stream widths."""
    return AVEncoderConfig(
        audio_size=widths["audio"],
        visual_size=widths["visual"],
        motion_size=widths["motion"],
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )


def initial_encoder(cfg: PretrainConfig, corpus: PretrainCorpus, train_rows: np.ndarray) -> AVEncoderModel:
    """The encoder a run starts from: seeded weights and the standardisation statistics of its training videos.

    Seeds every generator (`set_seed`); `avvp-pretrain init` writes exactly this encoder as the untrained control.
    """
    set_seed(cfg.seed)
    model = AVEncoderModel(encoder_config(cfg, corpus.widths))
    model.set_input_statistics(feature_statistics(corpus, train_rows))
    return model


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoints/step_N folder (other names there are not ours and are left alone)."""
    steps = {int(p.name[5:]): p for p in (out / CHECKPOINTS).glob("step_*") if p.is_dir() and p.name[5:].isdigit()}
    return steps[max(steps)] if steps else None


def check_run_dir(cfg: PretrainConfig) -> Path:
    """Refuse to clobber a run; for --resume, find the checkpoint and check the settings are the run's."""
    out = Path(cfg.out)
    if cfg.resume:
        if not (out / CONFIG_FILE).is_file():
            raise AvvpError(f"{out}: no {CONFIG_FILE}; nothing to resume (run without --resume to start it)")
        saved = PretrainConfig.load(out / CONFIG_FILE)
        if saved.untrained:
            raise AvvpError(
                f"{out}: an untrained control written by `avvp-pretrain init`; there is no run to resume "
                "(train into another --out without --resume)"
            )
        differ = cfg.differences(saved)
        if differ:
            name = differ[0]
            raise ConfigError(
                f"--resume: --{name.replace('_', '-')} is {getattr(cfg, name)!r} here but "
                f"{getattr(saved, name)!r} in {out / CONFIG_FILE}; resume with the run's settings"
            )
        checkpoint = latest_checkpoint(out)
        if checkpoint is None:
            raise AvvpError(f"{out}: no checkpoint under {CHECKPOINTS}/ to resume from")
        if not any(checkpoint.iterdir()):
            raise AvvpError(f"{checkpoint}: an empty checkpoint; resume from another one or start again")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not cfg.overwrite:
            raise AvvpError(f"{out}: already exists; pass --overwrite to replace it or --resume to continue it")
        if not (out / CONFIG_FILE).is_file():  # --overwrite replaces a run, never other files
            raise AvvpError(f"{out}: not a pretraining run (no {CONFIG_FILE}); --overwrite will not delete it")
    for name in ("features", "labels"):
        if not getattr(cfg, name):  # no labels: the untrained control
            continue
        source = Path(getattr(cfg, name)).resolve()
        if source == out.resolve() or out.resolve() in source.parents:
            raise AvvpError(f"{out}: holds the input --{name} {getattr(cfg, name)}; choose another run directory")
    return out


def start_run_dir(cfg: PretrainConfig, out: Path) -> None:
    """Main process: a fresh run directory holding pretrain_config.json."""
    if not cfg.resume:
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        out.mkdir(parents=True)
        write_json(out / CONFIG_FILE, cfg.to_dict())


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def make_accelerator(cfg: PretrainConfig, out: Path) -> Accelerator:
    return Accelerator(
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.grad_accum,
        project_dir=str(out),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not biases, LayerNorm weights, embeddings of types/positions)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "embeddings" not in name else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def gather_keeping_local_grad(accelerator: Accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor concatenated over all processes; the local slice keeps its gradient (the others have none)."""
    if accelerator.num_processes == 1:
        return tensor
    everything = accelerator.gather(tensor.detach().contiguous())
    if not tensor.requires_grad:
        return everything
    start = accelerator.process_index * tensor.shape[0]
    return torch.cat([everything[:start], tensor, everything[start + tensor.shape[0] :]])


@torch.no_grad()
def evaluate(model, loader, cfg: PretrainConfig, accelerator: Accelerator) -> dict[str, float]:
    """Validation AVG loss and grounding accuracy (share of the variant's pairs on the right side of the margins)."""
    model.eval()
    per_video = []
    for batch in loader:
        output = model(batch["audio"], batch["visual"], batch["motion"])
        loss = avg_loss(
            output.audio, output.visual, batch["grounded"], cfg.variant, cfg.pos_margin, cfg.neg_margin, "none"
        )  # (B,)
        counts = grounding_counts(
            output.audio, output.visual, batch["grounded"], cfg.variant, cfg.pos_margin, cfg.neg_margin
        )  # (B, 4)
        per_video.append(accelerator.gather_for_metrics(torch.cat([loss[:, None], counts], dim=1)))
    model.train()
    stats = torch.cat(per_video).cpu()
    accuracy = accuracy_from_counts(stats[:, 1:])
    return {"val_loss": float(stats[:, 0].mean()), **{f"val_{name}": value for name, value in accuracy.items()}}


def save_checkpoint(accelerator: Accelerator, out: Path, step: int) -> None:
    """Accelerate state into checkpoints/step_N (written under a temporary name, then renamed); keep the latest."""
    final = out / CHECKPOINTS / f"step_{step}"
    tmp = out / CHECKPOINTS / f".step_{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        steps = sorted(int(p.name[5:]) for p in (out / CHECKPOINTS).glob("step_*") if p.name[5:].isdigit())
        for old in steps[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(out / CHECKPOINTS / f"step_{old}")
    accelerator.wait_for_everyone()


def _fmt(figures: dict) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in figures.items() if isinstance(value, float))


def train(cfg: PretrainConfig) -> Path:
    """Pretrain the encoder on cfg.features with the AVG labels of cfg.labels; returns the run directory."""
    corpus = load_corpus(cfg.features, cfg.labels)
    train_rows, val_rows = split_rows(len(corpus), cfg.val_fraction, cfg.seed)
    out = check_run_dir(cfg)  # every process checks before any writes
    accelerator = make_accelerator(cfg, out)
    main = accelerator.is_main_process
    model = initial_encoder(cfg, corpus, train_rows)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
    if main:  # only now that everything is set up: a run replaced by --overwrite goes when the new one can start
        start_run_dir(cfg, out)
    accelerator.wait_for_everyone()
    # Loaders draw from their own generators, so that starting an epoch (or resuming) leaves the global RNG,
    # which dropout uses, exactly where the checkpoint found it.
    train_loader = DataLoader(
        CorpusRows(corpus, train_rows),
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=keep_batch,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    val_loader = None
    if len(val_rows):
        val_loader = accelerator.prepare(
            DataLoader(
                CorpusRows(corpus, val_rows),
                batch_size=cfg.batch_size,
                collate_fn=keep_batch,
                generator=torch.Generator().manual_seed(cfg.seed),
            )
        )
    updates_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
    total_updates = updates_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_updates = min(total_updates, cfg.max_steps)
    # A prepared scheduler steps once per process at each optimizer step, hence the factor.
    scheduler = get_linear_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(cfg.warmup * total_updates) * accelerator.num_processes,
        num_training_steps=total_updates * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)
    progress = TrainProgress()
    accelerator.register_for_checkpointing(progress)
    if cfg.resume:
        checkpoint = latest_checkpoint(out)
        accelerator.load_state(str(checkpoint))
        accelerator.print(f"resumed from {checkpoint} (epoch {progress.epoch}, step {progress.step})")

    if val_loader is not None and progress.untrained is None:
        progress.untrained = evaluate(model, val_loader, cfg, accelerator)
        accelerator.print(f"untrained encoder: {_fmt(progress.untrained)}")

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        return gather_keeping_local_grad(accelerator, tensor)

    log_sums: dict[str, float] = {}
    log_batches = 0
    with progress_bar(disable=not main) as bar:
        task = bar.add_task(f"pretrain {cfg.variant}", total=total_updates, completed=progress.step)
        while progress.epoch < cfg.epochs and progress.step < total_updates:
            train_loader.set_epoch(progress.epoch)
            loader = train_loader
            if progress.batches_done:
                loader = accelerator.skip_first_batches(train_loader, progress.batches_done)
            tick = time.perf_counter()
            for batch in loader:
                with accelerator.accumulate(model):
                    output = model(batch["audio"], batch["visual"], batch["motion"])
                    terms = pretrain_losses(
                        output.audio,
                        output.visual,
                        batch["grounded"],
                        batch["video_index"],
                        cfg.variant,
                        cfg.pos_margin,
                        cfg.neg_margin,
                        cfg.in_batch_negatives,
                        gather,
                    )
                    loss = sum(terms.values())
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                for name, value in {"loss": loss, **terms}.items():
                    progress.epoch_loss[name] = progress.epoch_loss.get(name, 0.0) + value.item()
                    log_sums[name] = log_sums.get(name, 0.0) + value.item()
                progress.epoch_batches += 1
                log_batches += 1
                progress.batches_done += 1
                progress.videos += len(batch["video_index"]) * accelerator.num_processes
                now = time.perf_counter()
                progress.train_seconds += now - tick
                tick = now
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                bar.update(task, completed=progress.step)
                if progress.step % cfg.log_every == 0:
                    means = accelerator.reduce(
                        torch.tensor([log_sums[k] / log_batches for k in log_sums], device=accelerator.device), "mean"
                    )
                    record = {"step": progress.step, "epoch": progress.epoch + 1, "lr": scheduler.get_last_lr()[0]}
                    record.update({f"train_{k}": float(v) for k, v in zip(log_sums, means, strict=True)})
                    if main:
                        with open(out / "log.jsonl", "a") as log:
                            log.write(json.dumps(record) + "\n")
                    log_sums, log_batches = {}, 0
                if progress.step % cfg.save_every == 0:
                    save_checkpoint(accelerator, out, progress.step)
                    tick = time.perf_counter()
                if progress.step >= total_updates:
                    break
            progress.epoch += 1
            progress.batches_done = 0
            epoch_means = [total / progress.epoch_batches for total in progress.epoch_loss.values()]
            means = accelerator.reduce(torch.tensor(epoch_means, device=accelerator.device), "mean")
            figures = {"epoch": progress.epoch, "step": progress.step}
            figures.update({f"train_{k}": float(v) for k, v in zip(progress.epoch_loss, means, strict=True)})
            if val_loader is not None:
                figures.update(evaluate(model, val_loader, cfg, accelerator))
            figures["lr"] = scheduler.get_last_lr()[0]
            progress.epochs.append(figures)
            progress.epoch_loss, progress.epoch_batches = {}, 0
            if main:
                bar.console.print(f"epoch {progress.epoch}/{cfg.epochs}: {_fmt(figures)}")
            save_checkpoint(accelerator, out, progress.step)

    encoder = accelerator.unwrap_model(model)
    checksums = gather_object([weights_checksum(encoder)])
    if main:
        finish_run_dir(cfg, out, encoder, progress, checksums, accelerator.num_processes)
    accelerator.wait_for_everyone()
    settle_collectives(accelerator)  # before the process group goes (a teardown hang otherwise, at random)
    accelerator.end_training()
    return out


def finish_run_dir(
    cfg: PretrainConfig,
    out: Path,
    encoder: AVEncoderModel,
    progress: TrainProgress,
    checksums: list[str],
    processes: int,
) -> None:
    """Main process: metrics.json, then the encoder (saved into a temporary folder, then moved into place)."""
    metrics = {
        "variant": cfg.variant,
        "processes": processes,
        "threads_per_process": torch.get_num_threads(),
        "steps": progress.step,
        "videos_trained": progress.videos,
        "train_seconds": round(progress.train_seconds, 3),
        "videos_per_second": progress.videos / progress.train_seconds if progress.train_seconds else None,
        "untrained": progress.untrained,
        "epochs": progress.epochs,
        "final": progress.epochs[-1] if progress.epochs else None,
        "process_weight_checksums": checksums,
        "config": cfg.to_dict(),
    }
    write_json(out / "metrics.json", metrics)
    tmp = Path(tempfile.mkdtemp(prefix=".encoder.", suffix=".tmp", dir=out))
    try:
        save_encoder(encoder, tmp)
        for written in sorted(tmp.iterdir()):  # config.json before model.safetensors
            os.replace(written, out / written.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
