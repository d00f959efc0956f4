"""Trained runs against the robust-accuracy ceiling: each run's measured robust accuracy (PGD,
AutoAttack; from its eval.json, written by ``sepcheck eval``) next to the ceiling of exactly
the test points it was evaluated on, at its eps and in its norm.

The ceiling bounds the *true* robust accuracy of any classifier on those points. An attack
only over-estimates the true robust accuracy, so a measured value above the ceiling means the
attack missed adversarial examples, or the run used another eps, norm or pixel scale, or a bug.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import SepcheckError
from .config import dataset_spec
from .data import load as load_data
from .data import prepare
from .evaluate import subset_indices
from .runs import RunDir, read_config, read_json

#: eval.json keys of the robust accuracies -> the attack's name
ATTACK_KEYS = {"adv_test_acc": "PGD", "adv_test_acc_autoattack": "AutoAttack"}


def run_points(run_dirs: list[str | os.PathLike], *, time_limit: float = 10.0,
               cache: str | os.PathLike | None = None, data_options: dict[str, Any] | None = None,
               opened: tuple[str, Any] | None = None, **engine_options: Any) -> list[dict[str, Any]]:
    """One dict per run and attack: ``run``, ``label``, ``dataset``, ``norm``, ``eps``,
    ``attack``, ``accuracy`` (measured), ``ceiling`` and ``upper`` (its bounds; equal when
    ``exact``), ``n_points`` (test points evaluated; a seeded subset when ``subset``),
    ``above`` (the measured value exceeds the upper bound: impossible for a true robust
    accuracy). ``cache``: a folder for the ceilings (see :func:`sepcheck.runs.cache.cached_ceiling`).
    ``data_options``: ``data_dir`` (overrides the run's), ``download``, ``verify`` for
    opening a run's data set. ``opened``: (spec, :class:`sepcheck.datasets.Dataset`) the
    caller opened with ``data_options``: a run on that spec and data folder is prepared from
    it (:func:`sepcheck.train.data.prepare`) instead of being opened again.
    """
    from ..runs.cache import cached_ceiling

    opts = data_options or {}
    data: dict[tuple[Any, ...], Any] = {}
    out = []
    for d in run_dirs:
        run = RunDir(d)
        cfg = read_config(run)
        if not run.eval.exists():
            raise SepcheckError(f"run {run.path} has no {run.eval.name}: evaluate it first with `sepcheck eval {d}`")
        row = read_json(run.eval, "evaluation")
        eps, norm, n_eval = row.get("eps"), row.get("norm"), row.get("n_test_eval")
        if not isinstance(eps, (int, float)) or not eps >= 0 or not isinstance(norm, str) or not isinstance(n_eval, int):
            raise SepcheckError(f"{run.eval} lacks eps, norm or n_test_eval: re-run `sepcheck eval {d}`")
        key = (cfg.get("dataset"), cfg.get("holdout"), cfg.get("data_dir"))
        if key not in data:
            data_dir = opts.get("data_dir") or cfg.get("data_dir")
            if opened is not None and cfg["dataset"] == dataset_spec(opened[0]) and data_dir == opts.get("data_dir"):
                data[key] = prepare(opened[1], holdout=cfg.get("holdout"))
            else:
                data[key] = load_data(cfg["dataset"], holdout=cfg.get("holdout"), data_dir=data_dir,
                                      download=opts.get("download", True), verify=opts.get("verify", True))
        ds = data[key]
        _, _, Xt, yt = ds.raw
        if Xt is None or yt is None:
            raise SepcheckError(f"the data of run {run.path} has no test split to place it against")
        idx = subset_indices(Xt.shape[0], n_eval)
        res, _ = cached_ceiling(Xt[idx], yt[idx], [float(eps)], norm=norm, time_limit=time_limit,
                                dataset=f"{ds.name} test", cache=cache, **engine_options)
        for k, attack in ATTACK_KEYS.items():
            acc = row.get(k)
            if not isinstance(acc, (int, float)):
                continue
            out.append({
                "run": str(Path(d)), "label": cfg.get("label") or Path(d).name, "dataset": ds.name,
                "split": "test", "norm": res.norm, "eps": float(eps), "attack": attack, "accuracy": float(acc),
                "ceiling": float(res.accuracy[0]), "upper": float(res.upper[0]), "exact": bool(res.exact[0]),
                "n_points": int(idx.size), "subset": bool(idx.size < Xt.shape[0]),
                "above": float(acc) > float(res.upper[0]) + 1e-12,
            })
    return out


def above_message(point: dict[str, Any]) -> str:
    """The loud line for a run above the ceiling."""
    return (f"{point['label']} ({point['run']}): {point['attack']} robust accuracy {point['accuracy']:.4f} is "
            f"above the ceiling {point['upper']:.4f} ({point['norm']}, eps={point['eps']:g}, "
            f"{point['n_points']} test points): impossible for a true robust accuracy -- the attack missed "
            "adversarial examples, or eps/norm/pixel scale differ from the data's, or a bug")


__all__ = ["ATTACK_KEYS", "above_message", "run_points"]
