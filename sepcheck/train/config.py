"""A training run's configuration: typed options, one parameter dataclass per method, the one
place that validates them, and the config.json form.

>>> TrainConfig("trades", "data.npz", params=TradesParams(beta=6), eps=0.1)   # doctest: +SKIP
>>> TrainConfig.from_options("trades", "data.npz", beta=6, eps=0.1)            # doctest: +SKIP

``params=None`` means the method's defaults. :meth:`TrainConfig.from_options` takes the
method's parameters as flat keywords (the CLI's form) and refuses a parameter the method
does not take.

config.json (``sepcheck.train.run/2``) stores the method's parameters in full under
``"params"``; the threat model (``eps``, ``norm``) is stored once, at the top level. Version 1
configs (parameters as given, ``eps`` and ``norm`` repeated inside ``"params"``) are still
read: :meth:`TrainConfig.from_json` drops the repeated keys.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args

from .._version import __version__
from ..core.devices import torch_device
from ..core.errors import SepcheckError

# This module imports no torch (the command line reads its defaults and choices for
# `sepcheck train --help`): the modules that do are imported where they are used.

Method = Literal["natural", "gr", "llr", "at", "trades"]
ThreatNorm = Literal["linf", "l2"]
Optimizer = Literal["sgd", "adam"]
Schedule = Literal["step", "cosine", "constant"]
Augment = Literal["auto", "none", "crop-flip", "crop"]
Reduction = Literal["mean", "sum"]
Preset = Literal["paper"]
#: the mode the model is in while an attack runs (:func:`sepcheck.train.attacks.model_mode`)
AttackMode = Literal["eval", "train"]

#: the official code's settings per data set (yangarbiter/robust-local-lipschitz: params.py
#: names the runs, lolip/models/__init__.py ``get_hyper`` turns names into settings,
#: lolip/models/torch_model.py trains with summed losses, ``get_scheduler`` sets milestones:
#: :func:`official_milestones`). "crop" is a random crop with zero padding 8 and no flip.
#: ``eps`` is the paper's Table 1 radius (used when no --eps is given).
PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"arch": "mnist_cnn", "optimizer": "sgd", "lr": 1e-4, "momentum": 0.9, "reduction": "sum",
              "batch_size": 64, "epochs": 160, "augment": "none", "weight_decay": 0.0, "eps": 0.1},
    "cifar10": {"arch": "wrn40_10", "optimizer": "sgd", "lr": 1e-2, "momentum": 0.0, "reduction": "sum",
                "batch_size": 64, "epochs": 120, "augment": "crop-flip", "weight_decay": 0.0, "eps": 0.031},
    "svhn": {"arch": "wrn40_10", "optimizer": "sgd", "lr": 1e-2, "momentum": 0.0, "reduction": "sum",
             "batch_size": 64, "epochs": 60, "augment": "none", "weight_decay": 0.0, "eps": 0.031},
    "restricted-imagenet": {"arch": "resnet50", "optimizer": "adam", "lr": 1e-2, "momentum": 0.0,
                            "reduction": "sum", "batch_size": 128, "epochs": 70, "augment": "crop",
                            "weight_decay": 0.0, "eps": 0.005},
}
#: (data set, method) -> learning rate where the official runs differ per method: get_hyper
#: gives WRN runs of AT and LLR 1e-3, but the paper's CIFAR-10 runs of both carry "-lrem2"
#: (1e-2), so only SVHN keeps 1e-3
PAPER_LR: dict[tuple[str, str], float] = {("svhn", "at"): 1e-3, ("svhn", "llr"): 1e-3}


def official_milestones(epochs: int) -> list[int]:
    """The official code's step schedule (``get_scheduler``): x0.1 at these epochs."""
    table = [(20, [10, 15]), (30, [15, 25]), (40, [20, 30]), (50, [25, 40]), (60, [30, 50]),
             (70, [40, 60]), (80, [30, 50, 70]), (120, [40, 80, 100]), (160, [40, 80, 120, 140])]
    for most, ms in table:
        if epochs <= most:
            return ms
    return [60, 100, 140, 180]


