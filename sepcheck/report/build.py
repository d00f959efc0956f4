"""One report of a labelled data set: separation, class pairs, robust-accuracy ceiling,
certified accuracy of the 1/r classifier and data hygiene, as HTML, Markdown, JSON and figures.

:func:`build_report` computes everything (exact, through the engine; cached in ``cache``
when given) and draws the figures; :meth:`Report.write` writes ``report.html`` (opens from
disk: the figures are files next to it, referenced relatively), ``report.md``,
``report.json`` and ``figures/`` (each figure as PNG and PDF) into a temporary folder that is
renamed onto the output folder at the end, so nothing half-written is ever left.

Conventions: distances on the scale of :func:`sepcheck.separation` (the [0, 1] pixel scale
for uint8 data), the primary norm is linf (histograms, class pairs, image grids, hygiene),
the separation, ceiling and certified curves are given for linf and l2. The typical eps of
a data set is the registry's linf radius (``--eps`` overrides it); for l2 the registry has
none: ``eps_l2`` (``--eps-l2``) marks one when given, nothing is marked otherwise.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.ceiling import check_time_limit
from ..analysis.certify import build_result
from ..analysis.classpairs import ClassPairs, class_pair_separation
from ..analysis.conflicts import find_conflicts
from ..analysis.hygiene import (
    HygieneReport,
    HygieneTable,
    check_tau,
    cross_label_table,
    label_noise_table,
    nearest_any,
    nearest_other_label,
    test_train_table,
)
from ..analysis.separation import SeparationResult, separation_after_drop, units_of
from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, default_file_mode, json_text, to_jsonable
from ..core.hashing import array_digest
from ..core.validation import as_features, as_labels
from ..engine import nearest_by_class
from ..runs.cache import cached, cached_ceiling, cached_separation

#: the norms whose separation, ceiling and certified curve the report shows (primary first)
NORMS = ("linf", "l2")
#: number of eps values of a default ceiling grid
GRID_SIZE = 20
#: default grid: from 0 to half the per-point distance quantile below (few conflict edges)
GRID_QUANTILE = 0.05


@dataclass
class Figure:
    """One drawn figure: a file stem under figures/, a title and a caption."""

    name: str
    title: str
    caption: str
    figure: Any


@dataclass
class Report:
    """What :func:`build_report` returns: the JSON-able results and the drawn figures.

    Attributes
    ----------
    data
        Everything the report says, as plain JSON-able values (``report.json``): keys
        ``dataset``, ``summary`` (norm -> numbers), ``class_pairs``, ``ceiling`` (norm ->
        curve), ``certified`` (norm -> curve), ``hygiene``, ``runs``, ``timing``.
    figures
        The figures in report order.
    """

    data: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)

    def write(self, out: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the report folder ``out`` (see the module docstring). An existing ``out``
        is a one-line error unless ``force`` (then it is replaced, only once the new report
        is complete)."""
        target = check_out(out, force)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        try:
            figs = tmp / "figures"
            figs.mkdir()
            for f in self.figures:
                f.figure.savefig(figs / f"{f.name}.png", format="png", dpi=110)
                f.figure.savefig(figs / f"{f.name}.pdf", format="pdf")
            (tmp / "report.json").write_text(json_text(self.data), encoding="utf-8")
            (tmp / "report.md").write_text(to_markdown(self), encoding="utf-8")
            (tmp / "report.html").write_text(to_html(self), encoding="utf-8")
            mode = default_file_mode()
            os.chmod(tmp, mode | ((mode & 0o444) >> 2))  # mkdtemp makes 0700: a folder's usual mode
            if target.exists():  # --force: the old folder goes only once the new one is complete
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def close(self) -> None:
        """Close the matplotlib figures."""
        import matplotlib.pyplot as plt

        for f in self.figures:
            plt.close(f.figure)


def check_out(out: str | os.PathLike, force: bool) -> Path:
    """The output folder: new, or existing and replaced with ``force``; a one-line error
    otherwise (before anything is computed)."""
    target = Path(out)
    if target.exists() or target.is_symlink():
        if not force:
            raise SepcheckError(f"output folder {target} exists: choose another --out or pass --force to replace it")
        if not target.is_dir() or target.is_symlink():
            raise SepcheckError(f"output {target} is not a folder: remove it or choose another --out")
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise SepcheckError(f"cannot write into {parent}: choose a writable --out")
    return target


