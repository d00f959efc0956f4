"""The sections of a report, one function each, in report order: :func:`header`,
:func:`separation`, :func:`histograms`, :func:`class_pairs`, :func:`ceilings`,
:func:`certified`, :func:`hygiene` and :func:`image_pairs`.

Each takes the checked :class:`~sepcheck.report.inputs.Inputs` (and what the sections before
it returned), computes its part of ``report.json`` exactly through the engine (cached in
``inputs.cache`` when given) and draws its :class:`~sepcheck.report.model.Figure` objects;
none writes a file. The timed steps are logged through :meth:`Inputs.step`. Distances are on
the scale of :func:`sepcheck.separation`; the primary norm is linf.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from ..analysis import plots
from ..analysis.certify import build_result
from ..analysis.classpairs import ClassPairs, class_pair_separation
from ..analysis.conflicts import find_conflicts
from ..analysis.hygiene import (
    HygieneReport,
    cross_label_table,
    label_noise_table,
    nearest_any,
    nearest_other_label,
    test_train_table,
)
from ..analysis.separation import SeparationResult, separation_after_drop
from ..core.fileio import to_jsonable
from ..engine import nearest_by_class
from ..engine.options import SearchOptions
from ..runs.cache import cached_ceiling, cached_separation
from .arrays import cached_arrays, hygiene_table, table_columns
from .figures import image_array, subplots
from .inputs import Inputs
from .model import Figure
from .values import NORMS, certified_curve, closest_pairs, default_grid

#: norm -> (distance, index) of each test point's nearest training point of any label
Nearest = dict[str, tuple[np.ndarray, np.ndarray]]
#: norm -> the test points' nearest training point per class (``d``, ``i``, ``classes``)
ByClass = dict[str, dict[str, np.ndarray]]


def header(inp: Inputs) -> dict[str, Any]:
    """The data set's part of report.json: name, source, notes, sizes, units, the marked
    eps per norm (``typical_eps``) and whether the user gave it (``eps_given``), tau and the
    measured runs."""
    ds, X, Xt = inp.ds, inp.X, inp.Xt
    return {"dataset": ds.name, "source": ds.source, "notes": list(ds.notes),
            "n": int(X.shape[0]), "n_test": 0 if Xt is None else int(Xt.shape[0]),
            "dim": int(X.shape[1]), "n_classes": int(np.unique(inp.y).size), "units": inp.units,
            "typical_eps": inp.typical, "eps_given": inp.eps_given, "tau": inp.tau, "runs": inp.runs}


# ----- separation ----------------------------------------------------------------------------
def separation(inp: Inputs) -> tuple[dict[str, SeparationResult], ByClass, dict[str, Any]]:
    """Per norm: the separation result (with its test-train part when there is a test split),
    the test points' nearest training point per class, and the summary of report.json."""
    seps: dict[str, SeparationResult] = {}
    byclass: ByClass = {}
    summary: dict[str, Any] = {}
    for norm in NORMS:
        with inp.step(f"separation {norm}"):
            seps[norm], bc, summary[norm] = _separation(inp, norm)
            if bc is not None:
                byclass[norm] = bc
    return seps, byclass, summary


def _separation(inp: Inputs, norm: str) -> tuple[SeparationResult, dict[str, np.ndarray] | None, dict[str, Any]]:
    X, y, Xt, yt = inp.X, inp.y, inp.Xt, inp.yt
    # train-train under the same cache key as `sepcheck separation`, the ceiling and the classifier
    res, from_cache = cached_separation(X, y, norm=norm, dataset=inp.ds.name, cache=inp.cache,
                                        content_hash=inp.sep_digest, **inp.opts)
    bc = None
    if Xt is not None:  # test-train: one search per class serves this, the certified accuracy and hygiene
        bc, _ = cached_arrays("byclass", (inp.test_digest, norm), partial(_by_class, X, y, Xt, norm, inp.opts),
                              inp.cache)
        res.test_distances, res.test_neighbors = nearest_other_label(bc["d"], bc["i"], bc["classes"], yt)
        res.test_conflicts = find_conflicts(X, y, np.flatnonzero(res.test_distances == 0), Xt, yt)
    s = res.summary()
    s["cached"] = from_cache
    if inp.drop:
        kd, _ = cached_arrays("drop", (inp.digest, norm, inp.drop),
                              partial(_after_drop, X, y, inp.drop, norm, res, inp.opts), inp.cache)
        sep_k = float(kd["separation"])
        s["drop"] = {"k": int(inp.drop), "separation": sep_k, "r": sep_k / 2, "dropped": kd["dropped"].tolist()}
    return res, bc, s


