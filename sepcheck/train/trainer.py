"""Training a model with one of the five methods into a run folder.

>>> from sepcheck.train import TrainConfig, TradesParams, train
>>> cfg = TrainConfig("trades", "data.npz", params=TradesParams(beta=6), eps=0.1, epochs=10)  # doctest: +SKIP
>>> result = train(cfg, "runs/trades6")                                                       # doctest: +SKIP

The configuration is :mod:`sepcheck.train.config`; the optimizer and schedule
:mod:`sepcheck.train.optim`; the epoch order and saved generator states (a resumed run
reproduces the uninterrupted one) :mod:`sepcheck.train.rng`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.devices import torch_device
from ..core.errors import DivergedError, SepcheckError, cause
from ..core.progress import bar as progress_bar
from . import distributed
from .config import TrainConfig, check_same_run, run_config
from .data import TrainData, crop_flip
from .data import load as load_data
from .losses import get_loss
from .metrics import accuracy
from .models import build_model, default_arch
from .optim import LRSchedule, make_optimizer
from .rng import deterministic_mode, epoch_batches, restore_rng, rng_state
from .runs import (
    RunDir,
    append_log,
    load_checkpoint,
    prepare_dir,
    read_json,
    save_checkpoint,
    write_json,
    write_log,
)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, its config and per-epoch records."""

    run_dir: Path
    config: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    #: the trained network (this process's copy, without the DDP wrapper)
    model: nn.Module | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.log[-1] if self.log else {}


def amp_dtype_for(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the run: None without AMP (on the CPU AMP is always off),
    bfloat16 where the GPU supports it, else float16."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    data: TrainData | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg.method`` into the run folder ``out`` and return the per-epoch records.

    ``resume`` continues from ``checkpoint_latest.pt`` when there is one (else starts);
    an existing run is never overwritten unless ``force``. ``data`` skips loading
    ``cfg.dataset`` (it must be the same data). ``on_epoch_end(record)`` runs after each
    epoch's checkpoint is written. ``echo`` receives one line per epoch (default: stderr
    when ``progress``).
    """
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    cfg = dataclasses.replace(cfg)
    cfg.validate()
    ctx = distributed.setup(cfg.device)
    try:
        with deterministic_mode(cfg.deterministic):
            return _train(cfg, Path(out), resume, force, progress, data, on_epoch_end, echo, ctx, t_wall, t_cpu)
    finally:
        distributed.cleanup(ctx)


def _train(cfg: TrainConfig, out: Path, resume: bool, force: bool, progress: bool, data: TrainData | None,
           on_epoch_end: Callable[[dict[str, Any]], None] | None, echo: Callable[[str], None] | None,
           ctx: distributed.DistContext, t_wall: float, t_cpu: float) -> TrainResult:
    """The run's phases: open the run (resume or fresh start), build the model and restore its
    state, then per epoch train, checkpoint and report; the final checkpoint last."""
    run = _open_run(cfg, out, resume, force, data, ctx)
    say = _sayer(echo, progress, ctx)
    _announce(run, say)
    parts = _build_parts(run)
    if run.ckpt is not None:
        _restore(run, parts, say)
    if ctx.is_main:
        if run.start_epoch == 0:
            run.folder.log.unlink(missing_ok=True)  # a resume that found no checkpoint starts afresh
        write_json(run.folder.config, run.config)

    net = distributed.wrap(parts.model, ctx, run.device)
    loss_fn, loss_kwargs = get_loss(cfg.method), cfg.loss_kwargs()
    for epoch in range(run.start_epoch + 1, cfg.epochs + 1):
        record = _train_epoch(run, parts, net, loss_fn, loss_kwargs, epoch, progress)
        _checkpoint_epoch(run, parts, record)
        test = f"  test acc {record['test_acc']:.4f}" if "test_acc" in record else ""
        say(f"{run.label} epoch {epoch}/{cfg.epochs}  loss {record['loss']:.4f}  train acc "
            f"{record['train_acc']:.4f}{test}  lr {record['lr']:.3g}  {record['time_s']:.1f}s")
        distributed.barrier(ctx)
        if on_epoch_end is not None:
            on_epoch_end(record)

    if ctx.is_main:
        save_checkpoint(run.folder.final, {**_model_state(run, parts, cfg.epochs), "config": run.config})
    distributed.barrier(ctx)
    return TrainResult(run.folder.path, run.config, parts.log, run.start_epoch, time.perf_counter() - t_wall,
                       time.process_time() - t_cpu, parts.model.eval())


# ----- restore: the data, the run folder and where to start ------------------------------
@dataclass
class _Run:
    """What opening the run resolves; fixed for the rest of it."""

    cfg: TrainConfig
    ctx: distributed.DistContext
    device: torch.device
    data: TrainData
    #: the dataset preset applied to ``cfg`` (None: none)
    preset: dict[str, Any] | None
    arch: str
    amp_dtype: torch.dtype | None
    #: config.json's content
    config: dict[str, Any]
    folder: RunDir
    #: the last epoch already done (0: a fresh start)
    start_epoch: int
    #: the checkpoint resumed from (None: a fresh start)
    ckpt: dict[str, Any] | None

    @property
    def label(self) -> str:
        return self.config["label"]

    @property
    def crop(self) -> dict[str, Any] | None:
        """:func:`~sepcheck.train.data.crop_flip`'s arguments (None: no augmentation)."""
        augment = self.config["augment"]
        if augment not in ("crop-flip", "crop"):
            return None
        return {"pad": 8, "flip": False} if augment == "crop" else {}


