"""The pretraining loop on Accelerate: plain `avvp-pretrain` on one device, `accelerate launch` on several.

Run directory (`cfg.out`): config.json + model.safetensors (the encoder, `save_pretrained`, written last),
pretrain_config.json (the PretrainConfig), metrics.json (the untrained encoder's and every epoch's validation
figures, throughput, each process's weight checksum), log.jsonl (training loss every `log_every` steps, appended
as the run goes), checkpoints/NNNNNN (the state for --resume, safetensors and JSON, `avvp.runs`; the latest two
are kept). The loop is split into named steps: `_set_up`, `_train_step` (one batch), `_log` (log.jsonl),
`_train_epoch`, `_end_epoch` (validation, the epoch's figures, a checkpoint) and `finish_run_dir`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

from avvp.classes import NUM_SNIPPETS
from avvp.console import progress as progress_bar
from avvp.distributed import settle_collectives
from avvp.errors import AvvpError
from avvp.io import atomic_path
from avvp.output import publish, remove_staged
from avvp.precision import resolve_mixed_precision
from avvp.pretrain.config import PATH_FIELDS, PretrainConfig
from avvp.pretrain.data import CorpusRows, PretrainCorpus, feature_statistics, keep_batch, load_corpus, split_rows
from avvp.pretrain.evaluation import encode_for_pretraining, evaluate
from avvp.pretrain.losses import LossSettings, pretrain_losses, release_variant
from avvp.pretrain.modeling import (
    ENCODER_FIELDS,
    AVEncoderConfig,
    AVEncoderModel,
    load_encoder,
    save_encoder,
    weights_checksum,
)
from avvp.runs import (
    CheckpointError,
    OpenRun,
    RunChecks,
    RunFlags,
    checkpoint_dirs,
    open_run,
    read_checkpoint,
    save_checkpoint,
    staging_dir,
    write_json,
    writing,
)

CONFIG_FILE = "pretrain_config.json"
SELECTED = "selected"
"""Folder of the run holding the encoder of the best epoch so far by `cfg.select` (the final one at the end)."""
LOG_FILE = "log.jsonl"


@dataclass
class TrainProgress:
    """Where the run stands; saved (as JSON) in every checkpoint, so --resume continues from it."""

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
    selected: dict | None = None
    """Figures of the epoch whose encoder is kept (`cfg.select`), saved in SELECTED/."""
    log_loss: dict = field(default_factory=dict)
    """Sum of each loss term over the batches since the last line of log.jsonl (this process)."""
    log_batches: int = 0

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
        **{name: getattr(cfg, name) for name in ENCODER_FIELDS},
    )


def initial_encoder(cfg: PretrainConfig, corpus: PretrainCorpus, train_rows: np.ndarray) -> AVEncoderModel:
    """The encoder a run starts from: seeded weights and the standardisation statistics of its training videos.

    Seeds every generator (`set_seed`); `avvp-pretrain init` writes exactly this encoder as the untrained control.
    """
    set_seed(cfg.seed)
    model = AVEncoderModel(encoder_config(cfg, corpus.widths))
    model.set_input_statistics(feature_statistics(corpus, train_rows))
    return model


def run_checks(cfg: PretrainConfig) -> RunChecks:
    """What `avvp.runs.check_run_dir` (through `open_run`) checks a pretraining run folder against: its inputs,
    and for --resume the saved settings (an untrained control is no run to resume)."""

    def saved_settings(path: Path) -> dict:
        saved = PretrainConfig.load(path)
        if saved.untrained:
            raise AvvpError(
                f"{path.parent}: an untrained control written by `avvp-pretrain init`; there is no run to resume "
                "(train into another --out without --resume)"
            )
        return saved.to_dict()

    return RunChecks(
        inputs={"features": cfg.features, "labels": cfg.labels},  # no labels: the untrained control
        settings=cfg.to_dict(),
        load_saved=saved_settings,
        path_fields=PATH_FIELDS,
    )


def make_accelerator(cfg: PretrainConfig, out: Path) -> Accelerator:
    return Accelerator(
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.grad_accum,
        project_dir=str(out),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )


def parameter_group_names(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters with and without weight decay, in the optimizer's order (`parameter_groups`)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "embeddings" not in name else no_decay).append(name)
    return decay, no_decay


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not biases, LayerNorm weights, embeddings of types/positions)."""
    parameters = dict(model.named_parameters())
    decay, no_decay = parameter_group_names(model)
    return [
        {"params": [parameters[name] for name in decay], "weight_decay": weight_decay},
        {"params": [parameters[name] for name in no_decay], "weight_decay": 0.0},
    ]


