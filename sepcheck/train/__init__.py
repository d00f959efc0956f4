"""Training and evaluation: the five methods of the paper's table, and how close the trained
networks come to the separation bound.

Methods (``sepcheck.train.losses``, one loss function each): natural, gr, llr, at, trades.
Models (``sepcheck.train.models``): mnist_cnn, wrn40_10 (+ dropout variants), resnet50,
tiny_cnn, mlp. A run folder holds config.json, log.jsonl and the latest and final checkpoints.

>>> from sepcheck.train import TrainConfig, train, evaluate_runs        # doctest: +SKIP
>>> train(TrainConfig("at", "data.npz", eps=0.1, epochs=5), "runs/at")    # doctest: +SKIP

Modules: ``config`` (TrainConfig and one parameter dataclass per method), ``trainer`` (the
loop), ``optim``, ``rng``, ``metrics``, ``losses``, ``attacks``, ``models``, ``data``,
``distributed``, ``runs`` (the run folder), ``evaluate`` and ``report``.
>>> report = evaluate_runs(["runs/at"])                                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attacks import pgd, project
    from .config import ATParams, GRParams, LLRParams, NaturalParams, TradesParams, TrainConfig
    from .evaluate import (
        AttackSettings,
        LipschitzSettings,
        evaluate_runs,
        lipschitz_estimate,
        load_model,
        local_lipschitz,
    )
    from .losses import METHODS, get_loss, method_label
    from .models import ARCHS, build_model, default_arch, register_arch
    from .report import save_plot, to_csv, to_markdown
    from .trainer import TrainResult, train

    train_model = train

#: public name -> the submodule that defines it; loaded on first use, so that importing
#: ``sepcheck.train.config`` (the command line's defaults) imports no torch
_SOURCES = {
    **dict.fromkeys(("pgd", "project"), "attacks"),
    **dict.fromkeys(("ATParams", "GRParams", "LLRParams", "NaturalParams", "TradesParams", "TrainConfig"), "config"),
    **dict.fromkeys(("AttackSettings", "LipschitzSettings", "evaluate_runs", "lipschitz_estimate", "load_model",
                     "local_lipschitz"), "evaluate"),
    **dict.fromkeys(("METHODS", "get_loss", "method_label"), "losses"),
    **dict.fromkeys(("ARCHS", "build_model", "default_arch", "register_arch"), "models"),
    **dict.fromkeys(("save_plot", "to_csv", "to_markdown"), "report"),
    **dict.fromkeys(("TrainResult", "train"), "trainer"),
    #: the same function as :func:`train`, under a name that can be re-exported from ``sepcheck``
    #: without shadowing the ``sepcheck.train`` subpackage
    "train_model": "trainer",
}


def __getattr__(name: str) -> Any:
    """The public names, imported from their submodules on first use (most import torch)."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), "train" if name == "train_model" else name)
    globals()[name] = value
    return value


__all__ = [
    "METHODS",
    "ARCHS",
    "TrainConfig",
    "NaturalParams",
    "GRParams",
    "LLRParams",
    "ATParams",
    "TradesParams",
    "TrainResult",
    "train",
    "train_model",
    "evaluate_runs",
    "AttackSettings",
    "LipschitzSettings",
    "lipschitz_estimate",
    "local_lipschitz",
    "load_model",
    "get_loss",
    "method_label",
    "build_model",
    "default_arch",
    "register_arch",
    "pgd",
    "project",
    "to_markdown",
    "to_csv",
    "save_plot",
]