@dataclass
class _Parts:
    """This process's network and what trains it, with the per-epoch records so far."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    channels_last: bool
    log: list[dict[str, Any]]


def _open_run(cfg: TrainConfig, out: Path, resume: bool, force: bool, data: TrainData | None,
              ctx: distributed.DistContext) -> _Run:
    """Load the data, settle the preset, eps, architecture and config, prepare the run folder
    (rank 0) and, with ``resume``, read and check the latest checkpoint."""
    device = torch_device(cfg.device, ctx.local_rank)
    if cfg.batch_size % ctx.world_size != 0:
        raise SepcheckError(f"--batch-size {cfg.batch_size} is not divisible by the {ctx.world_size} processes: "
                            "give a multiple of the number of processes")
    if data is None:
        data = load_data(cfg.dataset, holdout=cfg.holdout, data_dir=cfg.data_dir, download=cfg.download,
                         verify=cfg.verify)
    preset = cfg.apply_preset(data.name, data.input_shape)
    if preset is not None:
        cfg.validate()
    cfg.resolve_eps(data.eps, data.name)
    arch = cfg.arch or default_arch(data.input_shape)
    amp_dtype = amp_dtype_for(cfg, device)
    config = run_config(cfg, data, arch, ctx.world_size, None if amp_dtype is None else str(amp_dtype).removeprefix("torch."))
    run = RunDir(out)
    start_epoch, ckpt = 0, None
    if ctx.is_main:
        run = prepare_dir(out, resume=resume, force=force)
    distributed.barrier(ctx)
    if resume and run.latest.exists():
        if run.config.exists():
            check_same_run(read_json(run.config, "run config"), config, run.path)
        ckpt = load_checkpoint(run.latest, resume=True)
        if ckpt.get("arch") != arch:
            raise SepcheckError(f"checkpoint {run.latest} holds a {ckpt.get('arch')} model, not {arch}: "
                                "use --force to start over")
        start_epoch = int(ckpt["epoch"])
        if start_epoch > cfg.epochs:
            raise SepcheckError(f"checkpoint {run.latest} is after epoch {start_epoch} but the run has --epochs "
                                f"{cfg.epochs}: give --epochs {start_epoch} or more, or --force to start over")
        config["created"] = ckpt.get("config", {}).get("created", config["created"])
    return _Run(cfg, ctx, device, data, preset, arch, amp_dtype, config, run, start_epoch, ckpt)


def _sayer(echo: Callable[[str], None] | None, progress: bool,
           ctx: distributed.DistContext) -> Callable[[str], None]:
    """Where the run's lines go: ``echo``, else stderr when ``progress``; nowhere but on rank 0."""
    if not ctx.is_main:
        return lambda s: None
    if echo is not None:
        return echo
    return (lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None)


