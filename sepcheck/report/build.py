"""build_report: check the inputs (:func:`~sepcheck.report.inputs.check_inputs`), then call
the section functions of :mod:`sepcheck.report.sections` in report order and collect their
report.json parts and figures into one :class:`~sepcheck.report.model.Report`. Nothing is
written here (:meth:`Report.write` writes the folder)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.fileio import to_jsonable
from . import sections
from .figures import use_agg
from .inputs import check_inputs
from .model import Report


def build_report(
    dataset: Any,
    *,
    eps: float | None = None,
    eps_l2: float | None = None,
    eps_grid: dict[str, Sequence[float]] | None = None,
    tau: float | None = None,
    drop: int = 10,
    runs: Sequence[str | os.PathLike] = (),
    pairs: int = 8,
    time_limit: float = 10.0,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    data_options: dict[str, Any] | None = None,
    spec: str | None = None,
    **engine_options: Any,
) -> Report:
    """Compute and draw the report of a data set.

    Parameters
    ----------
    dataset
        A :class:`sepcheck.datasets.Dataset` (``open_dataset``): train split, optional
        test split, typical eps and name.
    eps
        The linf radius to mark (default: the data set's typical eps).
    eps_l2
        An l2 radius to mark on the l2 figures (none by default: the registry has none).
    eps_grid
        norm -> radii of the ceiling curve (default :func:`~sepcheck.report.values.default_grid`).
    tau
        Near-duplicate radius (linf) of the hygiene lists (default: ``eps``, else 0:
        exact duplicates only).
    drop
        Robust separation after dropping this many closest training points (0: none).
    runs
        Run folders of ``sepcheck train`` / ``sepcheck eval`` to place against the ceiling
        (:func:`sepcheck.train.ceiling_points.run_points`).
    pairs
        Image pairs per grid.
    time_limit
        Seconds per conflict-graph component (:func:`sepcheck.analysis.ceiling.robust_ceiling`).
    cache
        Results cache folder (None: compute everything).
    progress
        Engine progress bars on stderr.
    say
        Receives one line per step (the CLI prints them on stderr).
    data_options
        ``data_dir``, ``download``, ``verify``: how the runs' data sets are opened.
    spec
        The name or path ``dataset`` was opened from (with ``data_options``): runs on it
        reuse it instead of opening it again.
    engine_options
        backend, device, memory_budget.
    """
    use_agg()
    t_start = time.perf_counter()
    inp = check_inputs(dataset, eps=eps, eps_l2=eps_l2, eps_grid=eps_grid, tau=tau, drop=drop, runs=runs, pairs=pairs,
                       time_limit=time_limit, cache=cache, progress=progress, say=say, data_options=data_options,
                       spec=spec, engine_options=engine_options)
    data = sections.header(inp)
    seps, byclass, data["summary"] = sections.separation(inp)
    figures = sections.histograms(inp, seps)
    data["class_pairs"], drawn = sections.class_pairs(inp)
    figures += drawn
    data["ceiling"], drawn = sections.ceilings(inp, seps)
    figures += drawn
    data["certified"], nearest, drawn = sections.certified(inp, seps, byclass)
    figures += drawn
    data["hygiene"] = sections.hygiene(inp, seps, nearest)
    figures += sections.image_pairs(inp, seps, nearest)
    inp.timing["total"] = time.perf_counter() - t_start
    data["timing"] = inp.timing
    return Report(data=to_jsonable(data), figures=figures)


__all__ = ["build_report"]