def paper_preset_name(dataset_name: str, input_shape: tuple[int, ...]) -> str:
    """The preset of a data set: by name for the paper's four, else by input shape (1x28x28:
    mnist, 3x32x32: cifar10, larger images: restricted-imagenet)."""
    name = str(dataset_name).lower()
    for key in ("svhn", "mnist", "cifar10", "restricted-imagenet"):
        if key in name or key.replace("-", "_") in name:
            return key
    s = tuple(int(v) for v in input_shape)
    if s == (1, 28, 28):
        return "mnist"
    if s == (3, 32, 32):
        return "cifar10"
    if len(s) == 3 and min(s[1:]) > 32:
        return "restricted-imagenet"
    raise SepcheckError(f"no paper preset for inputs of shape {s}: the paper's data sets are 1x28x28, 3x32x32 "
                        "and larger colour images; drop --preset")

DEFAULT_LR: dict[str, float] = {"sgd": 0.01, "adam": 1e-3}


def _weight(default: float, flag: str) -> Any:
    """A finite weight >= 0."""
    return field(default=default, metadata={"flag": flag, "check": "weight"})


def _positive(default: float | None, flag: str) -> Any:
    """A finite number > 0 (None: the method's rule)."""
    return field(default=default, metadata={"flag": flag, "check": "positive"})


def _count(default: int, flag: str) -> Any:
    """An integer >= 1."""
    return field(default=default, metadata={"flag": flag, "check": "count"})


def _choice(default: str, flag: str, choices: Any) -> Any:
    """One of the ``Literal`` ``choices``."""
    return field(default=default, metadata={"flag": flag, "check": "choice", "choices": choices})


#: the published method, or the paper's code where it differs (GR, LLR)
Variant = Literal["published", "paper-code"]


@dataclass(frozen=True)
class NaturalParams:
    """Natural training: no parameters."""

    method: ClassVar[str] = "natural"
    #: whether the loss attacks its inputs (takes ``eps`` and ``norm``)
    attacks: ClassVar[bool] = False


@dataclass(frozen=True)
class GRParams:
    """GR: penalty weight ``lam``, finite-difference step ``h`` and ``variant`` (published,
    or paper-code: the CE term weighted 2, as the paper's code back-propagates it twice)."""

    method: ClassVar[str] = "gr"
    attacks: ClassVar[bool] = False
    lam: float = _weight(1.0, "--lambda")
    h: float = _positive(1.0, "--h")
    variant: str = _choice("published", "--variant", Variant)


@dataclass(frozen=True)
class LLRParams:
    """LLR: weights ``lam`` (gamma) and ``mu`` (|delta^T grad|), ascent ``steps`` and
    ``step_size`` (None: eps / 2), ``variant`` (published: Qin et al.; paper-code: the
    paper's code, ``CE(x) + lam CE(x + delta)``)."""

    method: ClassVar[str] = "llr"
    attacks: ClassVar[bool] = True
    lam: float = _weight(4.0, "--lambda")
    mu: float = _weight(3.0, "--mu")
    steps: int = _count(2, "--steps")
    step_size: float | None = _positive(None, "--step-size")
    variant: str = _choice("published", "--variant", Variant)


@dataclass(frozen=True)
class ATParams:
    """AT: PGD ``steps``, ``step_size`` (None: 2 eps / steps) and ``attack_mode`` (the
    model's mode during the attack: eval, or train as in the paper's code)."""

    method: ClassVar[str] = "at"
    attacks: ClassVar[bool] = True
    steps: int = _count(10, "--steps")
    step_size: float | None = _positive(None, "--step-size")
    attack_mode: str = _choice("eval", "--attack-mode", AttackMode)


@dataclass(frozen=True)
class TradesParams:
    """TRADES: KL weight ``beta``, ascent ``steps`` and ``step_size`` (None: 2 eps / steps)."""

    method: ClassVar[str] = "trades"
    attacks: ClassVar[bool] = True
    beta: float = _weight(1.0, "--beta")
    steps: int = _count(10, "--steps")
    step_size: float | None = _positive(None, "--step-size")