def _announce(run: _Run, say: Callable[[str], None]) -> None:
    """The data set's notes, the preset applied and the default architecture chosen."""
    for note in run.data.notes:
        say(f"note: {note}")
    preset = run.preset
    if preset is not None:
        shown = ", ".join(f"{k}={v}" for k, v in preset["settings"].items())
        say(f"preset {preset['name']} ({preset['dataset']}, the official code's settings): {shown}"
            + (f"; overridden by flags: {', '.join(preset['overridden'])}" if preset["overridden"] else ""))
    if run.cfg.arch is None and run.start_epoch == 0:
        say(f"arch: {run.arch} (default for inputs of shape {tuple(run.data.input_shape)}; choose with --arch)")


def _build_parts(run: _Run) -> _Parts:
    """The model (initialised from ``cfg.seed``), optimizer, schedule and gradient scaler; the
    other ranks then reseed their generators (dropout, augmentation, attack starts)."""
    cfg, data, device = run.cfg, run.data, run.device
    torch.manual_seed(cfg.seed)
    model = build_model(run.arch, data.input_shape, data.n_classes).to(device)
    use_cl = cfg.channels_last and device.type == "cuda" and len(data.input_shape) == 3
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg.optimizer, model, lr=float(cfg.lr), momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    schedule = LRSchedule(cfg.schedule, float(cfg.lr), cfg.epochs, cfg.milestones)
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp_dtype == torch.float16)
    if run.ctx.rank > 0:
        torch.manual_seed(cfg.seed + 7919 * run.ctx.rank)
    return _Parts(model, optimizer, schedule, scaler, use_cl, [])


def _restore(run: _Run, parts: _Parts, say: Callable[[str], None]) -> None:
    """Load the checkpoint ``run.ckpt`` into ``parts``: the model, optimizer, schedule, scaler,
    this process's generators and the log (rewritten to log.jsonl on rank 0)."""
    ckpt, latest = run.ckpt, run.folder.latest
    assert ckpt is not None
    try:
        parts.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise SepcheckError(f"checkpoint {latest} does not fit a {run.arch} model "
                            f"({cause(exc, 120)}): use --force to start over") from None
    try:
        parts.optimizer.load_state_dict(ckpt["optimizer"])
        parts.schedule.load_state_dict(ckpt["schedule"])
        if "scaler" in ckpt and parts.scaler.is_enabled():
            parts.scaler.load_state_dict(ckpt["scaler"])
        same_world = restore_rng(ckpt["rng"], run.ctx, run.device)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise SepcheckError(f"checkpoint {latest} does not fit this run's {run.cfg.optimizer} optimizer, "
                            f"schedule or random generators ({cause(exc, 120)}): "
                            "use --force to start over") from None
    if not same_world:
        say("note: the checkpoint was written by a different number of processes: the resumed run "
            "is not bit-identical to an uninterrupted one")
    parts.log = [dict(r) for r in ckpt.get("log", [])]
    if run.ctx.is_main:
        write_log(run.folder, parts.log)
    say(f"resuming {run.folder.path} after epoch {run.start_epoch} of {run.cfg.epochs}")