def _by_class(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, norm: str, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    d, i, classes = nearest_by_class(X, y, Xt, norm=norm, **opts)
    return {"d": d, "i": i, "classes": classes}


def _after_drop(X: np.ndarray, y: np.ndarray, drop: int, norm: str, res: SeparationResult,
                opts: dict[str, Any]) -> dict[str, np.ndarray]:
    kept, dropped = separation_after_drop(X, y, drop, norm=norm, result=res, **opts)
    return {"separation": np.float64(kept.separation), "dropped": dropped}


def histograms(inp: Inputs, seps: dict[str, SeparationResult]) -> list[Figure]:
    """Per norm: the histograms of the training (and test) points' distances."""
    figures = []
    for norm in NORMS:
        res = seps[norm]
        mark = inp.typical[norm]
        fig, axes = subplots(2 if res.test_distances is not None else 1)
        res.plot(ax=axes[0], eps=mark)
        if res.test_distances is not None:
            res.plot(ax=axes[1], eps=mark, test=True)
        figures.append(Figure(f"histogram_{norm}", f"Separation histograms ({norm})",
                              f"Distance from each training point (left) and test point (right) to the nearest "
                              f"training point of another label ({norm}); dashed: the minimum and 2ε"
                              + ("" if mark is not None else " (no ε to mark)") + ".", fig))
    return figures


# ----- class pairs, ceiling, certified accuracy ----------------------------------------------
def class_pairs(inp: Inputs) -> tuple[dict[str, Any], list[Figure]]:
    """The linf separation of each pair of classes (report.json) and its matrix figure."""
    with inp.step("class pairs linf"):
        cpa, _ = cached_arrays("classpairs", (inp.digest, "linf"), partial(_class_pair_arrays, inp.X, inp.y, inp.opts),
                               inp.cache)
        cp = ClassPairs(cpa["classes"], cpa["distances"], cpa["pairs"], str(cpa["norm"]), str(cpa["units"]))
        data = cp.to_dict()
        fig, ax = subplots(1, width=5.2, height=4.4)
        plots.plot_class_pairs(cp.classes, cp.distances, ax=ax[0], names=inp.ds.classes,
                               title=f"{inp.ds.name}: class-pair separation (linf)")
        figure = Figure("class_pairs_linf", "Class-pair separation (linf)",
                        "Minimum linf distance between the training points of each pair of classes.", fig)
    return data, [figure]


def _class_pair_arrays(X: np.ndarray, y: np.ndarray, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    return dict(vars(class_pair_separation(X, y, norm="linf", **opts)))


def ceilings(inp: Inputs, seps: dict[str, SeparationResult]) -> tuple[dict[str, Any], list[Figure]]:
    """Per norm: the robust-accuracy ceiling on its grid (``inp.eps_grid``, else
    :func:`default_grid`) with the runs of that norm, as report.json curves and figures."""
    results: dict[str, Any] = {}
    figures = []
    for norm in NORMS:
        with inp.step(f"ceiling {norm}"):
            results[norm], fig = _ceiling(inp, norm, seps[norm].distances)
            figures.append(fig)
    return {n: c.to_dict(sacrificed=False) for n, c in results.items()}, figures


def _ceiling(inp: Inputs, norm: str, distances: np.ndarray) -> tuple[Any, Figure]:
    typical = inp.typical[norm]
    grid = np.asarray(inp.eps_grid[norm], dtype=np.float64) if inp.eps_grid and norm in inp.eps_grid \
        else default_grid(distances, typical)
    mine = [r for r in inp.runs if r["norm"] == norm]
    c, _ = cached_ceiling(inp.X, inp.y, grid, norm=norm, time_limit=inp.time_limit, dataset=inp.ds.name,
                          cache=inp.cache, nearest_distances=distances, content_hash=inp.digest, **inp.opts)
    fig, ax = subplots(1)
    c.plot(ax=ax[0], typical_eps=typical, runs=mine or None)
    marked = {"linf": "dashed: the typical linf ε", "l2": "dashed: the given l2 ε"}[norm] if typical else (
        "no typical ε is known for l2 (--eps-l2 marks one)" if norm == "l2" else "no typical ε known")
    return c, Figure(f"ceiling_{norm}", f"Robust-accuracy ceiling ({norm})",
                     f"Best robust accuracy any classifier can reach on the training sample at radius ε "
                     f"({norm}; hollow markers: lower bounds after the time limit); {marked}"
                     + ("; points: trained runs, their PGD and AutoAttack accuracy on their test points (crosses: "
                        "above the ceiling of those test points)" if mine else "") + ".", fig)


def certified(inp: Inputs, seps: dict[str, SeparationResult],
              byclass: ByClass) -> tuple[dict[str, Any], Nearest, list[Figure]]:
    """Per norm, when there is a test split: the certified accuracy of the 1/r-Lipschitz 1-NN
    classifier (report.json) and one figure of both curves; and the test points' nearest
    training point of any label (for :func:`hygiene` and :func:`image_pairs`). Nothing
    without a test split."""
    curves: dict[str, Any] = {}
    nearest: Nearest = {}
    if inp.Xt is None:
        return curves, nearest, []
    for norm in NORMS:
        with inp.step(f"certified accuracy {norm}"):
            bc = byclass[norm]
            nearest[norm] = nearest_any(bc["d"], bc["i"])
            curves[norm] = _certified_curve(inp, norm, bc, seps[norm])
    fig, ax = subplots(len(curves))
    for k, (norm, curve) in enumerate(curves.items()):
        plots.plot_certified({norm: curve}, ax=ax[k], typical_eps=inp.typical,
                             title=f"{inp.ds.name}: 1/r-Lipschitz 1-NN ({norm})")
    figure = Figure("certified", "Certified accuracy of the 1/r-Lipschitz 1-NN classifier",
                    "Fraction of test points classified correctly with certified radius "
                    "(d_other − d_own)/2 > ε (left linf, right l2); dotted: the marked ε.", fig)
    return curves, nearest, [figure]


def _certified_curve(inp: Inputs, norm: str, bc: dict[str, np.ndarray], res: SeparationResult) -> dict[str, Any]:
    cr = build_result(bc["d"], bc["i"], bc["classes"], inp.yt, (0.0,), r=res.r, separation=res.separation,
                      norm=norm, units=res.units, dataset=inp.ds.name)
    curve = {"accuracy": cr.accuracy, "r": cr.r, "within_r": cr.within_r, **certified_curve(cr.radius, cr.correct)}
    typical = inp.typical[norm]
    if typical is not None:
        curve["at_typical_eps"] = float(np.count_nonzero(cr.correct & (cr.radius > typical)) / max(1, cr.n))
    return curve


# ----- hygiene and image grids ---------------------------------------------------------------
def hygiene(inp: Inputs, seps: dict[str, SeparationResult], nearest: Nearest) -> dict[str, Any]:
    """The linf hygiene lists within tau (their counts and first 50 rows, report.json), with
    the quantiles of the test points' nearest training distances per norm."""
    with inp.step("hygiene linf"):
        hr = _hygiene_report(inp, seps["linf"], nearest)
        # its counts and first 50 rows per list, less what the report says elsewhere
        hyg = {k: v for k, v in hr.to_dict(top=50).items() if k not in ("dataset", "units", "k", "n", "n_test")}
        if "linf" in nearest:
            # distance within which 1 %, 3.3 % (ciFAIR's share of CIFAR-10), 10 %, 50 % of the test
            # points have a training point of any label, per norm
            qs = (0.01, 0.033, 0.1, 0.5)
            hyg["test_train_nearest_quantiles"] = {
                norm: dict(zip(map(str, qs), np.quantile(nearest[norm][0], qs).tolist(), strict=True))
                for norm in nearest}
        data = to_jsonable(hyg)
    return data


def _hygiene_report(inp: Inputs, res: SeparationResult, nearest: Nearest) -> HygieneReport:
    X, y, t = inp.X, inp.y, inp.tau
    na, _ = cached_arrays("noise", (inp.digest, "linf"), partial(_noise_arrays, X, y, res, inp.opts), inp.cache)
    noise = hygiene_table("label_noise", na)
    ca, _ = cached_arrays("crosslabel", (inp.digest, "linf", repr(t)), partial(_cross_label_arrays, X, y, t, inp.opts),
                          inp.cache)
    hr = HygieneReport(tau=t, norm="linf", units=inp.units, k=None, n=int(X.shape[0]),
                       cross_label=hygiene_table("cross_label", ca), label_noise=noise, margin=na["margin"],
                       dataset=inp.ds.name)
    if "linf" in nearest:
        hr.test_nearest, hr.test_nearest_index = nearest["linf"]
        hr.test_train = test_train_table(hr.test_nearest, hr.test_nearest_index, inp.yt, y, t)
    return hr


def _noise_arrays(X: np.ndarray, y: np.ndarray, res: SeparationResult, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    table, margin = label_noise_table(X, y, p=math.inf, k=None, result=res, options=SearchOptions.of(**opts))
    return {**table_columns(table), "margin": margin}


def _cross_label_arrays(X: np.ndarray, y: np.ndarray, tau: float, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    return table_columns(cross_label_table(X, y, tau, p=math.inf, options=SearchOptions.of(**opts)))


def image_pairs(inp: Inputs, seps: dict[str, SeparationResult], nearest: Nearest) -> list[Figure]:
    """When the rows are images and ``inp.pairs`` > 0: the closest cross-label training pairs
    and, with a test split, the test images nearest to the training set (linf)."""
    images = image_array(np.asarray(inp.ds.X))
    figures = []
    if images is not None and inp.pairs > 0:
        figures.append(_closest_pairs_figure(inp, images, seps["linf"]))
        if "linf" in nearest:
            figures.append(_test_train_figure(inp, images, nearest["linf"]))
    return figures


def _closest_pairs_figure(inp: Inputs, images: np.ndarray, res: SeparationResult) -> Figure:
    y = inp.y
    cpairs, dist = closest_pairs(res, inp.pairs)
    a, b = cpairs[:, 0], cpairs[:, 1]
    caps = [f"{y[i]} | {y[j]}\n{d:.3f}" for i, j, d in zip(a, b, dist, strict=True)]
    fig = plots.plot_image_pairs(images[a], images[b], caps, row_labels=("train", "train"),
                                 title=f"{inp.ds.name}: closest training pairs with different labels (linf)")
    return Figure("closest_pairs_linf", "Closest cross-label training pairs (linf)",
                  "Top and bottom: the two training images of a pair; labels and linf distance below.", fig)


def _test_train_figure(inp: Inputs, images: np.ndarray, nearest: tuple[np.ndarray, np.ndarray]) -> Figure:
    y, yt = inp.y, inp.yt
    timages = image_array(np.asarray(inp.ds.X_test))
    dn, jn = nearest
    q = np.lexsort((np.arange(dn.size), dn))[:inp.pairs]
    caps = [f"{yt[k]} | {y[jn[k]]}\n{dn[k]:.3f}" for k in q]
    fig = plots.plot_image_pairs(timages[q], images[jn[q]], caps, row_labels=("test", "train"),
                                 title=f"{inp.ds.name}: test images and their nearest training image (linf)")
    return Figure("test_train_linf", "Test-train near-duplicates (linf)",
                  "Top: the test images closest to the training set; bottom: their nearest "
                  "training image (any label); labels (test | train) and linf distance below.", fig)


__all__ = ["ByClass", "Nearest", "ceilings", "certified", "class_pairs", "header", "histograms", "hygiene",
           "image_pairs", "separation"]