def default_grid(distances: np.ndarray, typical: float | None = None, size: int = GRID_SIZE) -> np.ndarray:
    """``size`` radii from 0 to half the :data:`GRID_QUANTILE` quantile of the per-point
    distances (there the conflict graph still has few edges), extended to 1.25 x the
    typical eps when that is larger."""
    top = float(np.quantile(distances, GRID_QUANTILE)) / 2.0
    if typical is not None and typical > 0:
        top = max(top, 1.25 * typical)
    if not top > 0:
        top = 1.0
    return np.linspace(0.0, top, size)


def closest_pairs(res: SeparationResult, count: int) -> np.ndarray:
    """The ``count`` closest cross-label training pairs (i, j), i < j, each once, from the
    per-point nearest other-label neighbours (ascending distance, ties to the lowest i, j)."""
    i = np.arange(res.n)
    j = res.neighbors
    a, b = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((b, a, res.distances))
    seen: set[tuple[int, int]] = set()
    out = []
    for k in order:
        key = (int(a[k]), int(b[k]))
        if key not in seen:
            seen.add(key)
            out.append(key)
            if len(out) == count:
                break
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def image_array(X: np.ndarray) -> np.ndarray | None:
    """(n, H, W) or (n, H, W, 3) images from (n, C, H, W) or (n, H, W) arrays; None when
    the rows are not images."""
    if X.ndim == 4 and X.shape[1] in (1, 3):
        return X[:, 0] if X.shape[1] == 1 else np.moveaxis(X, 1, -1)
    if X.ndim == 3:
        return X
    if X.ndim == 4 and X.shape[-1] in (1, 3):
        return X[..., 0] if X.shape[-1] == 1 else X
    return None