def final_optimizer_moments(
    run_dir: str | os.PathLike, encoder: torch.nn.Module
) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """The optimizer state (Adam's step, exp_avg, exp_avg_sq) a pretraining run ended with, by parameter name of
    `encoder` (an encoder of the run's architecture), and a line saying where it came from; ({}, why not) where the
    run saved none (an untrained control, an imported encoder, a folder that is no pretraining run)."""
    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    if not config.is_file():
        return {}, f"none: {run_dir} is no pretraining run (no {CONFIG_FILE}); the optimizer starts fresh"
    cfg = PretrainConfig.load(config)
    checkpoints = checkpoint_dirs(run_dir)
    if cfg.untrained:
        return {}, f"none: {run_dir} saved no optimizer state (an untrained control); the optimizer starts fresh"
    if not checkpoints:
        return {}, (f"none: {run_dir} kept no checkpoint (removed at its end: pretrain with --keep-checkpoints or "
                    "--recipe release to keep the last); the optimizer starts fresh")  # fmt: skip
    try:
        checkpoint = read_checkpoint(checkpoints[0], 0, encoder.state_dict())
    except CheckpointError as error:
        raise AvvpError(f"{run_dir}: cannot read the pretraining optimizer state ({error})") from None
    if checkpoint.progress.get("epoch") != cfg.epochs and cfg.max_steps is None:
        epoch = checkpoint.progress.get("epoch")
        raise AvvpError(f"{checkpoints[0]}: the pretraining run did not finish (epoch {epoch} of {cfg.epochs}); "
                        "its optimizer state is not the final one")  # fmt: skip
    names = [name for group in parameter_group_names(encoder) for name in group]
    indices = [index for group in checkpoint.optimizer["param_groups"] for index in group["params"]]
    if len(indices) != len(names):
        raise AvvpError(f"{checkpoints[0]}: its optimizer holds {len(indices)} parameters, the encoder {len(names)}")
    state = checkpoint.optimizer["state"]
    moments = {name: dict(state[index]) for name, index in zip(names, indices, strict=True) if index in state}
    step = checkpoint.progress.get("step")
    return moments, f"{checkpoints[0]}: the Adam moments at the end of pretraining (step {step}), continued"