MethodParams = Union[NaturalParams, GRParams, LLRParams, ATParams, TradesParams]  # noqa: UP007

#: method name -> its parameter dataclass
PARAMS: dict[str, type] = {cls.method: cls for cls in get_args(MethodParams)}


def params_of(method: str, values: dict[str, Any] | None = None) -> MethodParams:
    """The parameter dataclass of ``method`` from keyword values (a one-line error for a
    parameter the method does not take, or a bad value)."""
    cls = PARAMS[check_choice(method, Method, "method")]
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in (values or {}).items() if v is not None}
    for key in given:
        if key not in names:
            flag = "--" + {"lam": "lambda"}.get(key, key).replace("_", "-")
            users = [m for m, c in PARAMS.items() if key in {f.name for f in dataclasses.fields(c)}]
            where = f"a parameter of {', '.join(users)}" if users else "not a training parameter"
            raise SepcheckError(f"{flag} is {where}: method {cls.method} does not use it")
    params = cls(**given)
    check_params(params)
    return params


def check_params(params: MethodParams) -> None:
    """One-line errors for a bad method parameter (weights >= 0, steps >= 1, h > 0)."""
    for f in dataclasses.fields(params):
        value, flag, kind = getattr(params, f.name), f.metadata["flag"], f.metadata["check"]
        if value is None:
            continue
        if kind == "choice":
            check_choice(value, f.metadata["choices"], flag)
            continue
        if kind == "count":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SepcheckError(f"{flag} {value} is invalid: give an integer >= 1")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SepcheckError(f"{flag} {value} is invalid: give a finite number")
        if kind == "positive" and not value > 0:
            raise SepcheckError(f"{flag} {value} is invalid: it must be > 0")
        if value < 0:
            raise SepcheckError(f"{flag} {value} is invalid: it must be >= 0")


