"""The finetuning loop: `train(cfg) -> run directory`.

One Accelerator (CPU, one GPU or several; bf16 on GPUs that support it). Whole splits live in memory and
are served in batches of a seeded permutation. After every epoch: the ten validation numbers and a saved
Accelerate state (model, optimizer, scheduler, RNG, epoch, history, best weights) in `RUN/state`, so
`resume=True` continues an interrupted run and ends exactly where an uninterrupted one would (on CPU). The
epoch with the best validation segment-level Type@AV is kept; the test split is scored once with it.

Run directory: config.json, model.safetensors, metrics.json, pred_audio.csv, pred_visual.csv (test
predictions, LLP eval format) and state/.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch import nn

from avvp.annotations import SPLIT_FILES, write_events
from avvp.console import progress
from avvp.distributed import settle_collectives
from avvp.errors import AvvpError, ConfigError
from avvp.io import atomic_path, check_writable
from avvp.metrics import SCORE_TITLES
from avvp.precision import resolve_mixed_precision
from finetune.config import FinetuneConfig
from finetune.data import check_streams, load_split_data, make_loader, train_subset, with_modality_labels
from finetune.evaluate import EVAL_BATCH_SIZE, predict, score
from finetune.losses import parser_loss
from finetune.models import STREAMS, FinetuneModel, build_model
from finetune.models.discriminator import reversal_strength

STATE_DIR = "state"
BEST_WEIGHTS = "best_model.safetensors"
RUN_FILES = ("config.json", "model.safetensors", "metrics.json", "pred_audio.csv", "pred_visual.csv")
SELECTION = ("segment", "type_av")
"""Model selection: validation segment-level Type@AV."""
RUN_CONTROL_FIELDS = ("input_widths",)
"""Config fields filled by the run itself, ignored when checking that --resume repeats the saved settings."""
PATH_FIELDS = ("features", "annotations", "out", "frontend", "labels")
"""Config fields naming files: compared as resolved paths by --resume."""


@dataclass
class TrainingState:
    """What the loop needs beyond model/optimizer/scheduler/RNG to continue: saved with the Accelerate state."""

    epoch: int = 0
    """Epochs completed."""
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -math.inf

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _check_run_dir(cfg: FinetuneConfig, resume: bool, overwrite: bool) -> Path:
    """Check the run directory against resume/overwrite before any work; creates nothing."""
    if not cfg.out:
        raise ConfigError("no run directory given (--out)")
    out = Path(cfg.out)
    check_writable(out, overwrite=True, directory=True)  # only a file on the way to it; existing runs below
    if resume:
        if not (out / "config.json").is_file():
            raise AvvpError(f"{out}: nothing to resume (no config.json); start the run without --resume")
        if not (out / STATE_DIR).is_dir():
            raise AvvpError(
                f"{out}: nothing to resume (no {STATE_DIR}/: the run stopped before its first epoch was saved); "
                "start it again with --overwrite"
            )
        saved = asdict(FinetuneConfig.load(out / "config.json"))
        wanted = asdict(cfg)
        for key in PATH_FIELDS:  # the same file named another way is no change
            if saved[key] and wanted[key] and Path(saved[key]).resolve() == Path(wanted[key]).resolve():
                saved[key] = wanted[key]
        changed = [
            f"{key} {wanted[key]!r} (saved {saved[key]!r})"
            for key in wanted
            if key not in RUN_CONTROL_FIELDS and wanted[key] != saved[key]
        ]
        if changed:
            raise ConfigError(f"{out}/config.json: --resume needs the saved settings; changed: {', '.join(changed)}")
    elif out.exists():
        if not overwrite:
            raise AvvpError(f"{out}: already exists; pass --overwrite to replace it (or --resume to continue it)")
        if not out.is_dir():
            raise AvvpError(f"{out}: exists and is not a directory")
    return out


def _start_run_dir(out: Path, cfg: FinetuneConfig) -> None:
    """Create the run directory with its config.json, dropping the files of an earlier run there (--overwrite)."""
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")


def _param_groups(model: FinetuneModel, cfg: FinetuneConfig) -> list[dict]:
    groups = [{"params": [p for p in model.parser.parameters() if p.requires_grad], "lr": cfg.lr}]
    if model.frontend is not None:
        frontend = [p for p in model.frontend.parameters() if p.requires_grad]
        if frontend:
            groups.append({"params": frontend, "lr": cfg.frontend_lr or cfg.lr / 10})
    return groups


def _save_checkpoint(accelerator: Accelerator, out: Path, best_weights: dict[str, torch.Tensor]) -> None:
    """Save the Accelerate state plus the best weights into a fresh folder, then swap it in for `state/`."""
    tmp, state, old = out / f".{STATE_DIR}.tmp", out / STATE_DIR, out / f".{STATE_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        save_file(best_weights, str(tmp / BEST_WEIGHTS))
        shutil.rmtree(old, ignore_errors=True)
        if state.exists():
            state.rename(old)
        tmp.rename(state)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


def _format_epoch(epoch: int, cfg: FinetuneConfig, train_terms: dict, val: dict, state: TrainingState) -> str:
    terms = "  ".join(f"{name} {value:.4f}" for name, value in train_terms.items())
    level, name = SELECTION
    return (
        f"epoch {epoch}/{cfg.epochs}  {terms}  val {level} {SCORE_TITLES[name]} {val[level][name]:.2f}"
        f"  (best {state.best_score:.2f} at epoch {state.best_epoch})"
    )


def train(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    frontend: nn.Module | None = None,
    stop_after_epoch: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Train a parser as configured and write its run directory; returns the directory.

    `frontend`: an optional module in front of the parser (see `FinetuneModel`), trained with `frontend_lr`;
    it must have an `output_widths` dict (the parser's input widths); record its origin in `cfg.frontend`.
    `stop_after_epoch`: stop as if interrupted once that epoch's state is saved (for testing `resume`).
    """
    if (frontend is None) != (not cfg.frontend):
        raise ConfigError("pass a frontend module exactly when cfg.frontend records where it came from")
    out = _check_run_dir(cfg, resume, overwrite)
    check_streams(cfg.features, STREAMS, cfg.model)
    splits = {name: load_split_data(cfg.features, cfg.annotations, name, STREAMS) for name in ("train", "val", "test")}
    if cfg.labels:
        splits["train"] = with_modality_labels(
            splits["train"], cfg.labels, Path(cfg.annotations) / SPLIT_FILES["train"]
        )
    if cfg.train_fraction < 1:
        splits["train"] = train_subset(splits["train"], cfg.train_fraction, cfg.seed)
    widths = dict(frontend.output_widths) if frontend is not None else splits["train"].widths
    if resume and (saved := FinetuneConfig.load(out / "config.json").input_widths) != widths:
        raise ConfigError(f"{cfg.features}: input widths {widths} differ from those of the run to resume, {saved}")
    cfg = replace(cfg, input_widths=widths)

    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision), step_scheduler_with_optimizer=False
    )
    set_seed(cfg.seed)
    if accelerator.device.type != "cpu":  # the whole split on the accelerator: batches are cut there, no copies
        splits = {name: data.to(accelerator.device) for name, data in splits.items()}

    model = build_model(cfg, frontend)
    optimizer = torch.optim.Adam(_param_groups(model, cfg))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    if accelerator.is_main_process and not resume:  # only now: a run replaced by --overwrite goes when this one starts
        _start_run_dir(out, cfg)
    accelerator.wait_for_everyone()
    train_loader = make_loader(splits["train"], cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_loader = make_loader(splits["val"], EVAL_BATCH_SIZE, shuffle=False)
    test_loader = make_loader(splits["test"], EVAL_BATCH_SIZE, shuffle=False)
    model, optimizer, scheduler, train_loader, val_loader, test_loader = accelerator.prepare(
        model, optimizer, scheduler, train_loader, val_loader, test_loader
    )
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    best_weights = _cpu_copy(accelerator.unwrap_model(model))
    if resume:
        try:
            accelerator.load_state(str(out / STATE_DIR))
            best_weights = load_file(str(out / STATE_DIR / BEST_WEIGHTS))
        except Exception as error:  # torch, safetensors and Accelerate each raise their own kinds for a bad file
            raise AvvpError(
                f"{out / STATE_DIR}: damaged or incomplete saved state ({type(error).__name__}: {_one_line(error)}); "
                "start the run again with --overwrite"
            ) from None
        accelerator.print(f"resuming {out} after epoch {state.epoch}/{cfg.epochs}")

    loss_kwargs = dict(
        lambda_guided=cfg.lambda_guided,
        lambda_adv=cfg.lambda_adv,
        audio_smoothing=cfg.audio_smoothing,
        visual_smoothing=cfg.visual_smoothing,
    )
    steps = len(train_loader)
    with progress(disable=not (show_progress and accelerator.is_main_process)) as bar:
        task = bar.add_task("train", total=steps * cfg.epochs, completed=steps * state.epoch)
        for epoch in range(state.epoch, cfg.epochs):
            bar.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}")
            train_loader.set_epoch(epoch)
            model.train()
            sums: dict[str, torch.Tensor] = {}
            for step, batch in enumerate(train_loader):
                progress_done = ((epoch + cfg.reversal_epoch_offset) * steps + step) / (cfg.epochs * steps)
                strength = reversal_strength(progress_done)
                output = model({name: batch[name] for name in STREAMS}, adv_strength=strength)
                terms = parser_loss(
                    output, batch["labels"], modality_labels=batch.get("modality_labels"), **loss_kwargs
                )
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(terms.backward)
                optimizer.step()
                for name, value in terms.logged().items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.advance(task)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            means = accelerator.reduce(torch.stack(list(sums.values())) / steps, reduction="mean")
            train_terms = {name: float(v) for name, v in zip(sums, means, strict=True)}

            val = score(predict(model, val_loader, accelerator, splits["val"].video_ids), splits["val"].dense)
            selected = val[SELECTION[0]][SELECTION[1]]
            if selected > state.best_score or (cfg.select_ties_later and selected == state.best_score):
                state.best_epoch, state.best_score = epoch + 1, selected
                best_weights = _cpu_copy(accelerator.unwrap_model(model))
            state.history.append(
                {"epoch": epoch + 1, "lr": lr, "adv_strength": strength, "train": train_terms, "val": val}
            )
            state.epoch = epoch + 1
            _save_checkpoint(accelerator, out, best_weights)
            if accelerator.is_main_process:
                bar.console.print(_format_epoch(epoch + 1, cfg, train_terms, val, state), soft_wrap=True)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                return out

    accelerator.unwrap_model(model).load_state_dict(best_weights)
    test_predictions = predict(model, test_loader, accelerator, splits["test"].video_ids)
    test = score(test_predictions, splits["test"].dense)
    if accelerator.is_main_process:
        _write_results(out, best_weights, state, test, test_predictions)
    accelerator.wait_for_everyone()
    settle_collectives(accelerator)  # before the process group goes (a teardown hang otherwise, at random)
    return out


def _write_results(out: Path, weights: dict[str, torch.Tensor], state: TrainingState, test: dict, predictions) -> None:
    """The final files, each written atomically; metrics.json last, so its presence means a finished run."""
    with atomic_path(out / "model.safetensors", overwrite=True) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    audio, visual = predictions.gated()
    write_events(out / "pred_audio.csv", predictions.video_ids, audio, overwrite=True)
    write_events(out / "pred_visual.csv", predictions.video_ids, visual, overwrite=True)
    level, name = SELECTION
    metrics = {
        "selection": f"validation {level}-level {SCORE_TITLES[name]}",
        "best_epoch": state.best_epoch,
        "val": state.history[state.best_epoch - 1]["val"],
        "test": test,
        "test_videos": len(predictions.video_ids),
        "epochs": state.history,
    }
    with atomic_path(out / "metrics.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def _one_line(error: Exception, limit: int = 200) -> str:
    return " ".join(str(error).split())[:limit]
