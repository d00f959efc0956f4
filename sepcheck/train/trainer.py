"""Training a model with one of the five methods into a run folder.

>>> from sepcheck.train import TrainConfig, train
>>> cfg = TrainConfig("trades", "data.npz", beta=6, eps=0.1, epochs=10)   # doctest: +SKIP
>>> result = train(cfg, "runs/trades6")                                   # doctest: +SKIP

The epoch order of the data comes from ``(seed, epoch)``; dropout, augmentation and attack
starts come from the global torch generator, whose state is saved with every epoch, so a
resumed run reproduces the uninterrupted one exactly (same device and thread count).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..devices import torch_device
from ..errors import DivergedError, SepcheckError
from . import distributed
from .attacks import threat_norm
from .data import TrainData, crop_flip, is_cifar_like
from .data import load as load_data
from .losses import check_params, get_loss, loss_kwargs, method_label
from .models import ARCHS, build_model, default_arch
from .runs import (
    RUN_FORMAT,
    RunDir,
    append_log,
    load_checkpoint,
    prepare_dir,
    read_json,
    save_checkpoint,
    write_json,
    write_log,
)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine", "constant")
AUGMENTS = ("auto", "none", "crop-flip")
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}

#: config keys that must agree when a run is resumed
_RESUME_KEYS = ("method", "params", "eps", "norm", "arch", "epochs", "batch_size", "optimizer", "lr", "momentum",
                "weight_decay", "schedule", "augment", "seed", "holdout", "dataset")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the run's config.json).

    ``None`` for a method parameter means the method's default (see
    :mod:`sepcheck.train.losses`); ``eps`` defaults to the data set's typical radius.
    """

    method: str
    dataset: str
    arch: str | None = None
    norm: str = "linf"
    eps: float | None = None
    beta: float | None = None
    lam: float | None = None
    mu: float | None = None
    h: float | None = None
    steps: int | None = None
    step_size: float | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "step"
    augment: str = "auto"
    holdout: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    data_dir: str | None = None
    download: bool = True
    verify: bool = True

    def params(self) -> dict[str, Any]:
        """The method parameters (None = the method's default)."""
        return {"eps": self.eps, "norm": self.norm, "beta": self.beta, "lam": self.lam, "mu": self.mu,
                "h": self.h, "steps": self.steps, "step_size": self.step_size}

    def validate(self) -> None:
        """One-line errors for every bad option, before any work."""
        get_loss(self.method)
        self.norm = threat_norm(self.norm)
        check_params(self.params())
        if self.method == "trades" and self.beta is None:
            self.beta = 1.0
        if self.method != "trades" and self.beta is not None:
            raise SepcheckError(f"--beta is a TRADES parameter: method {self.method} does not use it")
        if self.lam is not None and self.method not in ("gr", "llr"):
            raise SepcheckError(f"--lambda is a GR/LLR parameter: method {self.method} does not use it")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SepcheckError(f"--{name.replace('_', '-')} {v} is invalid: give an integer >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise SepcheckError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise SepcheckError(f"unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTS:
            raise SepcheckError(f"unknown augmentation {self.augment!r}: use one of {', '.join(AUGMENTS)}")
        if self.arch is not None and self.arch not in ARCHS:
            raise SepcheckError(f"unknown architecture {self.arch!r}: use one of {', '.join(ARCHS)}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        for name in ("lr", "momentum", "weight_decay"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
                raise SepcheckError(f"--{name.replace('_', '-')} {v} is invalid: give a finite number "
                                    f"{'> 0' if name == 'lr' else '>= 0'}")
        if self.holdout is not None and (isinstance(self.holdout, bool) or self.holdout < 1):
            raise SepcheckError(f"--holdout {self.holdout} is invalid: give a number of points >= 1")
        resolve_device(self.device)


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


class LRSchedule:
    """Learning rate per epoch (1-based): ``step`` divides by 10 after 50% and 75% of the
    epochs, ``cosine`` anneals to 0, ``constant`` keeps it."""

    def __init__(self, name: str, base_lr: float, epochs: int) -> None:
        self.name, self.base_lr, self.epochs, self.last_epoch = name, float(base_lr), int(epochs), 0

    def lr(self, epoch: int) -> float:
        if self.name == "constant":
            return self.base_lr
        if self.name == "cosine":
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        milestones = [int(self.epochs * 0.5), int(self.epochs * 0.75)]
        passed = sum(1 for m in milestones if m > 0 and epoch > m)
        return self.base_lr * 0.1**passed

    def step(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        lr = self.lr(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.last_epoch = epoch
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base_lr": self.base_lr, "epochs": self.epochs, "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.name, self.base_lr = str(state["name"]), float(state["base_lr"])
        self.epochs, self.last_epoch = int(state["epochs"]), int(state["last_epoch"])


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The training device: :func:`sepcheck.devices.torch_device` (a plain 'cuda' is this
    process's GPU, ``local_rank``)."""
    return torch_device(device, local_rank)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def dataset_spec(spec: str) -> str:
    """A file or folder as an absolute path (the run can be evaluated from anywhere); a
    registered name as it is."""
    p = Path(str(spec)).expanduser()
    return str(p.resolve()) if p.exists() else str(spec)


def build_config(cfg: TrainConfig, data: TrainData, arch: str, world_size: int) -> dict[str, Any]:
    """The dict stored as config.json."""
    params = loss_kwargs(cfg.method, cfg.params())
    augment = cfg.augment
    if augment == "auto":
        augment = "crop-flip" if is_cifar_like(data.input_shape) else "none"
    return {
        "format": RUN_FORMAT,
        "sepcheck_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": cfg.method,
        "label": method_label(cfg.method, params),
        "params": params,
        "eps": cfg.eps,
        "norm": cfg.norm,
        "dataset": dataset_spec(cfg.dataset),
        "data": {
            "name": data.name,
            "n_train": int(data.X.shape[0]),
            "n_test": None if data.X_test is None else int(data.X_test.shape[0]),
            "input_shape": list(data.input_shape),
            "classes": data.classes,
            "notes": data.notes,
        },
        "holdout": cfg.holdout,
        "arch": arch,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "momentum": cfg.momentum,
        "weight_decay": cfg.weight_decay,
        "schedule": cfg.schedule,
        "augment": augment,
        "seed": cfg.seed,
        "device": cfg.device,
        "amp": cfg.amp,
        "channels_last": cfg.channels_last,
        "world_size": world_size,
        "data_dir": cfg.data_dir,
    }


def _check_same_run(old: dict[str, Any], new: dict[str, Any], run: RunDir) -> None:
    for key in _RESUME_KEYS:
        if old.get(key) != new.get(key):
            raise SepcheckError(
                f"cannot resume {run.path}: it was started with {key}={old.get(key)!r}, not "
                f"{new.get(key)!r}; resume with the same options or use --force to start over"
            )


def _rng_state(ctx: distributed.DistContext, device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": distributed.gather_tensor(torch.get_rng_state(), ctx, device)}
    if device.type == "cuda":
        state["cuda"] = distributed.gather_tensor(torch.cuda.get_rng_state(device), ctx, device)
    return state


def _restore_rng(state: dict[str, Any], ctx: distributed.DistContext, device: torch.device) -> bool:
    states = state.get("torch", [])
    if len(states) != ctx.world_size:
        return False
    torch.set_rng_state(states[ctx.rank])
    if device.type == "cuda" and len(state.get("cuda", [])) == ctx.world_size:
        torch.cuda.set_rng_state(state["cuda"][ctx.rank], device)
    return True


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int, ctx: distributed.DistContext) -> list[torch.Tensor]:
    """This process's share of every batch: the global order depends on (seed, epoch) only."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(n, generator=gen)
    out = []
    for start in range(0, n, batch_size):
        b = perm[start : start + batch_size]
        if ctx.enabled:
            if b.numel() < ctx.world_size:
                continue
            b = b[ctx.rank :: ctx.world_size]
        out.append(b)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 512, channels_last: bool = False) -> float:
    """Clean accuracy (eval mode), in [0, 1]."""
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, X.shape[0], batch_size):
        xb = X[s : s + batch_size].to(device)
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        correct += int((model(xb).argmax(1).cpu() == y[s : s + batch_size]).sum())
    model.train(was)
    return correct / max(1, X.shape[0])


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
        return _train(cfg, Path(out), resume, force, progress, data, on_epoch_end, echo, ctx, t_wall, t_cpu)
    finally:
        distributed.cleanup(ctx)


def _train(cfg: TrainConfig, out: Path, resume: bool, force: bool, progress: bool, data: TrainData | None,
           on_epoch_end: Callable[[dict[str, Any]], None] | None, echo: Callable[[str], None] | None,
           ctx: distributed.DistContext, t_wall: float, t_cpu: float) -> TrainResult:
    device = resolve_device(cfg.device, ctx.local_rank)
    if cfg.batch_size % ctx.world_size != 0:
        raise SepcheckError(f"--batch-size {cfg.batch_size} is not divisible by the {ctx.world_size} processes: "
                            "give a multiple of the number of processes")
    if data is None:
        data = load_data(cfg.dataset, holdout=cfg.holdout, data_dir=cfg.data_dir, download=cfg.download,
                         verify=cfg.verify)
    if cfg.eps is None:
        cfg.eps = data.eps if cfg.norm == "linf" else None
    if cfg.eps is None and cfg.method in ("llr", "at", "trades"):
        raise SepcheckError(f"method {cfg.method} needs an attack radius: give --eps "
                            f"(data set {data.name!r} has no typical {cfg.norm} radius)")
    arch = cfg.arch or default_arch(data.input_shape)
    config = build_config(cfg, data, arch, ctx.world_size)
    run = RunDir(out)
    start_epoch, ckpt = 0, None
    if ctx.is_main:
        run = prepare_dir(out, resume=resume, force=force)
    distributed.barrier(ctx)
    if resume and run.latest.exists():
        if run.config.exists():
            _check_same_run(read_json(run.config, "run config"), config, run)
        ckpt = load_checkpoint(run.latest)
        if ckpt.get("arch") != arch:
            raise SepcheckError(f"checkpoint {run.latest} holds a {ckpt.get('arch')} model, not {arch}: "
                                "use --force to start over")
        start_epoch = int(ckpt["epoch"])
        config["created"] = ckpt.get("config", {}).get("created", config["created"])

    say = echo if echo is not None else ((lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None))
    if not ctx.is_main:
        say = lambda s: None  # noqa: E731
    for note in data.notes:
        say(f"note: {note}")
    if cfg.arch is None and start_epoch == 0:
        say(f"arch: {arch} (default for inputs of shape {tuple(data.input_shape)}; choose with --arch)")

    torch.manual_seed(cfg.seed)
    model = build_model(arch, data.input_shape, data.n_classes).to(device)
    use_cl = cfg.channels_last and device.type == "cuda" and len(data.input_shape) == 3
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    schedule = LRSchedule(cfg.schedule, float(cfg.lr), cfg.epochs)
    use_amp = bool(cfg.amp) and device.type == "cuda"
    amp_dtype = torch.bfloat16 if (use_amp and torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if ctx.rank > 0:
        torch.manual_seed(cfg.seed + 7919 * ctx.rank)
    log: list[dict[str, Any]] = []
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise SepcheckError(f"checkpoint {run.latest} does not fit a {arch} model "
                                f"({str(exc).splitlines()[0][:120]}): use --force to start over") from None
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        if "scaler" in ckpt and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        if not _restore_rng(ckpt.get("rng", {}), ctx, device):
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
    kwargs = loss_kwargs(cfg.method, {**cfg.params(), "eps": cfg.eps})
    augment = config["augment"] == "crop-flip"
    X, y = data.X, data.y
    label = config["label"]

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = schedule.step(optimizer, epoch)
        net.train()
        batches = _epoch_batches(X.shape[0], cfg.batch_size, cfg.seed, epoch, ctx)
        sums = [0.0, 0.0, 0.0]  # loss * n, correct, n
        bar = _bar(len(batches), f"{label} {epoch}/{cfg.epochs}", progress and ctx.is_main)
        for idx in batches:
            xb, yb = X[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            if augment:
                xb = crop_flip(xb)
            if use_cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss, logits = loss_fn(net, xb, yb, **kwargs)
            if not torch.isfinite(loss):
                raise DivergedError(f"the {label} loss became {float(loss)} in epoch {epoch}: lower --lr "
                                    "(or the method's weights)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
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
        rng = _rng_state(ctx, device)
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
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)

