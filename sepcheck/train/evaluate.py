"""Evaluation of trained runs: the paper's table columns and the separation bound.

Per run: clean train and test accuracy, adversarial test accuracy under PGD (and optionally
AutoAttack), and the test Lipschitz estimate of the paper (Yang et al. 2020):

    mean over test points x of  max_{x' in Ball(x, eps)}  ||f(x) - f(x')||_1 / ||x - x'||

with f the logits and the threat model's norm below. Two protocols (:data:`LipProtocol`):

``ascent`` (default)
    The paper's formula: steepest ascent on the ratio (signed gradient for linf) from
    x + 0.001 N(0, 1), 10 steps of 0.003; each point keeps its best iterate, so the estimate
    is a lower bound of the true local maximum.
``paper-code``
    The official code (``lolip.utils.estimate_local_lip_v2``): it sets ``loss = -ratio`` and
    steps ``x + step * sign(grad loss)``, i.e. it *descends* on the ratio, and reports the
    ratio at the final iterate (with ``||x - x' + 1e-6||`` below the line). Its values are
    much smaller than the maximum (on an MNIST CNN 7.4 against 121 for ``ascent``); use it to
    compare with the paper's published numbers.

Per data set: the train-train separation and r (computed, cached only when given ``cache=``),
the theorem's per-class Lipschitz constant 1/r, and the ``LipschitzNNClassifier`` (clean and
certified test accuracy at eps) as the reference row, whose test Lipschitz is measured with
the same estimator on its torch module (:class:`sepcheck.classifier.LipschitzScores`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from ..core.devices import torch_device
from ..core.errors import SepcheckError, cause
from .attacks import (
    as_float32,
    ascent_direction,
    default_step_size,
    eval_mode,
    float32,
    pgd,
    project,
    small_start,
    threat_norm,
    unwrap,
)
from .autoattack import AutoAttackSettings, autoattack_accuracy
from .data import TrainData
from .data import load as load_data
from .metrics import accuracy
from .models import build_model
from .runs import RunDir, model_checkpoint, read_config, read_log, write_json


@dataclass
class AttackSettings:
    """PGD for the adversarial accuracy. Defaults are the paper's: 10 steps of 2 eps / 10
    from a uniform random start in the ball, one restart."""

    steps: int = 10
    step_size: float | None = None
    restarts: int = 1
    random_init: bool = True

    def resolved(self, eps: float) -> dict[str, Any]:
        d = asdict(self)
        d["step_size"] = default_step_size(eps, self.steps) if self.step_size is None else self.step_size
        return d


#: how the test Lipschitz is estimated: the paper's formula or its official code
LipProtocol = Literal["ascent", "paper-code"]
LIP_PROTOCOLS: tuple[str, ...] = get_args(LipProtocol)


def lip_key(protocol: str) -> str:
    """The result key of a protocol's estimate: ``test_lipschitz`` (ascent) or
    ``test_lipschitz_paper_code``."""
    return "test_lipschitz" if protocol == "ascent" else "test_lipschitz_" + protocol.replace("-", "_")


@dataclass
class LipschitzSettings:
    """The Lipschitz estimate (paper's code defaults: 10 steps of 0.003, start 0.001 N(0, 1),
    one start; more ``restarts`` give a tighter lower bound at proportional cost).

    ``protocols``: the estimates to report, each one of :data:`LIP_PROTOCOLS` (the first is
    the table's main column; ``restarts`` applies to ``ascent`` only)."""

    steps: int = 10
    step_size: float = 0.003
    start_scale: float = 0.001
    restarts: int = 1
    protocols: tuple[str, ...] = ("ascent",)

    def __post_init__(self) -> None:
        self.protocols = tuple(self.protocols)
        if not self.protocols:
            raise SepcheckError("give at least one Lipschitz protocol: " + ", ".join(LIP_PROTOCOLS))
        for p in self.protocols:
            if p not in LIP_PROTOCOLS:
                raise SepcheckError(f"unknown Lipschitz protocol {p!r}: use one of {', '.join(LIP_PROTOCOLS)}")


def describe_settings(norm: str, eps: float, attack: AttackSettings, lip: LipschitzSettings) -> str:
    """One line naming the attack and estimate defaults used (printed with every report)."""
    a = attack.resolved(eps)
    start = "uniform random start" if attack.random_init else "no random start"
    return (f"PGD {norm} eps={eps:g}: {a['steps']} steps of {a['step_size']:.4g}, {start}, "
            f"{a['restarts']} restart(s); Lipschitz estimate ({', '.join(lip.protocols)}): {lip.steps} steps "
            f"of {lip.step_size:g} from x + {lip.start_scale:g} N(0,1), {lip.restarts} start(s), "
            f"||f(x)-f(x')||_1 / ||x-x'||_{norm[1:]} on logits")


def _ratio(net: nn.Module, x: Tensor, fx: Tensor, xa: Tensor, norm: str) -> Tensor:
    top = (net(xa) - fx).flatten(1).abs().sum(dim=1)
    diff = (x - xa).flatten(1)
    bottom = diff.abs().amax(dim=1) if norm == "linf" else diff.norm(p=2, dim=1)
    return top / bottom.clamp_min(1e-12)


def local_lipschitz(model: nn.Module, x: Tensor, *, eps: float, norm: str = "linf", steps: int = 10,
                    step_size: float = 0.003, start_scale: float = 0.001, restarts: int = 1) -> Tensor:
    """Per-example estimate of ``max_{x' in Ball(x, eps) ∩ [0,1]^d} ||f(x)-f(x')||_1 / ||x-x'||``.

    Steepest ascent on the ratio from ``x + start_scale N(0, 1)``, projected onto the ball and
    the box after every step; each example keeps its best iterate over all ``restarts``. The
    result is a lower bound of the true maximum (for a linear f that maximum is the
    inf->1 (or 2->1) operator norm, NP-hard in general: one start finds a local optimum).
    """
    norm = threat_norm(norm)
    net = unwrap(model)
    x = as_float32(x.detach())
    with eval_mode(net), float32(x):  # float32, autocast off: ratios of small differences
        with torch.no_grad():
            fx = net(x)
        best = torch.zeros(x.shape[0], device=x.device)
        for _ in range(max(int(restarts), 1)):
            xa = small_start(x, start_scale)
            with torch.no_grad():
                best = torch.maximum(best, _ratio(net, x, fx, xa, norm))
            for _ in range(steps):
                xa.requires_grad_(True)
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(_ratio(net, x, fx, xa, norm).sum(), [xa])
                xa = project(xa.detach() + step_size * ascent_direction(g, norm), x, eps, norm)
                with torch.no_grad():
                    best = torch.maximum(best, _ratio(net, x, fx, xa, norm))
    return best.detach()


def local_lipschitz_paper_code(model: nn.Module, x: Tensor, *, eps: float, norm: str = "linf",
                               steps: int = 10, step_size: float = 0.003, start_scale: float = 0.001) -> Tensor:
    """Per-example estimate as the official code computes it (``estimate_local_lip_v2``).

    From ``x' = x + start_scale N(0, 1)`` it takes ``steps`` steps ``x' + step_size *
    sign(grad(-mean ratio))`` (a descent on the ratio, for either norm), clamps ``x' - x``
    to ``[-eps, eps]`` and ``x'`` to [0, 1] after each, and returns the ratio
    ``||f(x) - f(x')||_1 / ||x - x' + 1e-6||`` at the final iterate. The model runs in
    eval mode and float32. Kept as written there (sign included) to compare with the
    paper's published numbers; :func:`local_lipschitz` is the estimate of the formula.
    """
    norm = threat_norm(norm)
    p = float("inf") if norm == "linf" else 2.0
    net = unwrap(model)
    x = as_float32(x.detach())

    def ratio(xa: Tensor) -> Tensor:
        top = (net(x) - net(xa)).flatten(1).norm(p=1, dim=1)
        return top / (x - xa + 1e-6).flatten(1).norm(p=p, dim=1)

    with eval_mode(net), float32(x):
        xa = small_start(x, start_scale)
        for _ in range(steps):
            xa.requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(-ratio(xa).mean(), [xa])
            xa = xa.detach() + step_size * g.sign()
            xa = (x + (xa - x).clamp(-eps, eps)).clamp(0.0, 1.0)
        with torch.no_grad():
            return ratio(xa).detach()


def lipschitz_estimate(model: nn.Module, X: Tensor, *, eps: float, norm: str = "linf",
                       settings: LipschitzSettings | None = None, batch_size: int = 256,
                       device: torch.device | str = "cpu", protocol: str | None = None) -> float:
    """The paper's test Lipschitz: the mean over ``X`` of :func:`local_lipschitz`
    (``protocol="ascent"``) or :func:`local_lipschitz_paper_code` (``"paper-code"``);
    default: the settings' first protocol."""
    s = settings or LipschitzSettings()
    protocol = protocol or s.protocols[0]
    if protocol not in LIP_PROTOCOLS:
        raise SepcheckError(f"unknown Lipschitz protocol {protocol!r}: use one of {', '.join(LIP_PROTOCOLS)}")
    total = 0.0
    for i in range(0, X.shape[0], batch_size):
        xb = X[i : i + batch_size].to(device)
        if protocol == "ascent":
            v = local_lipschitz(model, xb, eps=eps, norm=norm, steps=s.steps, step_size=s.step_size,
                                start_scale=s.start_scale, restarts=s.restarts)
        else:
            v = local_lipschitz_paper_code(model, xb, eps=eps, norm=norm, steps=s.steps,
                                           step_size=s.step_size, start_scale=s.start_scale)
        total += float(v.double().sum())
    return total / max(1, X.shape[0])


def adversarial_accuracy(model: nn.Module, X: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                         settings: AttackSettings | None = None, batch_size: int = 256,
                         device: torch.device | str = "cpu") -> float:
    """Accuracy under PGD (a point counts when every restart fails), in [0, 1]."""
    s = settings or AttackSettings()
    correct = 0
    net = unwrap(model)
    for i in range(0, X.shape[0], batch_size):
        xb, yb = X[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        adv = pgd(net, xb, yb, eps=eps, norm=norm, steps=s.steps, step_size=s.step_size,
                  random_init=s.random_init, restarts=s.restarts)
        with torch.no_grad(), eval_mode(net):
            correct += int((net(adv).argmax(1) == yb).sum())
    return correct / max(1, X.shape[0])


def load_model(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any], bool]:
    """The run's model (final checkpoint, else latest), its config, and whether it is finished.

    The checkpoint must hold the architecture the run's config.json names.
    """
    run = RunDir(run_dir)
    cfg = read_config(run)
    ckpt, finished = model_checkpoint(run)
    path = run.final if finished else run.latest
    arch = cfg.get("arch")
    if ckpt.get("arch") != arch:
        raise SepcheckError(f"checkpoint {path} holds a {ckpt.get('arch')} model but {run.config} names "
                            f"{arch}: the checkpoint comes from another run")
    shape = tuple(cfg["data"]["input_shape"])
    model = build_model(str(arch), shape, len(cfg["data"]["classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise SepcheckError(f"checkpoint {path} does not fit a {arch} model for inputs {shape} "
                            f"({cause(exc, 120)}): it comes from another architecture") from None
    model.to(device).eval()
    return model, cfg, finished


def subset_indices(n: int, subset: int | None, seed: int = 0) -> np.ndarray:
    """``subset`` random indices (sorted; seeded) of ``n``, or all of them."""
    if subset is None or subset >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=subset, replace=False))


def evaluate_model(model: nn.Module, data: TrainData, *, eps: float, norm: str, subset: int | None = None,
                   attack: AttackSettings | None = None, lip: LipschitzSettings | None = None,
                   batch_size: int = 256, device: torch.device | str = "cpu",
                   autoattack: AutoAttackSettings | None = None) -> dict[str, Any]:
    """The paper's four columns for one model (accuracies in [0, 1]); with ``autoattack``
    also the accuracy under AutoAttack (``adv_test_acc_autoattack``) on the same points."""
    if data.X_test is None or data.y_test is None:
        raise SepcheckError(f"data set {data.name!r} has no test split: train with --holdout N to hold out a test set")
    if not eps > 0:
        raise SepcheckError(f"eps={eps} is invalid for evaluation: give an attack radius > 0 (--eps)")
    attack = attack or AttackSettings()
    lip = lip or LipschitzSettings()
    tr = torch.from_numpy(subset_indices(data.X.shape[0], subset))
    te = torch.from_numpy(subset_indices(data.X_test.shape[0], subset))
    Xt, yt = data.X_test[te], data.y_test[te]
    t0 = time.perf_counter()
    out = {
        "train_acc": accuracy(model, data.X[tr], data.y[tr], torch.device(device), batch_size),
        "test_acc": accuracy(model, Xt, yt, torch.device(device), batch_size),
        "adv_test_acc": adversarial_accuracy(model, Xt, yt, eps=eps, norm=norm, settings=attack,
                                             batch_size=batch_size, device=device),
        **{lip_key(p): lipschitz_estimate(model, Xt, eps=eps, norm=norm, settings=lip, batch_size=batch_size,
                                          device=device, protocol=p) for p in lip.protocols},
        "n_train_eval": int(tr.numel()),
        "n_test_eval": int(te.numel()),
    }
    if autoattack is not None:
        out["adv_test_acc_autoattack"] = autoattack_accuracy(model, Xt, yt, eps=eps, norm=norm, settings=autoattack,
                                                             batch_size=batch_size, device=device)
    out["eval_s"] = time.perf_counter() - t0
    return out


def separation_bound(data: TrainData, norm: str, eps: float, subset: int | None = None,
                     reference: bool = True, cache: str | Path | None = None,
                     lip: LipschitzSettings | None = None, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train-train separation, r, the theorem's per-class constant 1/r and the reference
    classifier's test accuracies and test Lipschitz (measured like the models', ``lip``).

    ``cache``: a folder for the separation result (None: no cache is read or written);
    ``device``: where the exact searches run."""
    from ..runs.cache import cached_separation

    assert data.raw is not None
    X, y, Xt, yt = data.raw
    res, cached = cached_separation(X, y, norm=norm, dataset=data.name, cache=cache, device=device)
    sep, r = float(res.separation), float(res.r)
    out: dict[str, Any] = {"dataset": data.name, "norm": norm, "eps": eps, "separation": sep, "r": r,
                           "inv_r": (1.0 / r) if r > 0 else None, "separation_cached": cached,
                           "n_train": int(res.n)}
    if r == 0:
        out["note"] = "the training set has identical inputs with different labels: r = 0, no bound"
    if reference:
        out["reference"] = reference_classifier(X, y, Xt, yt, norm=norm, eps=eps, subset=subset,
                                                dataset=data.name, cache=cache, lip=lip, device=device)
    return out


def reference_classifier(X: np.ndarray, y: np.ndarray, Xt: np.ndarray | None, yt: np.ndarray | None, *,
                         norm: str, eps: float, subset: int | None = None, dataset: str = "",
                         cache: str | Path | None = None, lip: LipschitzSettings | None = None,
                         drop: int = 0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Clean and certified test accuracy of :class:`sepcheck.LipschitzNNClassifier` at ``eps``
    and its test Lipschitz, measured on its torch module (``LipschitzScores``: scores
    ``1 - d(x, X_i) / r``, one per class) with the same estimator and settings as the
    models' (``lip``; None: skip the estimate). ``drop``: fit after dropping the ``drop``
    closest training points (see :func:`sepcheck.analysis.separation.robust_separation`)."""
    from .data import to_unit_float

    try:
        from ..classifier import LipschitzNNClassifier
    except ImportError:
        return {"available": False, "note": "sepcheck.classifier.LipschitzNNClassifier is not available"}
    if Xt is None or yt is None:
        return {"available": False, "note": "no test split"}
    idx = subset_indices(Xt.shape[0], subset)
    t0 = time.perf_counter()
    try:
        clf = LipschitzNNClassifier(norm=norm, r="auto", drop=drop, dataset=dataset, cache=cache,
                                    device=str(device)).fit(X, y)
    except SepcheckError as exc:
        return {"available": False, "note": str(exc)}
    cert = clf.certify(Xt[idx], yt[idx], eps)
    ca = cert.certified_accuracy
    certified = ca[eps] if isinstance(ca, dict) and eps in ca else (
        next(iter(ca.values())) if isinstance(ca, dict) and len(ca) == 1 else ca)
    out = {"available": True, "name": "LipschitzNNClassifier", "test_acc": float(cert.accuracy),
           "certified_test_acc": float(certified), "r": float(getattr(clf, "r_", float("nan"))),
           "within_r": float(getattr(cert, "within_r", float("nan"))),
           "n_test_eval": int(idx.size)}
    if getattr(clf, "dropped_", None) is not None and len(clf.dropped_):
        out["dropped"] = [int(i) for i in clf.dropped_]
    if lip is not None:
        module = clf.as_torch_module(device=str(device))
        Xq = to_unit_float(np.asarray(Xt[idx]), "X_test")
        for p in lip.protocols:
            out[lip_key(p)] = lipschitz_estimate(module, Xq, eps=eps, norm=norm, settings=lip, protocol=p,
                                                 batch_size=256, device=device)
    out["eval_s"] = time.perf_counter() - t0
    return out


_ORDER = {"natural": 0, "gr": 1, "llr": 2, "at": 3, "trades": 4}


def _paper_order(row: dict[str, Any]) -> tuple[Any, ...]:
    """Rows as in the paper's table: Natural, GR, LLR, AT, TRADES by growing beta."""
    beta = (row.get("params") or {}).get("beta") or 0.0
    return (str(row.get("dataset")), float(row.get("eps") or 0), _ORDER.get(str(row.get("method")), 9), float(beta))


def _data_key(cfg: dict[str, Any]) -> tuple[Any, ...]:
    return (cfg.get("dataset"), cfg.get("holdout"), cfg.get("data_dir"))


def evaluate_runs(run_dirs: list[str | Path], *, eps: float | None = None, subset: int | None = None,
                  attack: AttackSettings | None = None, lip: LipschitzSettings | None = None,
                  bound: bool = True, device: str = "auto", batch_size: int = 256,
                  data: TrainData | None = None, data_options: dict[str, Any] | None = None,
                  write_eval_json: bool = True, echo: Any = None,
                  cache: str | Path | None = None, autoattack: AutoAttackSettings | None = None) -> dict[str, Any]:
    """Evaluate run folders; returns ``{"rows": [...], "bounds": [...], "settings": {...}}``.

    Rows of runs on the same data set share one loaded copy of it and one bound. ``data``
    skips loading (it must be the runs' data). Each run's result also goes to its eval.json.
    """
    if not run_dirs:
        raise SepcheckError("no run folder given: pass one or more folders written by `sepcheck train`")
    if subset is not None and subset < 1:
        raise SepcheckError(f"--subset {subset} is invalid: give a number of points >= 1")
    attack = attack or AttackSettings()
    lip = lip or LipschitzSettings()
    if attack.steps < 1 or attack.restarts < 1 or lip.steps < 1 or lip.restarts < 1:
        raise SepcheckError("attack steps, restarts and Lipschitz steps must be integers >= 1")
    dev = torch_device(device)
    say = echo or (lambda s: None)
    loaded: list[tuple[Path, nn.Module, dict[str, Any], bool]] = []
    for d in run_dirs:
        model, cfg, finished = load_model(d, dev)
        loaded.append((Path(d), model, cfg, finished))
    datasets: dict[tuple[Any, ...], TrainData] = {}
    bounds: dict[tuple[Any, ...], dict[str, Any]] = {}
    rows = []
    for path, model, cfg, finished in loaded:
        key = _data_key(cfg)
        ds = _run_data(path, cfg, key, datasets, data, data_options or {})
        norm = threat_norm(cfg.get("norm", "linf"))
        e = float(eps if eps is not None else (cfg.get("eps") if cfg.get("eps") is not None else float("nan")))
        if not e > 0:
            raise SepcheckError(f"run {path} has no attack radius: give --eps")
        log = read_log(RunDir(path))
        say(f"evaluating {path} ({cfg.get('label')})")
        metrics = evaluate_model(model, ds, eps=e, norm=norm, subset=subset, attack=attack, lip=lip,
                                 batch_size=batch_size, device=dev, autoattack=autoattack)
        row = {"run": str(path), "label": cfg.get("label"), "method": cfg.get("method"),
               "params": cfg.get("params"), "arch": cfg.get("arch"), "dataset": ds.name, "norm": norm, "eps": e,
               "epochs": cfg.get("epochs"), "epochs_done": int(log[-1]["epoch"]) if log else None,
               "finished": finished, **metrics}
        bkey = (key, norm, e)
        if bound and bkey not in bounds:
            say(f"separation bound for {ds.name} ({norm}, eps={e:g})")
            bounds[bkey] = separation_bound(ds, norm, e, subset=subset, cache=cache, lip=lip, device=dev)
        if bound:
            _add_bound(row, bounds[bkey], lip)
        row["attack"] = attack.resolved(e)
        if autoattack is not None:
            row["autoattack"] = asdict(autoattack)
        row["lipschitz_settings"] = asdict(lip)
        if write_eval_json:
            write_json(RunDir(path).eval, row)
        rows.append(row)
    rows.sort(key=_paper_order)
    return _report(rows, list(bounds.values()), datasets.values(), attack, lip, subset, autoattack)


def _run_data(path: Path, cfg: dict[str, Any], key: tuple[Any, ...], datasets: dict[tuple[Any, ...], TrainData],
              data: TrainData | None, opts: dict[str, Any]) -> TrainData:
    """The data set of the run at ``path`` (config ``cfg``): ``data``, else loaded once per
    ``key`` into ``datasets``; a SepcheckError when it no longer matches the run."""
    if key not in datasets:
        datasets[key] = data if data is not None else load_data(
            cfg["dataset"], holdout=cfg.get("holdout"), data_dir=opts.get("data_dir") or cfg.get("data_dir"),
            download=opts.get("download", True), verify=opts.get("verify", True))
    ds = datasets[key]
    if list(ds.input_shape) != list(cfg["data"]["input_shape"]) or ds.classes != cfg["data"]["classes"]:
        raise SepcheckError(f"the data set of {path} no longer matches the run (input shape or classes "
                            "changed): evaluate with the data the run was trained on")
    return ds


def _add_bound(row: dict[str, Any], bound: dict[str, Any], lip: LipschitzSettings) -> None:
    """The bound columns of a row: separation, r, 1/r and the model's Lipschitz estimate over
    the reference classifier's."""
    row.update({"separation": bound["separation"], "r": bound["r"], "inv_r": bound["inv_r"]})
    ref = bound.get("reference") or {}
    main = lip_key(lip.protocols[0])
    if ref.get(main):
        # like with like: the same estimator on the model and on the theorem's classifier
        row["lipschitz_vs_reference"] = row[main] / ref[main]


def _report(rows: list[dict[str, Any]], bounds: list[dict[str, Any]], datasets: Iterable[TrainData],
            attack: AttackSettings, lip: LipschitzSettings, subset: int | None,
            autoattack: AutoAttackSettings | None) -> dict[str, Any]:
    """:func:`evaluate_runs`'s result from its sorted rows (settings described at the first row's
    norm and eps)."""
    first = rows[0]
    return {
        "rows": rows,
        "bounds": bounds,
        "settings": {
            "attack": attack.resolved(first["eps"]),
            "lipschitz": asdict(lip),
            "subset": subset,
            "description": describe_settings(first["norm"], first["eps"], attack, lip)
            + ("; " + autoattack.describe(first["norm"], first["eps"]) if autoattack is not None else ""),
            "autoattack": None if autoattack is None else asdict(autoattack),
        },
        "notes": sorted({n for d in datasets for n in d.notes}),
    }

__all__ = ["AttackSettings", "LipschitzSettings", "LipProtocol", "LIP_PROTOCOLS", "lip_key", "local_lipschitz",
           "local_lipschitz_paper_code", "lipschitz_estimate",
           "adversarial_accuracy", "evaluate_model", "evaluate_runs", "separation_bound",
           "reference_classifier", "load_model", "describe_settings", "subset_indices"]
