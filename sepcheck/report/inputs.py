"""The checked inputs of one report: :func:`check_inputs` validates the arguments of
:func:`sepcheck.report.build_report` (one-line :class:`SepcheckError` before anything is
computed), measures the given runs and derives the cache keys; :class:`Inputs` carries them,
with the log and the per-step seconds (:meth:`Inputs.step`), to the section functions."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.ceiling import check_time_limit
from ..analysis.hygiene import check_tau
from ..analysis.separation import units_of
from ..core.errors import SepcheckError
from ..core.hashing import array_digest
from ..core.validation import as_features, as_labels


@dataclass
class Inputs:
    """The data set, its checked arrays and options, and the cache keys of one report."""

    ds: Any
    X: np.ndarray
    y: np.ndarray
    Xt: np.ndarray | None  # the test split, None when there is none
    yt: np.ndarray | None
    typical: dict[str, float | None]  # norm -> the eps to mark (None: none)
    eps_given: dict[str, bool]  # norm -> the marked eps is the user's (else the data set's)
    tau: float
    drop: int
    pairs: int
    time_limit: float
    eps_grid: dict[str, Sequence[float]] | None
    runs: list[dict[str, Any]]  # the measured runs (run_points)
    cache: str | os.PathLike | None
    opts: dict[str, Any]  # progress and the engine options of every search
    units: str
    digest: str  # the ceiling's and the report's own cache keys
    sep_digest: str  # cached_separation's: train split, no test split
    test_digest: str
    log: Callable[[str], None]
    timing: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Log ``name ...``, then record the seconds of the block in ``timing[name]`` when it
        completes."""
        self.log(f"{name} ...")
        t0 = time.perf_counter()
        yield
        self.timing[name] = time.perf_counter() - t0


def check_inputs(
    ds: Any,
    *,
    eps: float | None,
    eps_l2: float | None,
    eps_grid: dict[str, Sequence[float]] | None,
    tau: float | None,
    drop: int,
    runs: Sequence[str | os.PathLike],
    pairs: int,
    time_limit: float,
    cache: str | os.PathLike | None,
    progress: bool,
    say: Callable[[str], None] | None,
    data_options: dict[str, Any] | None,
    spec: str | None,
    engine_options: dict[str, Any],
) -> Inputs:
    """The :class:`Inputs` of ``build_report(ds, ...)`` (its parameters, same meaning)."""
    X = as_features(ds.X, "X")
    y = as_labels(ds.y, X.shape[0], "y", "X")
    has_test = not ds.test_only and ds.X_test is not None
    Xt = as_features(ds.X_test, "X_test") if has_test else None
    yt = as_labels(ds.y_test, Xt.shape[0], "y_test", "X_test") if has_test else None
    typical = {"linf": eps if eps is not None else ds.eps, "l2": eps_l2}
    for name, v in typical.items():
        if v is not None and not (math.isfinite(v) and v > 0):
            raise SepcheckError(f"eps {v!r} ({name}) is invalid: give an attack radius > 0")
    t = check_tau(tau if tau is not None else (typical["linf"] or 0.0))
    if isinstance(drop, bool) or not isinstance(drop, (int, np.integer)) or not 0 <= drop < X.shape[0]:
        raise SepcheckError(f"drop={drop!r} is invalid: give a number of training points from 0 to {X.shape[0] - 1}")
    time_limit = check_time_limit(time_limit)
    run_points: list[dict[str, Any]] = []
    if runs:
        from ..train.ceiling_points import run_points as measured_points

        run_points = measured_points(list(runs), time_limit=time_limit, cache=cache, data_options=data_options,
                                     opened=None if spec is None else (spec, ds), **engine_options)
    opts = {"progress": progress, **engine_options}
    units = units_of(X, False)
    digest = array_digest(X, y)
    sep_digest = array_digest(X, y, None, None)
    test_digest = sep_digest if Xt is None else array_digest(X, y, Xt, yt)
    return Inputs(ds=ds, X=X, y=y, Xt=Xt, yt=yt, typical=typical, eps_given={"linf": eps is not None,
                  "l2": eps_l2 is not None}, tau=t, drop=drop, pairs=pairs,
                  time_limit=time_limit, eps_grid=eps_grid, runs=run_points, cache=cache, opts=opts,
                  units=units, digest=digest, sep_digest=sep_digest, test_digest=test_digest,
                  log=say or _quiet)


def _quiet(line: str) -> None:
    """The log when none is given: says nothing."""


__all__ = ["Inputs", "check_inputs"]
