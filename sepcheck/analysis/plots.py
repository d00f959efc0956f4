"""Matplotlib figures a paper could use: the separation histogram, the classifier picture and
the robust-accuracy ceiling curve."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.errors import SepcheckError
from ..core.validation import as_features, as_labels
from .certify import predicted_columns


def plot_separation(result: Any, ax: Any = None, eps: float | None = None, test: bool = False, bins: int = 50) -> Any:
    """Normalised histogram of per-point distances with dashed lines at the minimum
    (the separation) and at 2 eps, like the figures of Yang et al. (2020)."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(4.5, 3.2), dpi=150)
    d = result.test_distances if test else result.distances
    frac, edges = result.histogram(bins=bins, test=test)
    ax.bar(edges[:-1], frac, width=np.diff(edges), align="edge", color="#4C72B0", edgecolor="white", linewidth=0.3)
    lo = float(np.min(d))
    ax.axvline(lo, color="black", linestyle="--", linewidth=1.0, label=f"min = {lo:.3f}")
    if eps is not None:
        ax.axvline(2 * eps, color="#C44E52", linestyle="--", linewidth=1.0, label=f"2ε = {2 * eps:.3f}")
    which = "test-train" if test else "train-train"
    unit = {"pixel": " (pixel scale [0, 1])", "raw": " (raw 0-255)"}.get(result.units, "")
    ax.set_xlabel(f"{result.norm} distance to nearest other-class point{unit}")
    ax.set_ylabel("fraction of points")
    title = f"{result.dataset} {which}" if result.dataset else which
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.figure.tight_layout()
    return ax


def plot_class_pairs(classes: Any, distances: Any, ax: Any = None, *, names: Any = None, title: str | None = None) -> Any:
    """Heatmap of the (C, C) minimum distances between classes (diagonal blank), each cell
    annotated when C <= 12."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.2, 4.4), dpi=150)
    D = np.array(distances, dtype=np.float64)
    C = D.shape[0]
    shown = D.copy()
    np.fill_diagonal(shown, np.nan)
    im = ax.imshow(shown, cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="minimum distance")
    labels = [str(n) for n in names] if names is not None and len(names) == C else [str(c) for c in classes]
    ax.set_xticks(range(C))
    ax.set_yticks(range(C))
    ax.set_xticklabels(labels, rotation=90 if max(map(len, labels)) > 2 else 0, fontsize=7)
    ax.set_yticklabels(labels, fontsize=7)
    if C <= 12:
        finite = shown[np.isfinite(shown)]
        mid = float(np.median(finite)) if finite.size else 0.0
        for a in range(C):
            for b in range(C):
                if a != b and np.isfinite(D[a, b]):
                    ax.text(b, a, f"{D[a, b]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if D[a, b] < mid else "black")
    ax.set_title(title or "class-pair separation", fontsize=10)
    ax.figure.tight_layout()
    return ax


def plot_certified(curves: dict[str, dict[str, Any]], ax: Any = None, *, typical_eps: dict[str, Any] | None = None,
                   title: str | None = None) -> Any:
    """Certified accuracy against eps, one line per norm (``curves[norm]`` has 'eps' and
    'certified_accuracy'); a dotted line at each norm's typical eps when given."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(4.5, 3.2), dpi=150)
    for k, (norm, c) in enumerate(curves.items()):
        color = CLASS_COLORS[k % len(CLASS_COLORS)]
        ax.plot(c["eps"], c["certified_accuracy"], color=color, linewidth=1.4, label=f"{norm}")
        e = (typical_eps or {}).get(norm)
        if e is not None:
            ax.axvline(e, color=color, linestyle=":", linewidth=1.0, label=f"typical ε ({norm}) = {e:.3g}")
    ax.set_xlabel("ε" if len(curves) == 1 else "ε (each norm on its own scale)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "certified accuracy", fontsize=10)
    ax.legend(frameon=False, fontsize=7)
    ax.figure.tight_layout()
    return ax


def plot_image_pairs(top: Any, bottom: Any, captions: list[str], *, row_labels: tuple[str, str] = ("", ""),
                     title: str = "") -> Any:
    """A two-row grid: ``top[i]`` above ``bottom[i]``, caption under each column. Images are
    (m, H, W) grey or (m, H, W, 3) colour arrays (uint8 or [0, 1] floats). Returns the figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = len(captions)
    fig, axes = plt.subplots(2, max(m, 1), figsize=(1.15 * max(m, 1) + 0.4, 3.0), dpi=110, squeeze=False)
    for col in range(max(m, 1)):
        for row, imgs in enumerate((top, bottom)):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= m:
                ax.axis("off")
                continue
            img = np.asarray(imgs[col])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255 if img.dtype == np.uint8 else 1,
                      interpolation="nearest")
            if col == 0 and row_labels[row]:
                ax.set_ylabel(row_labels[row], fontsize=8)
        if col < m:
            axes[1, col].set_xlabel(captions[col], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: class colours (colour-blind safe: Okabe-Ito), cycled for more classes
CLASS_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def plot_classifier(
    clf: Any,
    ax: Any = None,
    *,
    resolution: int = 600,
    X_test: Any = None,
    y_test: Any = None,
    margin: float = 0.08,
    show_ball: bool = True,
    title: str | None = None,
) -> Any:
    """The theorem in a picture, for a classifier fitted on 2-D data.

    Each pixel is tinted with the colour of its predicted class, in proportion to the
    winning score max(0, f_pred(x)) = max(0, 1 - d(x, X_pred) / r): full colour on the
    training points, fading to white at distance r. The black line is the decision
    boundary (where two classes are at the same distance); the dashed ball is the norm
    ball of radius r, the robustness radius of the theorem. Training points are drawn on
    top (test points as hollow markers when given).
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.0, 4.4), dpi=200)
    from matplotlib.colors import to_rgb

    _check_picture(clf, resolution)
    X = clf.X_train_.astype(np.float64)
    lo, hi, xx, yy = _grid(X, margin, int(resolution))
    n_classes = clf.classes_.size
    base = np.array([to_rgb(CLASS_COLORS[c % len(CLASS_COLORS)]) for c in range(n_classes)])
    _draw_regions(ax, clf, xx, yy, lo, hi, base)
    _draw_points(ax, X, clf.y_train_, clf.classes_, base, X_test, y_test)
    if show_ball:
        _draw_ball(ax, X, clf.p_, clf.r_, lo, hi)
    _finish_picture(ax, clf, lo, hi, base, title)
    return ax