# ----- one epoch ---------------------------------------------------------------------------
def _train_epoch(run: _Run, parts: _Parts, net: nn.Module, loss_fn: Callable[..., Any],
                 loss_kwargs: dict[str, Any], epoch: int, progress: bool) -> dict[str, Any]:
    """One pass over this process's share of the epoch's batches; the epoch's record (loss and
    train accuracy summed over every process, test accuracy on rank 0, seconds)."""
    cfg, ctx, device = run.cfg, run.ctx, run.device
    t0 = time.perf_counter()
    lr = parts.schedule.step(parts.optimizer, epoch)
    net.train()
    batches = epoch_batches(run.data.X.shape[0], cfg.batch_size, cfg.seed, epoch, ctx)
    sums = [0.0, 0.0, 0.0]  # loss * n, correct, n
    bar = _bar(len(batches), f"{run.label} {epoch}/{cfg.epochs}", progress and ctx.is_main)
    for idx in batches:
        loss_n, correct, n = _train_step(run, parts, net, loss_fn, loss_kwargs, idx, epoch)
        sums[0] += loss_n
        sums[1] += correct
        sums[2] += n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}", acc=f"{sums[1] / sums[2]:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    sums = distributed.all_reduce_sum(sums, ctx, device)
    record: dict[str, Any] = {
        "epoch": epoch,
        "lr": lr,
        "loss": sums[0] / max(sums[2], 1),
        "train_acc": sums[1] / max(sums[2], 1),
        "samples": int(sums[2]),
    }
    data = run.data
    if data.X_test is not None and ctx.is_main:
        record["test_acc"] = accuracy(parts.model, data.X_test, data.y_test, device,
                                      channels_last=parts.channels_last)
    record["time_s"] = time.perf_counter() - t0
    return record


def _train_step(run: _Run, parts: _Parts, net: nn.Module, loss_fn: Callable[..., Any],
                loss_kwargs: dict[str, Any], idx: torch.Tensor, epoch: int) -> tuple[float, float, int]:
    """One optimiser step on the rows ``idx``: (loss * batch size, correct predictions, batch size)."""
    device, amp_dtype = run.device, run.amp_dtype
    xb = run.data.X[idx].to(device, non_blocking=True)
    yb = run.data.y[idx].to(device, non_blocking=True)
    crop = run.crop
    if crop is not None:
        xb = crop_flip(xb, **crop)
    if parts.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss, logits = loss_fn(net, xb, yb, **loss_kwargs)
    if not torch.isfinite(loss):
        raise DivergedError(f"the {run.label} loss became {float(loss.detach())} in epoch {epoch}: lower --lr "
                            "(or the method's weights)")
    parts.optimizer.zero_grad(set_to_none=True)
    # "sum" (the paper's code): the batch's summed loss; every loss here is a batch mean
    parts.scaler.scale(loss * yb.shape[0] if run.cfg.reduction == "sum" else loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    n = int(yb.shape[0])
    return float(loss.detach()) * n, float((logits.detach().argmax(1) == yb).sum()), n


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    return progress_bar(total, desc, "batch")


# ----- checkpoint --------------------------------------------------------------------------
def _checkpoint_epoch(run: _Run, parts: _Parts, record: dict[str, Any]) -> None:
    """Add ``record`` to the log; on rank 0 write checkpoint_latest.pt (it carries the log and
    every process's generator states), then the record's line of log.jsonl."""
    rng = rng_state(run.ctx, run.device)
    parts.log.append(record)
    if run.ctx.is_main:
        state = {**_model_state(run, parts, record["epoch"]), "optimizer": parts.optimizer.state_dict(),
                 "schedule": parts.schedule.state_dict(), "rng": rng, "config": run.config,
                 "log": json.loads(json.dumps(parts.log))}
        if parts.scaler.is_enabled():
            state["scaler"] = parts.scaler.state_dict()
        save_checkpoint(run.folder.latest, state)
        append_log(run.folder, record)


def _model_state(run: _Run, parts: _Parts, epoch: int) -> dict[str, Any]:
    """A checkpoint's model part: the epoch, architecture, input shape, classes and weights."""
    data = run.data
    return {"epoch": epoch, "arch": run.arch, "input_shape": list(data.input_shape),
            "n_classes": data.n_classes, "model": parts.model.state_dict()}


__all__ = ["TrainConfig", "TrainResult", "amp_dtype_for", "train"]