def certified_curve(radius: np.ndarray, correct: np.ndarray, size: int = 101) -> dict[str, list[float]]:
    """Certified accuracy (correct and radius > eps) on ``size`` radii from 0 to the
    largest certified radius."""
    top = float(np.max(radius[correct])) if correct.any() else 0.0
    grid = np.linspace(0.0, top if top > 0 else 1.0, size)
    ok = np.sort(radius[correct])
    n = max(1, radius.shape[0])
    acc = (ok.size - np.searchsorted(ok, grid, side="right")) / n
    return {"eps": grid.tolist(), "certified_accuracy": acc.tolist()}


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
        norm -> radii of the ceiling curve (default :func:`default_grid`).
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
    import matplotlib

    matplotlib.use("Agg", force=False)
    from ..analysis import plots

    log = say or (lambda s: None)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    ds = dataset
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
    digest = array_digest(X, y)  # the ceiling's and the report's own cache keys
    sep_digest = array_digest(X, y, None, None)  # cached_separation's: train split, no test split
    test_digest = sep_digest if Xt is None else array_digest(X, y, Xt, yt)

    def step(name: str) -> Callable[[], None]:
        log(f"{name} ...")
        t0 = time.perf_counter()

        def done() -> None:
            timing[name] = time.perf_counter() - t0

        return done

    data: dict[str, Any] = {"dataset": ds.name, "source": ds.source, "notes": list(ds.notes),
                            "n": int(X.shape[0]), "n_test": 0 if Xt is None else int(Xt.shape[0]),
                            "dim": int(X.shape[1]), "n_classes": int(np.unique(y).size), "units": units,
                            "typical_eps": typical, "tau": t, "runs": run_points}
    seps: dict[str, SeparationResult] = {}
    byclass: dict[str, dict[str, np.ndarray]] = {}  # norm -> nearest_by_class of the test points
    summary: dict[str, Any] = {}
    for norm in NORMS:
        done = step(f"separation {norm}")
        # train-train under the same cache key as `sepcheck separation`, the ceiling and the classifier
        res, from_cache = cached_separation(X, y, norm=norm, dataset=ds.name, cache=cache, content_hash=sep_digest,
                                            **opts)
        if Xt is not None:  # test-train: one search per class serves this, the certified accuracy and hygiene
            def by_class(norm: str = norm) -> dict[str, np.ndarray]:
                d, i, classes = nearest_by_class(X, y, Xt, norm=norm, **opts)
                return {"d": d, "i": i, "classes": classes}

            bc, _ = cached_arrays("byclass", (test_digest, norm), by_class, cache)
            byclass[norm] = bc
            res.test_distances, res.test_neighbors = nearest_other_label(bc["d"], bc["i"], bc["classes"], yt)
            res.test_conflicts = find_conflicts(X, y, np.flatnonzero(res.test_distances == 0), Xt, yt)
        seps[norm] = res
        s = res.summary()
        s["cached"] = from_cache
        if drop:
            def after_drop(res: SeparationResult = res, norm: str = norm) -> dict[str, np.ndarray]:
                kept, dropped = separation_after_drop(X, y, drop, norm=norm, result=res, **opts)
                return {"separation": np.float64(kept.separation), "dropped": dropped}

            kd, _ = cached_arrays("drop", (digest, norm, drop), after_drop, cache)
            sep_k = float(kd["separation"])
            s["drop"] = {"k": int(drop), "separation": sep_k, "r": sep_k / 2, "dropped": kd["dropped"].tolist()}
        summary[norm] = s
        done()
    data["summary"] = summary

    figures: list[Figure] = []
    for norm in NORMS:
        res = seps[norm]
        mark = typical[norm]
        fig, axes = _subplots(2 if res.test_distances is not None else 1)
        res.plot(ax=axes[0], eps=mark)
        if res.test_distances is not None:
            res.plot(ax=axes[1], eps=mark, test=True)
        figures.append(Figure(f"histogram_{norm}", f"Separation histograms ({norm})",
                              f"Distance from each training point (left) and test point (right) to the nearest "
                              f"training point of another label ({norm}); dashed: the minimum and 2ε"
                              + ("" if mark is not None else " (no ε to mark)") + ".", fig))

    done = step("class pairs linf")
    cpa, _ = cached_arrays(
        "classpairs", (digest, "linf"),
        lambda: dict(vars(class_pair_separation(X, y, norm="linf", **opts))), cache)
    cp = ClassPairs(cpa["classes"], cpa["distances"], cpa["pairs"], str(cpa["norm"]), str(cpa["units"]))
    data["class_pairs"] = cp.to_dict()
    fig, ax = _subplots(1, width=5.2, height=4.4)
    plots.plot_class_pairs(cp.classes, cp.distances, ax=ax[0], names=ds.classes,
                           title=f"{ds.name}: class-pair separation (linf)")
    figures.append(Figure("class_pairs_linf", "Class-pair separation (linf)",
                          "Minimum linf distance between the training points of each pair of classes.", fig))
    done()

    ceilings: dict[str, Any] = {}
    for norm in NORMS:
        done = step(f"ceiling {norm}")
        grid = np.asarray(eps_grid[norm], dtype=np.float64) if eps_grid and norm in eps_grid else default_grid(
            seps[norm].distances, typical[norm])
        mine = [r for r in run_points if r["norm"] == norm]
        c, _ = cached_ceiling(X, y, grid, norm=norm, time_limit=time_limit, dataset=ds.name, cache=cache,
                              nearest_distances=seps[norm].distances, content_hash=digest, **opts)
        ceilings[norm] = c
        fig, ax = _subplots(1)
        c.plot(ax=ax[0], typical_eps=typical[norm], runs=mine or None)
        marked = {"linf": "dashed: the typical linf ε", "l2": "dashed: the given l2 ε"}[norm] if typical[norm] else (
            "no typical ε is known for l2 (--eps-l2 marks one)" if norm == "l2" else "no typical ε known")
        figures.append(Figure(f"ceiling_{norm}", f"Robust-accuracy ceiling ({norm})",
                              f"Best robust accuracy any classifier can reach on the training sample at radius ε "
                              f"({norm}; hollow markers: lower bounds after the time limit); {marked}"
                              + ("; points: trained runs, their PGD and AutoAttack accuracy on their test points (crosses: above "
                                 "the ceiling of those test points)" if mine else "") + ".", fig))
        done()
    data["ceiling"] = {n: c.to_dict(sacrificed=False) for n, c in ceilings.items()}

    certified: dict[str, Any] = {}
    nearest: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if Xt is not None:
        for norm in NORMS:
            done = step(f"certified accuracy {norm}")
            bc = byclass[norm]
            nearest[norm] = nearest_any(bc["d"], bc["i"])
            res = seps[norm]
            cr = build_result(bc["d"], bc["i"], bc["classes"], yt, (0.0,), r=res.r, separation=res.separation,
                              norm=norm, units=res.units, dataset=ds.name)
            certified[norm] = {"accuracy": cr.accuracy, "r": cr.r, "within_r": cr.within_r,
                               **certified_curve(cr.radius, cr.correct)}
            if typical[norm] is not None:
                certified[norm]["at_typical_eps"] = float(
                    np.count_nonzero(cr.correct & (cr.radius > typical[norm])) / max(1, cr.n))
            done()
        fig, ax = _subplots(len(certified))
        for k, (norm, curve) in enumerate(certified.items()):
            plots.plot_certified({norm: curve}, ax=ax[k], typical_eps=typical,
                                 title=f"{ds.name}: 1/r-Lipschitz 1-NN ({norm})")
        figures.append(Figure("certified", "Certified accuracy of the 1/r-Lipschitz 1-NN classifier",
                              "Fraction of test points classified correctly with certified radius "
                              "(d_other − d_own)/2 > ε (left linf, right l2); dotted: the marked ε.", fig))
    data["certified"] = certified

    done = step("hygiene linf")
    na, _ = cached_arrays("noise", (digest, "linf"), lambda: _noise_arrays(X, y, seps["linf"], opts), cache)
    noise = _table("label_noise", na)
    ca, _ = cached_arrays("crosslabel", (digest, "linf", repr(t)),
                          lambda: _columns(cross_label_table(X, y, t, p=math.inf, raw=False, **opts)), cache)
    hr = HygieneReport(tau=t, norm="linf", units=units, k=None, n=int(X.shape[0]), cross_label=_table("cross_label", ca),
                       label_noise=noise, margin=na["margin"], dataset=ds.name)
    if "linf" in nearest:
        hr.test_nearest, hr.test_nearest_index = nearest["linf"]
        hr.test_train = test_train_table(hr.test_nearest, hr.test_nearest_index, yt, y, t)
    # its counts and first 50 rows per list, less what the report says elsewhere
    hyg = {k: v for k, v in hr.to_dict(top=50).items() if k not in ("dataset", "units", "k", "n", "n_test")}
    if "linf" in nearest:
        # distance within which 1 %, 3.3 % (ciFAIR's share of CIFAR-10), 10 %, 50 % of the test
        # points have a training point of any label, per norm
        qs = (0.01, 0.033, 0.1, 0.5)
        hyg["test_train_nearest_quantiles"] = {
            norm: dict(zip(map(str, qs), np.quantile(nearest[norm][0], qs).tolist(), strict=True)) for norm in nearest}
    data["hygiene"] = to_jsonable(hyg)
    done()

    images = image_array(np.asarray(ds.X))
    if images is not None and pairs > 0:
        cpairs = closest_pairs(seps["linf"], pairs)
        a, b = cpairs[:, 0], cpairs[:, 1]
        caps = [f"{y[i]} | {y[j]}\n{seps['linf'].distances[i]:.3f}" for i, j in zip(a, b, strict=True)]
        fig = plots.plot_image_pairs(images[a], images[b], caps, row_labels=("train", "train"),
                                     title=f"{ds.name}: closest training pairs with different labels (linf)")
        figures.append(Figure("closest_pairs_linf", "Closest cross-label training pairs (linf)",
                              "Top and bottom: the two training images of a pair; labels and linf distance below.",
                              fig))
        if "linf" in nearest:
            timages = image_array(np.asarray(ds.X_test))
            dn, jn = nearest["linf"]
            q = np.lexsort((np.arange(dn.size), dn))[:pairs]
            caps = [f"{yt[k]} | {y[jn[k]]}\n{dn[k]:.3f}" for k in q]
            fig = plots.plot_image_pairs(timages[q], images[jn[q]], caps, row_labels=("test", "train"),
                                         title=f"{ds.name}: test images and their nearest training image (linf)")
            figures.append(Figure("test_train_linf", "Test-train near-duplicates (linf)",
                                  "Top: the test images closest to the training set; bottom: their nearest "
                                  "training image (any label); labels (test | train) and linf distance below.", fig))
    timing["total"] = time.perf_counter() - t_start
    data["timing"] = timing
    return Report(data=to_jsonable(data), figures=figures)


