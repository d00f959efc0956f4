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

    say = echo if echo is not None else ((lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None))
    if not ctx.is_main:
        say = lambda s: None  # noqa: E731
    for note in data.notes:
        say(f"note: {note}")
    if preset is not None:
        shown = ", ".join(f"{k}={v}" for k, v in preset["settings"].items())
        say(f"preset {preset['name']} ({preset['dataset']}, the official code's settings): {shown}"
            + (f"; overridden by flags: {', '.join(preset['overridden'])}" if preset["overridden"] else ""))
    if cfg.arch is None and start_epoch == 0:
        say(f"arch: {arch} (default for inputs of shape {tuple(data.input_shape)}; choose with --arch)")

    torch.manual_seed(cfg.seed)
    model = build_model(arch, data.input_shape, data.n_classes).to(device)
    use_cl = cfg.channels_last and device.type == "cuda" and len(data.input_shape) == 3
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg.optimizer, model, lr=float(cfg.lr), momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    schedule = LRSchedule(cfg.schedule, float(cfg.lr), cfg.epochs, cfg.milestones)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if ctx.rank > 0:
        torch.manual_seed(cfg.seed + 7919 * ctx.rank)
    log: list[dict[str, Any]] = []
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise SepcheckError(f"checkpoint {run.latest} does not fit a {arch} model "
                                f"({cause(exc, 120)}): use --force to start over") from None
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.load_state_dict(ckpt["schedule"])
            if "scaler" in ckpt and scaler.is_enabled():
                scaler.load_state_dict(ckpt["scaler"])
            same_world = restore_rng(ckpt["rng"], ctx, device)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise SepcheckError(f"checkpoint {run.latest} does not fit this run's {cfg.optimizer} optimizer, "
                                f"schedule or random generators ({cause(exc, 120)}): "
                                "use --force to start over") from None
        if not same_world:
            say("note: the checkpoint was written by a different number of processes: the resumed run "
                "is not bit-identical to an uninterrupted one")
        log = [dict(r) for r in ckpt.get("log", [])]
        if ctx.is_main:
            write_log(run, log)
        say(f"resuming {run.path} after epoch {start_epoch} of {cfg.epochs}")
    if ctx.is_main:
        if start_epoch == 0:
            run.log.unlink(missing_ok=True)  # a resume that found no checkpoint starts afresh
        write_json(run.config, config)

    net = distributed.wrap(model, ctx, device)
    loss_fn = get_loss(cfg.method)
    kwargs = cfg.loss_kwargs()
    augment = config["augment"] in ("crop-flip", "crop")
    crop = {"pad": 8, "flip": False} if config["augment"] == "crop" else {}
    X, y = data.X, data.y
    label = config["label"]

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = schedule.step(optimizer, epoch)
        net.train()
        batches = epoch_batches(X.shape[0], cfg.batch_size, cfg.seed, epoch, ctx)
        sums = [0.0, 0.0, 0.0]  # loss * n, correct, n
        bar = _bar(len(batches), f"{label} {epoch}/{cfg.epochs}", progress and ctx.is_main)
        for idx in batches:
            xb, yb = X[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            if augment:
                xb = crop_flip(xb, **crop)
            if use_cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss, logits = loss_fn(net, xb, yb, **kwargs)
            if not torch.isfinite(loss):
                raise DivergedError(f"the {label} loss became {float(loss.detach())} in epoch {epoch}: lower --lr "
                                    "(or the method's weights)")
            optimizer.zero_grad(set_to_none=True)
            # "sum" (the paper's code): the batch's summed loss; every loss here is a batch mean
            scaler.scale(loss * yb.shape[0] if cfg.reduction == "sum" else loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n = int(yb.shape[0])
            sums[0] += float(loss.detach()) * n
            sums[1] += float((logits.detach().argmax(1) == yb).sum())
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
        if data.X_test is not None and ctx.is_main:
            record["test_acc"] = accuracy(model, data.X_test, data.y_test, device, channels_last=use_cl)
        record["time_s"] = time.perf_counter() - t0
        rng = rng_state(ctx, device)
        log.append(record)
        if ctx.is_main:  # checkpoint first (it carries the log), then the log line
            state = {"epoch": epoch, "arch": arch, "input_shape": list(data.input_shape),
                     "n_classes": data.n_classes, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                     "rng": rng, "config": config, "log": json.loads(json.dumps(log))}
            if scaler.is_enabled():
                state["scaler"] = scaler.state_dict()
            save_checkpoint(run.latest, state)
            append_log(run, record)
        test = f"  test acc {record['test_acc']:.4f}" if "test_acc" in record else ""
        say(f"{label} epoch {epoch}/{cfg.epochs}  loss {record['loss']:.4f}  train acc "
            f"{record['train_acc']:.4f}{test}  lr {lr:.3g}  {record['time_s']:.1f}s")
        distributed.barrier(ctx)
        if on_epoch_end is not None:
            on_epoch_end(record)

    if ctx.is_main:
        save_checkpoint(run.final, {"epoch": cfg.epochs, "arch": arch, "input_shape": list(data.input_shape),
                                    "n_classes": data.n_classes, "model": model.state_dict(), "config": config})
    distributed.barrier(ctx)
    return TrainResult(run.path, config, log, start_epoch, time.perf_counter() - t_wall,
                       time.process_time() - t_cpu, model.eval())


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    return progress_bar(total, desc, "batch")


__all__ = ["TrainConfig", "TrainResult", "amp_dtype_for", "train"]