def check_choice(value: Any, choices: Any, what: str) -> Any:
    """``value`` if it is one of the ``Literal`` ``choices``, else a one-line error."""
    options = get_args(choices)
    if value not in options:
        raise SepcheckError(f"unknown {what} {value!r}: use one of {', '.join(options)}")
    return value


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the run's config.json).

    Parameters
    ----------
    method, dataset
        One of natural, gr, llr, at, trades; a registered data set name, file or folder.
    params
        The method's parameter dataclass (:class:`TradesParams` ...); None: its defaults.
    eps, norm
        The threat model of the attacking methods (and of the evaluation); ``eps=None`` is
        the data set's typical linf radius.
    amp
        Mixed precision on CUDA (bfloat16 where supported, else float16; the dtype used is
        stored in config.json and must match on resume). Inner maximisations, GR/LLR finite
        differences and the Lipschitz estimate always run in float32.
    deterministic
        Use torch's deterministic algorithms (and a fixed cuBLAS workspace) so that a resumed
        CUDA run reproduces the uninterrupted one. Without it CUDA kernels may be
        nondeterministic (on the CPU runs reproduce either way).
    """

    method: Method
    dataset: str
    params: MethodParams | None = None
    arch: str | None = None
    norm: ThreatNorm = "linf"
    eps: float | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Schedule = "step"
    augment: Augment = "auto"
    holdout: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    deterministic: bool = False
    channels_last: bool = True
    data_dir: str | None = None
    download: bool = True
    verify: bool = True
    reduction: Reduction = "mean"
    milestones: tuple[int, ...] | None = None
    preset: Preset | None = None
    #: option names given explicitly (they override the preset)
    explicit: tuple[str, ...] = ()
    #: filled by :meth:`apply_preset`: the preset's data set and the settings it applied
    preset_applied: dict[str, Any] | None = None

    def apply_preset(self, dataset_name: str, input_shape: tuple[int, ...]) -> dict[str, Any] | None:
        """Apply ``preset`` (the official per-data-set settings, :data:`PAPER_PRESETS`) to the
        options not in ``explicit`` (and ``eps`` when it is None); returns ``{"name",
        "dataset", "settings", "overridden"}`` (None without a preset). Milestones follow the
        official rule for the resulting number of epochs. Method parameters are not changed
        (the paper's Restricted ImageNet LLR used lam=3, mu=6: give them as flags)."""
        if self.preset is None:
            return None
        check_choice(self.preset, Preset, "preset")
        key = paper_preset_name(dataset_name, input_shape)
        values = dict(PAPER_PRESETS[key])
        values["lr"] = PAPER_LR.get((key, self.method), values["lr"])
        applied = {}
        eps = values.pop("eps")
        for name, v in values.items():
            if name not in self.explicit:
                setattr(self, name, v)
                applied[name] = v
        if self.eps is None and self.norm == "linf":
            self.eps = applied["eps"] = eps
        if "milestones" not in self.explicit and "schedule" not in self.explicit:
            self.schedule = "step"
            self.milestones = tuple(official_milestones(self.epochs))
            applied["milestones"] = list(self.milestones)
        self.preset_applied = {"name": self.preset, "dataset": key, "settings": applied,
                               "overridden": sorted(set(values) & set(self.explicit))}
        return self.preset_applied

    @classmethod
    def from_options(cls, method: str, dataset: str, *, beta: float | None = None, lam: float | None = None,
                     mu: float | None = None, h: float | None = None, steps: int | None = None,
                     step_size: float | None = None, variant: str | None = None,
                     attack_mode: str | None = None, **options: Any) -> TrainConfig:
        """A config from flat options (the CLI's form): the method's parameters as keywords
        (None: the default); a parameter the method does not take is a one-line error."""
        method = str(method).strip().lower()
        params = params_of(method, {"beta": beta, "lam": lam, "mu": mu, "h": h, "steps": steps,
                                    "step_size": step_size, "variant": variant, "attack_mode": attack_mode})
        return cls(method, dataset, params=params, **options)  # type: ignore[arg-type]

    def validate(self) -> None:
        """One-line errors for every bad option, before any work; fills in the defaults
        (method parameters, learning rate) and canonical names."""
        check_choice(self.method, Method, "method")
        if self.params is None:
            self.params = PARAMS[self.method]()
        if not isinstance(self.params, PARAMS[self.method]):
            raise SepcheckError(f"params {type(self.params).__name__} do not belong to method {self.method}: "
                                f"give {PARAMS[self.method].__name__}")
        check_params(self.params)
        from .attacks import threat_norm
        from .models import ARCHS

        self.norm = threat_norm(self.norm)  # type: ignore[assignment]
        if self.eps is not None and (isinstance(self.eps, bool) or not math.isfinite(float(self.eps))
                                     or self.eps < 0):
            raise SepcheckError(f"--eps {self.eps} is invalid: give a finite attack radius >= 0")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SepcheckError(f"--{name.replace('_', '-')} {v} is invalid: give an integer >= 1")
        check_choice(self.optimizer, Optimizer, "optimizer")
        check_choice(self.schedule, Schedule, "schedule")
        check_choice(self.augment, Augment, "augmentation")
        check_choice(self.reduction, Reduction, "reduction")
        if self.preset is not None:
            check_choice(self.preset, Preset, "preset")
        if self.milestones is not None:
            self.milestones = tuple(int(m) for m in self.milestones)
            if any(m < 1 for m in self.milestones):
                raise SepcheckError(f"--milestones {list(self.milestones)} is invalid: give epochs >= 1")
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
        torch_device(self.device)

    def resolve_eps(self, data_eps: float | None, data_name: str) -> None:
        """Default ``eps`` to the data set's typical linf radius; an attacking method needs one."""
        if self.eps is None and self.norm == "linf":
            self.eps = data_eps
        if self.eps is None and self.params is not None and self.params.attacks:
            raise SepcheckError(f"method {self.method} needs an attack radius: give --eps "
                                f"(data set {data_name!r} has no typical {self.norm} radius)")

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the method's loss function (after :meth:`validate`)."""
        assert self.params is not None, "call validate() first"
        kwargs = dataclasses.asdict(self.params)
        if self.params.attacks:
            kwargs.update(eps=self.eps, norm=self.norm)
        return kwargs

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> TrainConfig:
        """The config back from a config.json dict (format 1 or 2); one-line errors for
        anything else."""
        from .runs import RUN_FORMATS

        fmt = config.get("format")
        if fmt not in RUN_FORMATS:
            raise SepcheckError(f"config format {fmt!r} is not a sepcheck run config: "
                                f"use one written by `sepcheck train` ({', '.join(RUN_FORMATS)})")
        method = str(config.get("method"))
        stored = {k: v for k, v in (config.get("params") or {}).items() if k not in ("eps", "norm")}
        options = {f.name: config[f.name] for f in dataclasses.fields(cls)
                   if f.name not in ("method", "dataset", "params", "preset", "explicit", "preset_applied")
                   and f.name in config}
        if options.get("milestones") is not None:
            options["milestones"] = tuple(options["milestones"])
        return cls(method, str(config.get("dataset")), params=params_of(method, stored),  # type: ignore[arg-type]
                   **options)


def dataset_spec(spec: str) -> str:
    """A file or folder as an absolute path (the run can be evaluated from anywhere); a
    registered name as it is."""
    p = Path(str(spec)).expanduser()
    return str(p.resolve()) if p.exists() else str(spec)


def run_config(cfg: TrainConfig, data: Any, arch: str, world_size: int, amp_dtype: str | None) -> dict[str, Any]:
    """The dict stored as config.json (``cfg`` validated, ``data`` a
    :class:`sepcheck.train.data.TrainData`, ``amp_dtype`` None when AMP is off)."""
    import torch

    from .losses import method_label
    from .runs import RUN_FORMAT

    assert cfg.params is not None, "call validate() first"
    params = dataclasses.asdict(cfg.params)
    augment = cfg.augment
    if augment == "auto":
        from .data import is_cifar_like

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
        "milestones": None if cfg.milestones is None else list(cfg.milestones),
        "reduction": cfg.reduction,
        "preset": cfg.preset_applied,
        "augment": augment,
        "seed": cfg.seed,
        "device": cfg.device,
        "amp": cfg.amp,
        "amp_dtype": amp_dtype,
        "deterministic": cfg.deterministic,
        "channels_last": cfg.channels_last,
        "world_size": world_size,
        "data_dir": cfg.data_dir,
    }