def _noise_arrays(X: np.ndarray, y: np.ndarray, res: SeparationResult, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    table, margin = label_noise_table(X, y, p=math.inf, raw=False, k=None, result=res, **opts)
    return {**_columns(table), "margin": margin}


def _subplots(panels: int, width: float = 4.5, height: float = 3.2) -> tuple[Any, list[Any]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), dpi=110, squeeze=False)
    return fig, list(axes[0])


def cached_arrays(kind: str, key_parts: Sequence[Any], compute: Callable[[], dict[str, np.ndarray]],
                  cache: str | os.PathLike | None) -> tuple[dict[str, np.ndarray], bool]:
    """A dict of numpy arrays through the results cache (:func:`sepcheck.runs.cache.cached`, .npz
    without pickles)."""

    def load(path: Path) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise SepcheckError(f"unreadable cache file {path}: {exc}") from None

    def save(arrays: dict[str, np.ndarray], path: Path) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(path, write, "cache file")

    return cached(kind, [*key_parts, "report-v1"], compute, load, save, cache, suffix=".npz")


def _table(name: str, arrays: dict[str, np.ndarray], description: str = "") -> HygieneTable:
    return HygieneTable(name, {k[len("col_"):]: v for k, v in arrays.items() if k.startswith("col_")}, description)