def _check_picture(clf: Any, resolution: Any) -> None:
    """A one-line error unless ``clf`` is fitted on float 2-D data and ``resolution`` is an
    integer from 10 to 4000."""
    clf.check_fitted()
    if clf.n_features_in_ != 2:
        raise SepcheckError(
            f"the classifier has {clf.n_features_in_} features: the picture needs 2-D data (e.g. spiral)"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 10 <= resolution <= 4000:
        raise SepcheckError(f"resolution={resolution!r} is invalid: give an integer from 10 to 4000")
    if clf.X_train_.dtype == np.uint8:
        raise SepcheckError("the picture needs float 2-D data: fit the classifier on float features")


def _grid(X: np.ndarray, margin: float, resolution: int) -> tuple[np.ndarray, ...]:
    """(lo, hi, xx, yy): the picture's corners, the training points' box widened by
    ``margin`` of its larger side, and its ``resolution`` x ``resolution`` pixel centres."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = margin * float(np.max(hi - lo) or 1.0)
    lo, hi = lo - pad, hi + pad
    gx = np.linspace(lo[0], hi[0], resolution)
    gy = np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    return lo, hi, xx, yy


def _draw_regions(
    ax: Any, clf: Any, xx: np.ndarray, yy: np.ndarray, lo: np.ndarray, hi: np.ndarray, base: np.ndarray
) -> None:
    """Each pixel tinted with its predicted class's colour ``base[c]`` in proportion to the
    winning score, and the decision boundary (black)."""
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    d, idx = clf.class_distances(grid.astype(clf.X_train_.dtype, copy=False))
    cols = predicted_columns(d, idx)
    win = np.clip(1.0 - d[np.arange(d.shape[0]), cols] / clf.r_, 0.0, 1.0)
    tint = 0.85 * win[:, None]
    rgb = 1.0 - tint * (1.0 - base[cols])
    ax.imshow(
        rgb.reshape(yy.shape + (3,)), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]),
        interpolation="bilinear", aspect="equal", zorder=0,
    )
    for c in range(base.shape[0]):  # boundary of each class region: d_c = min over others
        rest = d.copy()
        rest[:, c] = np.inf
        gap = (d[:, c] - rest.min(axis=1)).reshape(yy.shape)
        if np.nanmin(gap) < 0 < np.nanmax(gap):
            ax.contour(xx, yy, gap, levels=[0.0], colors="black", linewidths=1.0, zorder=2)


def _draw_points(
    ax: Any, X: np.ndarray, y: np.ndarray, classes: np.ndarray, base: np.ndarray, X_test: Any, y_test: Any
) -> None:
    """The training points (filled) and, when both are given, the test points (hollow)."""
    for c, lab in enumerate(classes):
        pts = X[y == lab]
        ax.scatter(
            pts[:, 0], pts[:, 1], s=5, color=base[c], edgecolors="white", linewidths=0.25,
            zorder=3, label=f"class {lab}",
        )
    if X_test is not None and y_test is not None:
        Xt = as_features(X_test, "X_test").astype(np.float64)
        yt = as_labels(y_test, Xt.shape[0], "y_test", "X_test")
        for c, lab in enumerate(classes):
            pts = Xt[yt == lab]
            ax.scatter(pts[:, 0], pts[:, 1], s=9, facecolors="none", edgecolors=base[c], linewidths=0.5, zorder=3)
        ax.scatter([], [], s=9, facecolors="none", edgecolors="0.3", linewidths=0.5, label="test points")


def _finish_picture(
    ax: Any, clf: Any, lo: np.ndarray, hi: np.ndarray, base: np.ndarray, title: str | None
) -> None:
    """Limits, labels, title, legend and (up to 8 classes) the colour key."""
    ax.plot([], [], color="black", linewidth=1.0, label="decision boundary")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is None:
        title = f"1/r-Lipschitz 1-NN classifier ({clf.norm_}, r = {clf.r_:.3g})"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7, frameon=True, framealpha=0.9, markerscale=2.0)
    if base.shape[0] <= 8:
        _score_key(ax, base, clf.classes_)
    ax.tick_params(labelsize=8)


def _score_key(ax: Any, base: np.ndarray, classes: np.ndarray) -> None:
    """A colour key next to the axes: one white-to-colour gradient per class, for the
    score max(0, f_i(x)) from 0 (white) to 1 (full colour)."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes("right", size=0.12 * len(classes), pad=0.08)
    v = np.linspace(0.0, 1.0, 256)[:, None, None]
    tint = 0.85 * v
    img = 1.0 - tint * (1.0 - base[None, :, :])  # (256, classes, 3)
    cax.imshow(
        img, origin="lower", aspect="auto", interpolation="nearest",
        extent=(-0.5, len(classes) - 0.5, 0.0, 1.0),
    )
    for k in range(1, len(classes)):
        cax.axvline(k - 0.5, color="white", linewidth=1.5)
    cax.set_xticks(range(len(classes)))
    cax.set_xticklabels([str(c) for c in classes], fontsize=7)
    cax.yaxis.tick_right()
    cax.yaxis.set_label_position("right")
    cax.set_yticks([0.0, 0.5, 1.0])
    cax.tick_params(labelsize=7, length=2)
    cax.set_xlabel("class", fontsize=7, labelpad=1)
    cax.set_ylabel("score of the predicted class, $\\max(0, f_i(x))$", fontsize=8)
    for side in cax.spines.values():
        side.set_linewidth(0.5)


def _draw_ball(ax: Any, X: np.ndarray, p: float, r: float, lo: np.ndarray, hi: np.ndarray) -> None:
    """The norm ball of radius r (dashed) in the lower right corner, for scale."""
    t = np.linspace(0.0, 2.0 * np.pi, 400)
    u = np.stack([np.cos(t), np.sin(t)], axis=1)
    if math.isinf(p):
        u = u / np.abs(u).max(axis=1, keepdims=True)
    else:
        u = u / (np.abs(u) ** p).sum(axis=1, keepdims=True) ** (1.0 / p)
    span = hi - lo
    centre = np.array([hi[0] - 0.06 * span[0] - r, lo[1] + 0.06 * span[1] + r])
    ring = centre + r * u
    ax.plot(ring[:, 0], ring[:, 1], linestyle="--", color="black", linewidth=0.8, zorder=4)
    ax.annotate(
        "radius $r$", xy=(centre[0], centre[1] + r), xytext=(0, 3), textcoords="offset points",
        ha="center", va="bottom", fontsize=7, zorder=4,
    )


def plot_ceiling(
    result: Any,
    ax: Any = None,
    *,
    typical_eps: float | None = None,
    runs: Any = None,
    label: str | None = None,
    color: str = "#0072B2",
) -> Any:
    """The robust-accuracy ceiling against eps (a :class:`~sepcheck.analysis.ceiling.CeilingResult`).

    A line with markers through the ceiling (hollow markers where only a lower bound is
    known, with a shaded band up to the upper bound), a dotted line at the largest class
    share (the ceiling once every pair conflicts), a dashed line at ``typical_eps``, and
    ``runs`` -- dicts with ``eps``, ``accuracy``, ``label`` and optionally ``above`` (else
    compared with this curve's upper bound at the nearest eps) -- as points (red crosses above
    the ceiling). Call it again on the same ``ax`` for another norm or data set.
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(4.5, 3.2), dpi=150)
    order = np.argsort(result.eps, kind="stable")
    e, acc, up, ex = result.eps[order], result.accuracy[order], result.upper[order], result.exact[order]
    name = label if label is not None else (f"{result.dataset} {result.norm}".strip() or "ceiling")
    ax.plot(e, acc, color=color, linewidth=1.4, label=name, zorder=3)
    ax.scatter(e[ex], acc[ex], s=14, color=color, zorder=4)
    if (~ex).any():
        ax.scatter(e[~ex], acc[~ex], s=14, facecolors="white", edgecolors=color, zorder=4,
                   label="lower bound (time limit)")
        ax.fill_between(e, acc, up, where=~ex | np.r_[~ex[1:], False] | np.r_[False, ~ex[:-1]],
                        color=color, alpha=0.18, linewidth=0, label="upper bound", zorder=2)
    ax.axhline(result.class_share, color="0.4", linestyle=":", linewidth=1.0,
               label=f"largest class {result.class_share:.2f}")
    if typical_eps is not None:
        ax.axvline(typical_eps, color="#C44E52", linestyle="--", linewidth=1.0, label=f"typical ε = {typical_eps:g}")
    for run in runs or []:
        i = int(np.argmin(np.abs(e - float(run["eps"]))))
        above = bool(run["above"]) if "above" in run else float(run["accuracy"]) > up[i] + 1e-12
        ax.scatter([run["eps"]], [run["accuracy"]], marker="X" if above else "o", s=36,
                   color="#D55E00" if above else "#009E73", edgecolors="black", linewidths=0.4, zorder=5)
        ax.annotate(str(run.get("label", "")), (run["eps"], run["accuracy"]), xytext=(4, 3),
                    textcoords="offset points", fontsize=7)
    unit = {"pixel": " (pixel scale [0, 1])", "raw": " (raw 0-255)"}.get(result.units, "")
    ax.set_xlabel(f"ε, {result.norm}{unit}")
    ax.set_ylabel("max robust accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"{result.dataset + ': ' if result.dataset else ''}robust-accuracy ceiling", fontsize=10)
    ax.legend(frameon=False, fontsize=7)
    ax.figure.tight_layout()
    return ax


__all__ = ["CLASS_COLORS", "plot_ceiling", "plot_certified", "plot_class_pairs", "plot_classifier",
           "plot_image_pairs", "plot_separation"]