def gather_keeping_local_grad(accelerator: Accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor concatenated over all processes; the local slice keeps its gradient (the others have none)."""
    if accelerator.num_processes == 1:
        return tensor
    everything = accelerator.gather(tensor.detach().contiguous())
    if not tensor.requires_grad:
        return everything
    start = accelerator.process_index * tensor.shape[0]
    return torch.cat([everything[:start], tensor, everything[start + tensor.shape[0] :]])


PAIR_NAMES = {"audio": "a-a", "visual": "v-v", "cross": "a-v"}
"""Short names of the pair types in the printed lines: audio-audio, visual-visual, audio-visual."""


def _held_out(figures: dict) -> str:
    """The held-out loss and AUC (the mean the run selects on, then per pair type) in under 60 columns."""
    aucs = ", ".join(f"{short} {figures[f'val_auc_{kind}']:.3f}" for kind, short in PAIR_NAMES.items())
    return f"held-out loss {figures['val_loss']:.4f}  AUC {figures['val_auc']:.3f} ({aucs})"


def _epoch_line(figures: dict, epochs: int) -> str:
    """One line of at most 100 columns; every figure of the epoch is in log.jsonl and metrics.json."""
    line = f"epoch {figures['epoch']}/{epochs}  loss {figures['train_loss']:.4f}"
    return f"{line}  {_held_out(figures)}" if "val_auc" in figures else line


def _legend(cfg: PretrainConfig) -> str:
    """What the epoch lines print, once at the start of a run."""
    terms = {"hinge": "avg" + (" + in_batch_negative" if cfg.in_batch_negatives else ""), "infonce": "infonce"}
    return f"loss = {terms[cfg.objective]} (train mean); AUC: held-out grounded vs other pairs, higher is better"


@dataclass
class PretrainRun:
    """What the steps of the loop share: the prepared objects and where the run stands."""

    cfg: PretrainConfig
    out: Path
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: DataLoader
    val_loader: DataLoader | None
    total_updates: int
    progress: TrainProgress
    losses: LossSettings
    """The loss terms' settings, from `cfg`."""

    def save(self) -> None:
        save_checkpoint(
            self.out, self.accelerator, self.model, self.optimizer, self.scheduler, self.progress.state_dict()
        )


def train(
    cfg: PretrainConfig, *, resume: bool = False, overwrite: bool = False, keep_checkpoints: bool = False
) -> Path:
    """Pretrain the encoder on cfg.features with the AVG labels of cfg.labels; returns the run directory.

    `resume`, `overwrite`, `keep_checkpoints`: the run flags (`avvp.runs.RunFlags`).
    """
    flags = RunFlags(resume, overwrite, keep_checkpoints)
    corpus = load_corpus(cfg.features, cfg.labels)
    train_rows, val_rows = split_rows(len(corpus), cfg.val_fraction, cfg.seed)
    with open_run(cfg.out, CONFIG_FILE, flags, run_checks(cfg)) as opened:  # every process checks, before any writes
        if opened.finished:
            return opened.out
        out = opened.out
        run = _set_up(cfg, opened, corpus, train_rows, val_rows)
        accelerator = run.accelerator
        with progress_bar(disable=not accelerator.is_main_process) as bar:
            task = bar.add_task(f"pretrain {cfg.variant}", total=run.total_updates, completed=run.progress.step)
            # An epoch whose batches all ran before a kill (batches_done > 0) still needs its end.
            while run.progress.epoch < cfg.epochs and (
                run.progress.step < run.total_updates or run.progress.batches_done
            ):
                _train_epoch(run, lambda: bar.update(task, completed=run.progress.step))
                _end_epoch(run, bar.console.print)
        encoder = accelerator.unwrap_model(run.model)
        if cfg.select != "last" and run.progress.selected is not None:
            encoder.load_state_dict(load_encoder(out / SELECTED).state_dict())  # the selected epoch's weights
        checksums = gather_object([weights_checksum(encoder)])
        if accelerator.is_main_process:
            finish_run_dir(cfg, out, encoder, run.progress, checksums, accelerator.num_processes)
            kept = run.progress.selected if cfg.select != "last" else (run.progress.epochs or [None])[-1]
            accelerator.print(held_out_summary(run.progress.untrained, kept))
        # The release recipe's end-to-end phase continues the final optimizer state: its last checkpoint stays.
        opened.close(accelerator, keep_last=cfg.recipe == "release")
        accelerator.wait_for_everyone()
        settle_collectives(accelerator)  # before the process group goes (a teardown hang otherwise, at random)
        accelerator.end_training()
    return out


def _set_up(cfg: PretrainConfig, opened: OpenRun, corpus, train_rows: np.ndarray, val_rows: np.ndarray) -> PretrainRun:
    """The accelerator, model, optimizer, loaders and schedule; a fresh run folder, or the resumed state."""
    out = opened.out
    accelerator = make_accelerator(cfg, out)
    model = initial_encoder(cfg, corpus, train_rows)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
    opened.start(accelerator, cfg.to_dict())
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
    warmup_steps = int(cfg.warmup * total_updates) * accelerator.num_processes
    if cfg.schedule == "constant":
        scheduler = get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps)
    else:
        scheduler = get_linear_schedule_with_warmup(
            optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_updates * accelerator.num_processes
        )
    scheduler = accelerator.prepare(scheduler)
    run = PretrainRun(
        cfg,
        out,
        accelerator,
        model,
        optimizer,
        scheduler,
        train_loader,
        val_loader,
        total_updates,
        TrainProgress(),
        LossSettings.from_config(cfg),
    )
    if opened.flags.resume:
        _resume(run, opened)
    if val_loader is not None and run.progress.untrained is None:
        run.progress.untrained = evaluate(model, val_loader, cfg, accelerator)
        accelerator.print(_legend(cfg))
        accelerator.print(f"untrained encoder  {_held_out(run.progress.untrained)}")
    return run