def _columns(table: HygieneTable) -> dict[str, np.ndarray]:
    return {f"col_{k}": v for k, v in table.columns.items()}


# ----- text -------------------------------------------------------------------------------
def _f(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf"
        return f"{x:.{digits}f}"
    return str(x)


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(quantity, value) rows of the summary table."""
    s = data["summary"]
    rows = [("data set", str(data["dataset"])), ("n (train)", str(data["n"])), ("n (test)", str(data["n_test"])),
            ("dimension", str(data["dim"])), ("classes", str(data["n_classes"]))]
    for norm in NORMS:
        if norm not in s:
            continue
        v = s[norm]
        rows.append((f"{norm} separation (train-train)", _f(v["separation"])))
        rows.append((f"{norm} r = separation / 2", _f(v["r"])))
        if "test_separation" in v:
            rows.append((f"{norm} test-train separation", _f(v["test_separation"])))
        if "drop" in v:
            rows.append((f"{norm} separation after dropping the {v['drop']['k']} closest points",
                         _f(v["drop"]["separation"])))
    lin = s.get("linf", {})
    conf = f"{lin.get('conflicts', 0)} pairs ({lin.get('conflict_points', 0)} points)"
    if "test_conflicts" in lin:
        conf += f"; test-train {lin['test_conflicts']} pairs"
    rows.append(("conflicts (identical inputs, different labels)", conf))
    for norm, e in data["typical_eps"].items():
        if e is not None:
            rows.append((f"typical ε ({norm})", _f(e)))
            c = data.get("ceiling", {}).get(norm)
            if c:
                rows.append((f"ceiling at the largest grid ε ≤ {_f(e)} ({norm})", _f(_ceiling_at(c, e))))
    h = data.get("hygiene", {})
    if "test_train_duplicates" in h:
        rows.append((f"test points with a training point within τ = {_f(h['tau'])} (linf)",
                     f"{h['test_train_duplicates']} ({100 * h['test_train_fraction']['1tau']:.2f} %)"))
    if h:
        rows.append((f"cross-label training pairs within τ = {_f(h['tau'])} (linf)", str(h["cross_label_pairs"])))
        rows.append(("label-noise candidates (closer to another class, linf)", str(h["label_noise_candidates"])))
    return rows


def _ceiling_at(c: dict[str, Any], e: float) -> float | None:
    eps = np.asarray(c["eps"], dtype=np.float64)
    ok = np.flatnonzero(eps <= e + 1e-12)
    return None if ok.size == 0 else float(c["accuracy"][ok[-1]])


#: rows of each hygiene list shown in report.html / report.md (report.json keeps 50)
HYGIENE_ROWS = 10


def hygiene_tables(data: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, first rows) of each non-empty hygiene list, for the HTML and Markdown."""
    h = data.get("hygiene", {})
    tau = _f(h.get("tau"))
    out = []
    for key, title in (("test_train", f"Test-train near-duplicates within τ = {tau} (linf)"),
                       ("cross_label", f"Cross-label training pairs within τ = {tau} (linf)"),
                       ("label_noise", "Label-noise candidates: margin = d(other label) − d(own label) < 0 (linf)")):
        rows = (h.get(key) or {}).get("rows") or []
        if rows:
            out.append((title, rows[:HYGIENE_ROWS]))
    return out


def to_markdown(report: Report) -> str:
    d = report.data
    lines = [f"# sepcheck report: {d['dataset']}", ""]
    for n in d.get("notes", []):
        lines += [f"> note: {n}", ""]
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(d)]
    lines.append("")
    for f in report.figures:
        lines += [f"## {f.title}", "", f"![{f.title}](figures/{f.name}.png)", "", f.caption,
                  f"([PDF](figures/{f.name}.pdf))", ""]
    for title, rows in hygiene_tables(d):
        cols = list(rows[0])
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        lines += ["| " + " | ".join(_f(r[c]) for c in cols) + " |" for r in rows]
        lines.append("")
    if d.get("runs"):
        lines += ["## Trained runs", "", "| run | norm | ε | attack | robust accuracy | ceiling (its test points) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['label']} | {r['norm']} | {_f(r['eps'])} | {r['attack']} | {_f(r['accuracy'])} | "
                  f"{_f(r['ceiling'])}{' **above**' if r['above'] else ''} |" for r in d["runs"]]
        lines.append("")
    t = d.get("timing", {})
    if "total" in t:
        lines.append(f"Computed in {t['total']:.1f} s. All numbers: report.json.")
    return "\n".join(lines) + "\n"


