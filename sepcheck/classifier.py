"""The theorem's classifier: the scaled 1-nearest-neighbour function of Yang et al. (2020).

If the training data is 2r-separated, the scores

    f_i(x) = 1 - d(x, X_i) / r        (X_i: the training points of class i)

are 1/r-Lipschitz in the chosen norm and their argmax, the 1-NN label, is accurate and
robust at radius r around the training data. :class:`LipschitzNNClassifier` builds that
classifier on top of the exact engine (:func:`sepcheck.engine.by_class.nearest_by_class`)
and certifies it: ``certified_radius(x) = (d_other - d_own) / 2`` is a lower bound on
the distance from x to the decision boundary (triangle inequality).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._validation import as_features, as_labels, check_two_classes
from .certify import CertificationResult, build_result, parse_eps, predicted_columns, radii
from .errors import NotFittedError, SepcheckError, TheoremWarning
from .norms import norm_name, parse_norm

#: keyword options the classifier accepts besides norm, r and clip
ENGINE_OPTIONS = (
    "backend",
    "device",
    "raw",
    "block_size",
    "memory_budget",
    "progress",
    "cache",
    "dataset",
)
#: options that go to the engine calls (the rest go to the separation cache only)
_SEARCH_OPTIONS = ("backend", "device", "raw", "block_size", "memory_budget", "progress")




class LipschitzNNClassifier:
    """1/r-Lipschitz nearest-neighbour classifier (scikit-learn style).

    Parameters
    ----------
    norm
        'linf', 'l2', 'l1' or a float p >= 1.
    r
        'auto' (separation / 2 of the training data, the theorem's radius) or a number
        > 0. A number larger than separation / 2 is allowed but warns
        (:class:`TheoremWarning`): the guarantee no longer holds.
    clip
        Report max(0, f_i(x)) instead of f_i(x) (still 1/r-Lipschitz).
    **engine_options
        backend ('auto', 'numba', 'torch'), device, raw (uint8 data: raw 0-255 units
        instead of the [0, 1] pixel scale), block_size, memory_budget, progress (bar on
        stderr), cache (a folder for the cached training separation; None, the default,
        reads and writes nothing), dataset (a name stored with the cached separation).

    Attributes (after :meth:`fit`)
    ------------------------------
    r_, separation_, lipschitz_constant_ (= 1 / r_), classes_, n_features_in_, norm_,
    units_, X_train_, y_train_, separation_result_, separation_from_cache_.

    Notes
    -----
    Distances and r are in the units of :func:`sepcheck.separation`: the [0, 1] pixel scale
    for uint8 data, the data's own units for floats. Queries must have the training data's
    kind (uint8 with uint8, floats with floats); the torch module of
    :meth:`as_torch_module` takes floats on the same scale.
    """

    def __init__(self, norm: str | float = "linf", r: float | str = "auto", clip: bool = False, **engine_options: Any) -> None:
        unknown = sorted(set(engine_options) - set(ENGINE_OPTIONS))
        if unknown:
            raise SepcheckError(
                f"unknown option {unknown[0]!r} for LipschitzNNClassifier: use norm, r, clip or "
                f"one of {', '.join(ENGINE_OPTIONS)}"
            )
        self.norm = norm
        self.r = r
        self.clip = clip
        self.engine_options = engine_options

    # ----- scikit-learn protocol --------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (engine options flattened in)."""
        return {"norm": self.norm, "r": self.r, "clip": self.clip, **self.engine_options}

    def set_params(self, **params: Any) -> LipschitzNNClassifier:
        """Set constructor parameters; returns self."""
        for key, value in params.items():
            if key in ("norm", "r", "clip"):
                setattr(self, key, value)
            elif key in ENGINE_OPTIONS:
                self.engine_options = {**self.engine_options, key: value}
            else:
                raise SepcheckError(f"unknown parameter {key!r}: use norm, r, clip or one of {', '.join(ENGINE_OPTIONS)}")
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"LipschitzNNClassifier({args})"

    # ----- fitting ----------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> LipschitzNNClassifier:
        """Store the training set and compute its separation (cached) and r_."""
        from .cache import cached_separation
        from .engine.by_class import BY_CLASS_BACKENDS
        from .separation import units_of

        p = parse_norm(self.norm)
        clip = self.clip
        if not isinstance(clip, (bool, np.bool_)):
            raise SepcheckError(f"clip={clip!r} is invalid: use True or False")
        opts = dict(self.engine_options)
        backend = str(opts.get("backend", "auto")).lower()
        if backend not in BY_CLASS_BACKENDS:
            raise SepcheckError(f"backend {backend!r} is not supported here: use one of {', '.join(BY_CLASS_BACKENDS)}")
        r_user = self._user_r()
        Xf = as_features(X, "X")
        yv = as_labels(y, Xf.shape[0], "y", "X")
        check_two_classes(yv, "y")
        search = {k: opts[k] for k in _SEARCH_OPTIONS if k in opts}
        res, cached = cached_separation(
            Xf,
            yv,
            norm=p,
            dataset=str(opts.get("dataset", "")),
            cache=opts.get("cache"),
            **search,
        )
        sep = res.separation
        if r_user is None:
            if sep <= 0:
                raise SepcheckError(
                    "the training data has identical points with different labels (separation 0), "
                    "so r = 0: remove the conflicting duplicates (sepcheck separation lists them) "
                    "or pass a number r > 0"
                )
            r_fit = sep / 2.0
        else:
            r_fit = r_user
            if r_fit > sep / 2.0:
                warnings.warn(
                    f"r={r_fit:g} is larger than separation / 2 = {sep / 2.0:g}: the scores are "
                    "still 1/r-Lipschitz, but the theorem's accuracy/robustness guarantee no longer holds",
                    TheoremWarning,
                    stacklevel=2,
                )
        self.X_train_ = Xf
        self.y_train_ = yv
        self.classes_ = np.unique(yv)
        self.n_features_in_ = int(Xf.shape[1])
        self.p_ = p
        self.norm_ = norm_name(p)
        self.units_ = units_of(Xf, bool(opts.get("raw", False)))
        self.separation_ = float(sep)
        self.r_ = float(r_fit)
        self.lipschitz_constant_ = 1.0 / self.r_
        self.separation_result_ = res
        self.separation_from_cache_ = bool(cached)
        return self

    def _user_r(self) -> float | None:
        r = self.r
        if isinstance(r, str) and r == "auto":
            return None
        if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)):
            raise SepcheckError(f"r={r!r} is invalid: use 'auto' or a number > 0")
        value = float(r)
        if not math.isfinite(value) or value <= 0:
            raise SepcheckError(f"r={r!r} is invalid: use 'auto' or a finite number > 0")
        return value

    def _check_fitted(self) -> None:
        if not hasattr(self, "r_"):
            raise NotFittedError(
                "this LipschitzNNClassifier is not fitted yet: call fit(X, y) before using it"
            )

    # ----- the classifier ---------------------------------------------------------------
    def class_distances(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per point and class (columns follow ``classes_``): the exact distance
        d(x, X_i) to the nearest training point of class i and that point's index
        (lowest index on ties)."""
        self._check_fitted()
        Xq = as_features(X, "X")
        if Xq.shape[1] != self.n_features_in_:
            raise SepcheckError(
                f"X has {Xq.shape[1]} features per row but the classifier was fitted on "
                f"{self.n_features_in_}: pass rows from the same feature space"
            )
        from .engine.by_class import nearest_by_class

        opts = {k: self.engine_options[k] for k in _SEARCH_OPTIONS if k in self.engine_options}
        d, idx, _ = nearest_by_class(self.X_train_, self.y_train_, Xq, norm=self.p_, **opts)
        return d, idx

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores f_i(x) = 1 - d(x, X_i) / r_ of shape (n, n_classes) (max(0, .) with clip)."""
        d, _ = self.class_distances(X)
        return self._scores(d)

    def _scores(self, d: np.ndarray) -> np.ndarray:
        s = 1.0 - d / self.r_
        return np.maximum(s, 0.0) if self.clip else s

    def predict(self, X: Any) -> np.ndarray:
        """The 1-NN label = argmax of the (unclipped) scores; ties go to the class of the
        lowest-index training point among the nearest ones."""
        d, idx = self.class_distances(X)
        return self.classes_[predicted_columns(d, idx)]

    def certified_radius(self, X: Any) -> np.ndarray:
        """Per point (d_other - d_own) / 2: no perturbation of norm < this changes the
        prediction (0 when two classes are at the same distance)."""
        d, idx = self.class_distances(X)
        return radii(d, predicted_columns(d, idx))

    def score(self, X: Any, y: Any) -> float:
        """Clean accuracy (scikit-learn's ``score``)."""
        Xq = as_features(X, "X")
        yv = as_labels(y, Xq.shape[0], "y", "X")
        return float(np.mean(self.predict(Xq) == yv))

    def certify(self, X: Any, y: Any, eps: Any) -> CertificationResult:
        """Clean accuracy, certified accuracy at each eps (correct and radius > eps),
        fraction within r_ of the own class, and the per-point arrays."""
        self._check_fitted()
        eps_t = parse_eps(eps)
        Xq = as_features(X, "X")
        yv = as_labels(y, Xq.shape[0], "y", "X")
        d, idx = self.class_distances(Xq)
        return build_result(
            d,
            idx,
            self.classes_,
            yv,
            eps_t,
            r=self.r_,
            separation=self.separation_,
            norm=self.norm_,
            units=self.units_,
            dataset=str(self.engine_options.get("dataset", "")),
        )

    # ----- picture ----------------------------------------------------------------------
    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Heat map of the scores and the decision boundary of a 2-D classifier (see
        :func:`plot_classifier`). Returns the matplotlib Axes."""
        return plot_classifier(self, ax=ax, **kwargs)

    # ----- differentiable forward -------------------------------------------------------
    def as_torch_module(self, device: str = "cpu", block_size: int | None = None):
        """A ``torch.nn.Module`` computing the scores, differentiable in its input.

        See ``sepcheck.classifier.LipschitzScores``: the nearest row of each class is
        searched in blocks of ``block_size`` training rows (default: ~256 MiB tiles). Inputs are floats on the classifier's scale (the
        [0, 1] pixel scale for uint8 training data unless ``raw``).
        """
        self._check_fitted()
        return _scores_class()(self, device=device, block_size=block_size)


#: class colours (colour-blind safe: Okabe-Ito), cycled for more classes
CLASS_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def plot_classifier(
    clf: LipschitzNNClassifier,
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

    clf._check_fitted()
    if clf.n_features_in_ != 2:
        raise SepcheckError(
            f"the classifier has {clf.n_features_in_} features: the picture needs 2-D data (e.g. spiral)"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 10 <= resolution <= 4000:
        raise SepcheckError(f"resolution={resolution!r} is invalid: give an integer from 10 to 4000")
    if clf.X_train_.dtype == np.uint8:
        raise SepcheckError("the picture needs float 2-D data: fit the classifier on float features")
    X = clf.X_train_.astype(np.float64)
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = margin * float(np.max(hi - lo) or 1.0)
    lo, hi = lo - pad, hi + pad
    gx = np.linspace(lo[0], hi[0], int(resolution))
    gy = np.linspace(lo[1], hi[1], int(resolution))
    xx, yy = np.meshgrid(gx, gy)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    d, idx = clf.class_distances(grid.astype(clf.X_train_.dtype, copy=False))
    cols = predicted_columns(d, idx)
    win = np.clip(1.0 - d[np.arange(d.shape[0]), cols] / clf.r_, 0.0, 1.0)
    n_classes = clf.classes_.size
    base = np.array([to_rgb(CLASS_COLORS[c % len(CLASS_COLORS)]) for c in range(n_classes)])
    tint = 0.85 * win[:, None]
    rgb = 1.0 - tint * (1.0 - base[cols])
    ax.imshow(
        rgb.reshape(yy.shape + (3,)), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]),
        interpolation="bilinear", aspect="equal", zorder=0,
    )
    for c in range(n_classes):  # boundary of each class region: d_c = min over others
        rest = d.copy()
        rest[:, c] = np.inf
        gap = (d[:, c] - rest.min(axis=1)).reshape(yy.shape)
        if np.nanmin(gap) < 0 < np.nanmax(gap):
            ax.contour(xx, yy, gap, levels=[0.0], colors="black", linewidths=1.0, zorder=2)
    y = clf.y_train_
    for c, lab in enumerate(clf.classes_):
        pts = X[y == lab]
        ax.scatter(
            pts[:, 0], pts[:, 1], s=5, color=base[c], edgecolors="white", linewidths=0.25,
            zorder=3, label=f"class {lab}",
        )
    if X_test is not None and y_test is not None:
        Xt = as_features(X_test, "X_test").astype(np.float64)
        yt = as_labels(y_test, Xt.shape[0], "y_test", "X_test")
        for c, lab in enumerate(clf.classes_):
            pts = Xt[yt == lab]
            ax.scatter(pts[:, 0], pts[:, 1], s=9, facecolors="none", edgecolors=base[c], linewidths=0.5, zorder=3)
        ax.scatter([], [], s=9, facecolors="none", edgecolors="0.3", linewidths=0.5, label="test points")
    if show_ball:
        _draw_ball(ax, X, clf.p_, clf.r_, lo, hi)
    ax.plot([], [], color="black", linewidth=1.0, label="decision boundary")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is None:
        title = f"1/r-Lipschitz 1-NN classifier ({clf.norm_}, r = {clf.r_:.3g})"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7, frameon=True, framealpha=0.9, markerscale=2.0)
    if n_classes <= 8:
        _score_key(ax, base, clf.classes_)
    ax.tick_params(labelsize=8)
    return ax


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


_SCORES_CLASS: Any = None


def __getattr__(name: str) -> Any:
    # LipschitzScores subclasses torch.nn.Module: built on first use so that importing
    # sepcheck does not import torch
    if name == "LipschitzScores":
        return _scores_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _scores_class() -> Any:
    global _SCORES_CLASS
    if _SCORES_CLASS is None:
        _SCORES_CLASS = _build_scores_class()
    return _SCORES_CLASS


def _build_scores_class() -> Any:
    import torch

    class LipschitzScores(torch.nn.Module):
        """Torch forward of :class:`LipschitzNNClassifier`: x (n, ...) -> scores (n, n_classes).

        The nearest training point of each class is found without gradient, in blocks over
        the training set (one class at a time, ``block_size`` training rows per tile); then
        d(x, X_i) = ||x - X_i[nearest]|| is recomputed with gradient. That is the value of
        the min and one of its (sub)gradients, so gradient attacks see the true function.
        Memory: one (queries x block) tile, plus (n, n_classes, d) for the gathered rows.
        The search uses torch.cdist in the module's dtype (float64 for float64 training
        data, float32 otherwise): only which row wins a near tie can differ from the exact
        engine, never by more than rounding in value. The training set is held in its own
        dtype (uint8 stays uint8); ``module.to(device)`` moves it.
        """

        def __init__(self, clf: LipschitzNNClassifier, device: str = "cpu", block_size: int | None = None) -> None:
            from .engine import resolve_device

            super().__init__()
            dev = torch.device(resolve_device(device))
            X = clf.X_train_
            self.float_dtype = torch.float64 if X.dtype == np.float64 else torch.float32
            raw = bool(clf.engine_options.get("raw", False))
            self.scale = 255.0 if (X.dtype == np.uint8 and not raw) else 1.0
            self.p = clf.p_
            self.r = clf.r_
            self.clip = bool(clf.clip)
            self.block_size = int(block_size) if block_size else None
            self.classes = clf.classes_.copy()
            codes = np.searchsorted(clf.classes_, clf.y_train_)
            order = np.argsort(codes, kind="stable")  # class by class, index order inside
            bounds = np.searchsorted(codes[order], np.arange(clf.classes_.size + 1))
            from .engine.torch_backend import as_tensor

            self.register_buffer("reference", as_tensor(X).to(dev), persistent=False)
            self.register_buffer("order", torch.from_numpy(order).to(dev), persistent=False)
            self.bounds = [int(b) for b in bounds]

        def _rows(self, idx: Any) -> Any:
            """Training rows (any index shape) as floats on the classifier's scale."""
            r = self.reference[idx].to(self.float_dtype)
            return r / self.scale if self.scale != 1.0 else r

        def nearest_indices(self, x: Any) -> Any:
            """(n, n_classes) index of the nearest training row of each class (no gradient)."""
            n = x.shape[0]
            d = self.reference.shape[1]
            br = self.block_size or max(1, (256 * 2**20) // max(1, 8 * (n + d)))
            n_classes = len(self.bounds) - 1
            out = torch.empty((n, n_classes), dtype=torch.int64, device=x.device)
            with torch.no_grad():
                for c in range(n_classes):
                    rows = self.order[self.bounds[c] : self.bounds[c + 1]]
                    best = torch.full((n,), float("inf"), dtype=self.float_dtype, device=x.device)
                    arg = torch.zeros(n, dtype=torch.int64, device=x.device)
                    for s in range(0, rows.numel(), br):
                        blk = rows[s : s + br]
                        tile = torch.cdist(x.unsqueeze(0), self._rows(blk).unsqueeze(0), p=self.p)[0]
                        v, a = torch.min(tile, dim=1)
                        better = v < best
                        best = torch.where(better, v, best)
                        arg = torch.where(better, blk[a], arg)
                    out[:, c] = arg
            return out

        def distances(self, x: Any) -> Any:
            """(n, n_classes) distances d(x, X_i), differentiable in x."""
            x = x.reshape(x.shape[0], -1).to(self.float_dtype)
            if x.shape[1] != self.reference.shape[1]:
                raise SepcheckError(
                    f"input has {x.shape[1]} features per row but the classifier was fitted "
                    f"on {self.reference.shape[1]}: pass rows from the same feature space"
                )
            idx = self.nearest_indices(x.detach())
            diff = x[:, None, :] - self._rows(idx)
            return torch.linalg.vector_norm(diff, ord=self.p, dim=-1)

        def forward(self, x: Any) -> Any:
            """Scores 1 - d(x, X_i) / r (clipped at 0 with ``clip``)."""
            s = 1.0 - self.distances(x) / self.r
            return s.clamp(min=0.0) if self.clip else s

        def predict(self, x: Any) -> Any:
            """Labels (a numpy array) of the argmax of the scores."""
            with torch.no_grad():
                cols = torch.argmax(self.forward(x), dim=1).cpu().numpy()
            return self.classes[cols]

    LipschitzScores.__module__ = __name__
    return LipschitzScores


__all__ = ["LipschitzNNClassifier", "NotFittedError", "TheoremWarning", "CertificationResult"]