def _resume(run: PretrainRun, opened: OpenRun) -> None:
    """Continue from the newest readable checkpoint; log.jsonl keeps only the lines up to it."""
    progress_like = run.progress.state_dict()
    checkpoint = opened.restore(run.accelerator, run.model, run.optimizer, run.scheduler, progress_like, first="step")
    if checkpoint is not None:
        run.progress.load_state_dict(checkpoint.progress)
        run.accelerator.print(f"resumed from {checkpoint.path} (epoch {run.progress.epoch}, step {run.progress.step})")
    if run.accelerator.is_main_process:
        _truncate_log(run.out / LOG_FILE, run.progress.step)


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log lines written after the checkpoint a run resumes from (and a line cut by a kill)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", math.inf) <= step:
            kept.append(line + "\n")
    with writing(path), atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("".join(kept), encoding="utf-8")


def _train_step(run: PretrainRun, batch: dict) -> None:
    """Forward, AVG losses, backward and (at the end of an accumulation) the optimizer step, for one batch."""
    cfg, accelerator, model = run.cfg, run.accelerator, run.model
    with accelerator.accumulate(model):
        output = encode_for_pretraining(model, batch, cfg)
        variant, anchor = cfg.variant, None
        if cfg.pair_sampling == "release":  # one random anchor per batch; multi alternates pairs by epoch
            variant = release_variant(cfg.variant, run.progress.epoch)
            anchor = int(torch.randint(NUM_SNIPPETS, (1,)))
        terms = pretrain_losses(
            output.audio,
            output.visual,
            batch["grounded"],
            batch["video_index"],
            variant,
            run.losses,
            gather=lambda tensor: gather_keeping_local_grad(accelerator, tensor),
            anchor=anchor,
        )
        loss = sum(terms.values())
        accelerator.backward(loss)
        if accelerator.sync_gradients and cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
    progress = run.progress
    for name, value in {"loss": loss, **terms}.items():
        progress.epoch_loss[name] = progress.epoch_loss.get(name, 0.0) + value.item()
        progress.log_loss[name] = progress.log_loss.get(name, 0.0) + value.item()
    progress.epoch_batches += 1
    progress.log_batches += 1
    progress.batches_done += 1
    progress.videos += len(batch["video_index"]) * accelerator.num_processes