def to_html(report: Report) -> str:
    d = report.data
    e = html.escape
    rows = "\n".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in summary_rows(d))
    notes = "".join(f"<p class='note'>note: {e(n)}</p>" for n in d.get("notes", []))
    figs = "\n".join(
        f"<section><h2>{e(f.title)}</h2><img src='figures/{e(f.name)}.png' alt='{e(f.title)}'>"
        f"<p>{e(f.caption)} <a href='figures/{e(f.name)}.pdf'>PDF</a></p></section>"
        for f in report.figures
    )
    for title, hrows in hygiene_tables(d):
        cols = list(hrows[0])
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(_f(r[c]))}</td>" for c in cols) + "</tr>" for r in hrows)
        figs += f"\n<section><h2>{e(title)}</h2><table><tr>{head}</tr>{body}</table></section>"
    runs = ""
    if d.get("runs"):
        body = "".join(f"<tr><td>{e(str(r['label']))}</td><td>{e(r['norm'])}</td><td>{e(_f(r['eps']))}</td>"
                       f"<td>{e(r['attack'])}</td><td>{e(_f(r['accuracy']))}</td>"
                       f"<td>{e(_f(r['ceiling']))}{' <b>above</b>' if r['above'] else ''}</td></tr>"
                       for r in d["runs"])
        runs = ("<section><h2>Trained runs</h2><table><tr><th>run</th><th>norm</th><th>ε</th><th>attack</th>"
                f"<th>robust accuracy</th><th>ceiling (its test points)</th></tr>{body}</table></section>")
    total = d.get("timing", {}).get("total")
    foot = f"<p class='foot'>Computed in {total:.1f} s. All numbers: <a href='report.json'>report.json</a>.</p>" \
        if total is not None else ""
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "img{max-width:100%}.note{color:#955}.foot{color:#777}")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>sepcheck report: "
            f"{e(str(d['dataset']))}</title><style>{style}</style></head><body>\n"
            f"<h1>sepcheck report: {e(str(d['dataset']))}</h1>{notes}\n<table>{rows}</table>\n{figs}\n{runs}\n"
            f"{foot}\n</body></html>\n")


__all__ = ["Figure", "Report", "build_report", "certified_curve", "check_out", "closest_pairs", "default_grid",
           "image_array", "summary_rows", "to_html", "to_markdown"]