#: config.json keys that must agree when a run is resumed
RESUME_KEYS = ("method", "params", "eps", "norm", "arch", "epochs", "batch_size", "optimizer", "lr", "momentum",
               "weight_decay", "schedule", "milestones", "reduction", "augment", "seed", "holdout", "dataset",
               "amp_dtype")


def check_same_run(old: dict[str, Any], new: dict[str, Any], where: Any) -> None:
    """A one-line error when the stored config ``old`` and the new one differ in a
    :data:`RESUME_KEYS` key (a version-1 ``old`` is compared by its parsed parameters)."""
    from .runs import RUN_FORMATS

    old = dict(old)
    if old.get("format") in RUN_FORMATS and old.get("method") in PARAMS:
        stored = {k: v for k, v in (old.get("params") or {}).items() if k not in ("eps", "norm")}
        old["params"] = dataclasses.asdict(params_of(str(old["method"]), stored))
    for key in RESUME_KEYS:
        if old.get(key) != new.get(key):
            raise SepcheckError(
                f"cannot resume {where}: it was started with {key}={old.get(key)!r}, not "
                f"{new.get(key)!r}; resume with the same options or use --force to start over"
            )


__all__ = ["Variant", "Reduction", "Preset", "PAPER_PRESETS", "PAPER_LR", "official_milestones",
           "paper_preset_name", "Method", "AttackMode", "ThreatNorm", "Optimizer", "Schedule", "Augment", "MethodParams", "NaturalParams",
           "GRParams", "LLRParams", "ATParams", "TradesParams", "PARAMS", "TrainConfig", "params_of",
           "check_params", "check_choice", "run_config", "check_same_run", "dataset_spec", "RESUME_KEYS",
           "DEFAULT_LR"]