def _log(run: PretrainRun) -> None:
    """One line of log.jsonl: the mean of each loss term (over every process) since the last line."""
    progress, accelerator = run.progress, run.accelerator
    sums = progress.log_loss
    means = accelerator.reduce(
        torch.tensor([sums[name] / progress.log_batches for name in sums], device=accelerator.device), "mean"
    )
    record = {"step": progress.step, "epoch": progress.epoch + 1, "lr": run.scheduler.get_last_lr()[0]}
    record.update({f"train_{name}": float(value) for name, value in zip(sums, means, strict=True)})
    if accelerator.is_main_process:
        with writing(run.out / LOG_FILE), open(run.out / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    progress.log_loss, progress.log_batches = {}, 0


def _train_epoch(run: PretrainRun, on_step) -> None:
    """The epoch's remaining batches (all of them, or those after the checkpoint resumed from)."""
    cfg, progress = run.cfg, run.progress
    if progress.step >= run.total_updates:  # resumed after the last step, before the epoch's end
        return
    run.train_loader.set_epoch(progress.epoch)
    loader = run.train_loader
    if progress.batches_done:
        loader = run.accelerator.skip_first_batches(run.train_loader, progress.batches_done)
    tick = time.perf_counter()
    for batch in loader:
        _train_step(run, batch)
        now = time.perf_counter()
        progress.train_seconds += now - tick
        tick = now
        if not run.accelerator.sync_gradients:
            continue
        progress.step += 1
        on_step()
        if progress.step % cfg.log_every == 0:
            _log(run)
        if progress.step % cfg.save_every == 0:
            run.save()
            tick = time.perf_counter()
        if progress.step >= run.total_updates:
            break


def _end_epoch(run: PretrainRun, show) -> None:
    """The epoch's figures (mean training losses over every process, validation), shown, and a checkpoint."""
    cfg, progress, accelerator = run.cfg, run.progress, run.accelerator
    progress.epoch += 1
    progress.batches_done = 0
    epoch_means = [total / progress.epoch_batches for total in progress.epoch_loss.values()]
    means = accelerator.reduce(torch.tensor(epoch_means, device=accelerator.device), "mean")
    figures = {"epoch": progress.epoch, "step": progress.step}
    figures.update({f"train_{k}": float(v) for k, v in zip(progress.epoch_loss, means, strict=True)})
    if run.val_loader is not None:
        figures.update(evaluate(run.model, run.val_loader, cfg, accelerator))
    figures["lr"] = run.scheduler.get_last_lr()[0]
    progress.epochs.append(figures)
    progress.epoch_loss, progress.epoch_batches = {}, 0
    if accelerator.is_main_process:
        show(_epoch_line(figures, cfg.epochs))
        with writing(run.out / LOG_FILE), open(run.out / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps({**figures, "end_of_epoch": True}) + "\n")
    if cfg.select != "last" and better(cfg.select, figures, progress.selected):
        progress.selected = figures
        if accelerator.is_main_process:  # before the checkpoint that records it, so a resumed run finds it
            with writing(run.out), staging_dir(run.out, f".{SELECTED}.") as tmp:
                save_encoder(accelerator.unwrap_model(run.model), tmp)
                publish(tmp, run.out / SELECTED)
        accelerator.wait_for_everyone()
    run.save()


def better(select: str, figures: dict, best: dict | None) -> bool:
    """Whether this epoch's held-out figures beat the best so far: higher `val_auc`, or lower `val_loss`."""
    if best is None:
        return True
    if select == "auc":
        return figures["val_auc"] > best["val_auc"]
    return figures["val_loss"] < best["val_loss"]


def held_out_summary(untrained: dict | None, kept: dict | None) -> str:
    """Two lines: held-out AUC per pair type and within-video spread, untrained -> the encoder kept."""
    if not untrained or not kept:
        return "no held-out videos: no AUC"
    aucs = ", ".join(
        f"{short} {untrained[f'val_auc_{kind}']:.3f} -> {kept[f'val_auc_{kind}']:.3f}"
        for kind, short in PAIR_NAMES.items()
    )
    spreads = ", ".join(
        f"{kind} {untrained[f'val_spread_{kind}']:.3f} -> {kept[f'val_spread_{kind}']:.3f}"
        for kind in ("audio", "visual")
    )
    return (
        f"held-out (untrained -> epoch {kept['epoch']}): AUC {aucs}\n"
        f"held-out similarity spread in a video (-> epoch {kept['epoch']}): {spreads}"
    )


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
        "selected": progress.selected if cfg.select != "last" else (progress.epochs[-1] if progress.epochs else None),
        "process_weight_checksums": checksums,
        "config": cfg.to_dict(),
    }
    write_json(out / "metrics.json", metrics)
    with writing(out), staging_dir(out, ".encoder.") as tmp:
        save_encoder(encoder, tmp)
        for written in sorted(tmp.iterdir()):  # config.json before model.safetensors
            publish(written, out / written.name)
    remove_staged(out / SELECTED)  # now the run's own encoder
