"""The finetuning loop: `train(cfg) -> run directory`.

One Accelerator (CPU, one GPU or several; bf16 on GPUs that support it). Whole splits live in memory and
are served in batches of a seeded permutation. After every epoch: the ten validation numbers and a checkpoint
(model, optimizer, scheduler, RNG, epoch, history, best weights; safetensors and JSON, `avvp.runs`) in
`RUN/checkpoints/`, so `resume=True` continues an interrupted run and ends exactly where an uninterrupted one
would (on CPU). The epoch with the best validation segment-level Type@AV is kept; the test split is scored once
with it (`--no-eval`: the weak labels alone, no validation, the last epoch kept, no test scores). The loop's
named steps: `_set_up`, `_train_step` (one batch), `_train_epoch`, `_end_epoch` (schedule, validation,
selection, checkpoint), `_format_epoch` (the log line) and `_finish` (the test split, the results).

Run directory: config.json, model.safetensors, metrics.json, pred_audio.csv, pred_visual.csv (test
predictions, LLP eval format) and checkpoints/.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from avvp.annotations import SPLIT_FILES, write_events
from avvp.console import progress
from avvp.distributed import settle_collectives
from avvp.errors import ConfigError
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.data import (
    SplitData,
    check_streams,
    load_split_data,
    make_loader,
    train_subset,
    with_modality_labels,
)
from avvp.finetune.encoder import continue_optimizer, pretraining_optimizer
from avvp.finetune.evaluate import EVAL_BATCH_SIZE, predict, score
from avvp.finetune.losses import LossTerms, parser_loss
from avvp.finetune.models import STREAMS, FinetuneModel, build_model
from avvp.finetune.models.discriminator import reversal_strength
from avvp.io import atomic_path
from avvp.metrics import SCORE_TITLES
from avvp.precision import resolve_mixed_precision
from avvp.runs import OpenRun, RunChecks, RunFlags, open_run, save_checkpoint, write_json, writing

CONFIG_FILE = "config.json"
BEST_WEIGHTS = "best_model"
"""The best weights so far, saved with every checkpoint (`best_model.safetensors`)."""
SELECTION = ("segment", "type_av")
"""Model selection: validation segment-level Type@AV."""
RUN_CONTROL_FIELDS = ("input_widths", "left_out")
"""Config fields filled by the run itself, ignored when checking that --resume repeats the saved settings."""
PATH_FIELDS = ("features", "annotations", "out", "frontend", "labels")
"""Config fields naming files: compared as resolved paths by --resume."""


@dataclass
class TrainingState:
    """What the loop needs beyond model/optimizer/scheduler/RNG to continue: saved (as JSON) with each checkpoint."""

    epoch: int = 0
    """Epochs completed."""
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -math.inf


def _param_groups(model: FinetuneModel, cfg: FinetuneConfig) -> list[dict]:
    groups = [{"params": [p for p in model.parser.parameters() if p.requires_grad], "lr": cfg.lr}]
    if model.frontend is not None:
        encoder_params = [p for p in model.frontend.parameters() if p.requires_grad]
        if encoder_params:
            groups.append({"params": encoder_params, "lr": cfg.frontend_lr or cfg.lr / 10})
    return groups


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


def loss_formula(cfg: FinetuneConfig, adversarial: bool) -> str:
    """What the printed `loss` sums, e.g. `loss = wsl + 0.6 g - 0.4 ad` (ad is subtracted: the loss can go below 0)."""
    formula = f"loss = wsl + {cfg.lambda_guided:g} g"
    return formula + (f" - {cfg.lambda_adv:g} ad" if adversarial else "")


def _format_epoch(epoch: int, cfg: FinetuneConfig, train_terms: dict, val: dict | None, state: TrainingState) -> str:
    """One line of at most 100 columns; every term and score of the epoch is in metrics.json (`epochs`)."""
    terms = f"loss {train_terms['loss']:.4f} = wsl {train_terms['wsl']:.4f} + {cfg.lambda_guided:g} g "
    terms += f"{train_terms['guided']:.4f}"
    if "adv" in train_terms:
        terms += f" - {cfg.lambda_adv:g} ad {train_terms['adv']:.4f}"
    if val is None:
        return f"epoch {epoch}/{cfg.epochs}  {terms}  (--no-eval)"
    level, name = SELECTION
    best = f"(best {state.best_score:.2f} @{state.best_epoch})"
    return f"epoch {epoch}/{cfg.epochs}  {terms}  val {val[level][name]:.2f} {best}"


@dataclass
class FinetuneRun:
    """What the steps of the loop share: the prepared objects, the data and where the run stands."""

    cfg: FinetuneConfig
    out: Path
    accelerator: Accelerator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loaders: dict[str, DataLoader]
    splits: dict[str, SplitData]
    state: TrainingState
    best_weights: dict[str, torch.Tensor]

    def save(self) -> None:
        tensors = {BEST_WEIGHTS: self.best_weights}
        save_checkpoint(
            self.out, self.accelerator, self.model, self.optimizer, self.scheduler, asdict(self.state), tensors
        )


def train(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    encoder: nn.Module | None = None,
    stop_after_epoch: int | None = None,
    show_progress: bool = True,
    keep_checkpoints: bool = False,
) -> Path:
    """Train a parser as configured and write its run directory; returns the directory.

    `encoder`: an optional module in front of the parser (the pretrained encoder with --e2e, `avvp.finetune.encoder`;
    see `FinetuneModel`), trained with `frontend_lr` (--encoder-lr); it must have an `output_widths` dict (the
    parser's input widths); record its origin in `cfg.frontend` (--encoder).
    `stop_after_epoch`: stop as if interrupted once that epoch's state is saved (for testing `resume`).
    `resume`, `overwrite`, `keep_checkpoints`: the run flags (`avvp.runs.RunFlags`).
    """
    if (encoder is None) != (not cfg.frontend):
        raise ConfigError("pass an encoder module exactly when cfg.frontend records where it came from")
    checks = RunChecks(
        inputs={"features": cfg.features, "annotations": cfg.annotations},
        settings=asdict(cfg),
        load_saved=lambda path: asdict(FinetuneConfig.load(path)),
        path_fields=PATH_FIELDS,
        ignore=RUN_CONTROL_FIELDS,
    )
    with open_run(cfg.out, CONFIG_FILE, RunFlags(resume, overwrite, keep_checkpoints), checks) as opened:
        if opened.finished:
            return opened.out
        out = opened.out
        run = _set_up(cfg, opened, encoder)
        main = run.accelerator.is_main_process
        steps = len(run.loaders["train"])
        with progress(disable=not (show_progress and main)) as bar:
            task = bar.add_task("train", total=steps * cfg.epochs, completed=steps * run.state.epoch)
            start_epoch = run.state.epoch
            for epoch in range(start_epoch, cfg.epochs):
                bar.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}")
                train_terms, strength = _train_epoch(run, epoch, lambda: bar.advance(task))
                val = _end_epoch(run, epoch, train_terms, strength)
                if main:
                    if epoch == start_epoch:  # the first line says what the loss sums and what val is
                        bar.console.print(
                            f"{loss_formula(cfg, 'adv' in train_terms)}; val: validation segment "
                            f"{SCORE_TITLES[SELECTION[1]]} F1 %, higher is better (best @epoch)",
                            soft_wrap=True,
                        )
                    bar.console.print(_format_epoch(epoch + 1, cfg, train_terms, val, run.state), soft_wrap=True)
                if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                    return out
        _finish(run)
        opened.close(run.accelerator)
    return out


def _set_up(cfg: FinetuneConfig, opened: OpenRun, encoder: nn.Module | None) -> FinetuneRun:
    """The data, accelerator, model, optimizer, schedule and loaders; a fresh run folder, or the resumed state."""
    out, resume = opened.out, opened.flags.resume
    check_streams(cfg.features, STREAMS, cfg.model)
    names = ("train", "val", "test") if cfg.evaluation else ("train",)  # --no-eval: the weak labels alone
    splits = {name: load_split_data(cfg.features, cfg.annotations, name, STREAMS, cfg.missing) for name in names}
    if cfg.labels:
        splits["train"] = with_modality_labels(
            splits["train"], cfg.labels, Path(cfg.annotations) / SPLIT_FILES["train"]
        )
    if cfg.train_fraction < 1:
        splits["train"] = train_subset(splits["train"], cfg.train_fraction, cfg.seed)
    widths = dict(encoder.output_widths) if encoder is not None else splits["train"].widths
    if resume and (saved := FinetuneConfig.load(out / CONFIG_FILE).input_widths) != widths:
        raise ConfigError(f"{cfg.features}: input widths {widths} differ from those of the run to resume, {saved}")
    cfg = replace(cfg, input_widths=widths, left_out={name: len(data.left_out) for name, data in splits.items()})

    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision), step_scheduler_with_optimizer=False
    )
    set_seed(cfg.seed)
    if accelerator.device.type != "cpu":  # the whole split on the accelerator: batches are cut there, no copies
        splits = {name: data.to(accelerator.device) for name, data in splits.items()}

    model = build_model(cfg, encoder)
    optimizer = torch.optim.Adam(_param_groups(model, cfg))
    if cfg.continue_pretraining_optimizer and encoder is not None and not resume:  # the release's one optimizer
        moments, _ = pretraining_optimizer(cfg.frontend, encoder.encoder)
        continue_optimizer(optimizer, encoder.encoder, moments)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    opened.start(accelerator, asdict(cfg))
    loaders = {"train": make_loader(splits["train"], cfg.batch_size, shuffle=True, seed=cfg.seed)}
    loaders.update({name: make_loader(splits[name], EVAL_BATCH_SIZE, shuffle=False) for name in names[1:]})
    model, optimizer, scheduler, *prepared = accelerator.prepare(model, optimizer, scheduler, *loaders.values())
    loaders = dict(zip(loaders, prepared, strict=True))
    best_weights = _cpu_copy(accelerator.unwrap_model(model))
    run = FinetuneRun(
        cfg, out, accelerator, model, optimizer, scheduler, loaders, splits, TrainingState(), best_weights
    )
    checkpoint = opened.restore(accelerator, model, optimizer, scheduler, asdict(TrainingState()), first="epoch")
    if checkpoint is not None:
        run.state = TrainingState(**checkpoint.progress)
        run.best_weights = checkpoint.tensors[BEST_WEIGHTS]
        accelerator.print(f"resuming {out} after epoch {run.state.epoch}/{cfg.epochs}")
    return run


def _train_step(run: FinetuneRun, batch: dict, strength: float) -> LossTerms:
    """Forward, the loss terms, backward and the optimizer step for one batch."""
    output = run.model({name: batch[name] for name in STREAMS}, adv_strength=strength)
    terms = parser_loss(output, batch["labels"], run.cfg.loss_weights(), batch.get("modality_labels"))
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(terms.backward)
    run.optimizer.step()
    return terms


def _train_epoch(run: FinetuneRun, epoch: int, advance) -> tuple[dict[str, float], float]:
    """One pass over the training split: each term's mean over the batches (and processes), the last strength."""
    cfg, loader = run.cfg, run.loaders["train"]
    steps = len(loader)
    loader.set_epoch(epoch)
    run.model.train()
    sums: dict[str, torch.Tensor] = {}
    for step, batch in enumerate(loader):
        progress_done = ((epoch + cfg.reversal_epoch_offset) * steps + step) / (cfg.epochs * steps)
        strength = reversal_strength(progress_done)
        terms = _train_step(run, batch, strength)
        for name, value in terms.logged().items():
            sums[name] = sums.get(name, 0.0) + value
        advance()
    means = run.accelerator.reduce(torch.stack(list(sums.values())) / steps, reduction="mean")
    return {name: float(v) for name, v in zip(sums, means, strict=True)}, strength


def _end_epoch(run: FinetuneRun, epoch: int, train_terms: dict[str, float], strength: float) -> dict:
    """The schedule's step, the validation scores, model selection, the epoch's history and a checkpoint."""
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    lr = run.scheduler.get_last_lr()[0]
    run.scheduler.step()
    if cfg.evaluation:
        val_ids = run.splits["val"].video_ids
        val = score(predict(run.model, run.loaders["val"], accelerator, val_ids), run.splits["val"].dense)
        selected = val[SELECTION[0]][SELECTION[1]]
    else:  # --no-eval: no validation; the last epoch is the one kept
        val, selected = None, float(epoch + 1)
    if selected > state.best_score or (cfg.select_ties_later and selected == state.best_score):
        state.best_epoch, state.best_score = epoch + 1, selected
        run.best_weights = _cpu_copy(accelerator.unwrap_model(run.model))
    state.history.append({"epoch": epoch + 1, "lr": lr, "adv_strength": strength, "train": train_terms, "val": val})
    state.epoch = epoch + 1
    run.save()
    return val


def _finish(run: FinetuneRun) -> None:
    """Score the test split once with the selected weights and write the results."""
    accelerator = run.accelerator
    accelerator.unwrap_model(run.model).load_state_dict(run.best_weights)
    test, test_predictions = None, None
    if run.cfg.evaluation:
        test_predictions = predict(run.model, run.loaders["test"], accelerator, run.splits["test"].video_ids)
        test = score(test_predictions, run.splits["test"].dense)
    if accelerator.is_main_process:
        left_out = {name: data.left_out for name, data in run.splits.items()}
        _write_results(run.out, run.best_weights, run.state, test, test_predictions, left_out)
    accelerator.wait_for_everyone()
    settle_collectives(accelerator)  # before the process group goes (a teardown hang otherwise, at random)


def _write_results(
    out: Path,
    weights: dict[str, torch.Tensor],
    state: TrainingState,
    test: dict | None,
    predictions,
    left_out: dict[str, list[str]],
) -> None:
    """The final files, each written atomically; metrics.json last, so its presence means a finished run.

    `test` and `predictions` are None under --no-eval (no test scores, no prediction files). `left_out`: per split
    read, the videos not in the store (--missing skip)."""
    with writing(out), atomic_path(out / "model.safetensors", overwrite=True) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    if predictions is not None:
        audio, visual = predictions.gated()
        with writing(out):
            write_events(out / "pred_audio.csv", predictions.video_ids, audio, overwrite=True)
            write_events(out / "pred_visual.csv", predictions.video_ids, visual, overwrite=True)
    level, name = SELECTION
    metrics = {
        "selection": f"validation {level}-level {SCORE_TITLES[name]}" if test is not None else "the last epoch",
        "best_epoch": state.best_epoch,
        "val": state.history[state.best_epoch - 1]["val"],
        "test": test,
        "test_videos": len(predictions.video_ids) if predictions is not None else 0,
        "left_out": {split: len(videos) for split, videos in left_out.items()},
        "left_out_videos": left_out,
        "epochs": state.history,
    }
    with writing(out):
        write_json(out / "metrics.json", metrics)
