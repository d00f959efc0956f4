"""The scikit-learn style estimator :class:`LipschitzNNClassifier` (see :mod:`sepcheck.classifier`
for the theorem it implements): fit, scores, predictions, certified radii and certification."""

from __future__ import annotations

import math
import warnings
from dataclasses import fields
from typing import Any

import numpy as np

from ..analysis.certify import (
    CertificationResult,
    build_result,
    parse_eps,
    predicted_columns,
    radii,
)
from ..core.errors import NotFittedError, SepcheckError, TheoremWarning
from ..core.norms import norm_name, parse_norm
from ..core.validation import as_features, as_labels, check_two_classes
from ..engine.options import SearchOptions
from ..engine.sources import is_source, open_source

#: options that go to the engine calls: the fields of SearchOptions (validated in fit)
_SEARCH_OPTIONS = tuple(f.name for f in fields(SearchOptions))
#: keyword options the classifier accepts besides norm, r and clip (the last two go to the
#: separation cache only)
ENGINE_OPTIONS = (*_SEARCH_OPTIONS, "cache", "dataset")




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
    drop
        Fit without the ``drop`` training points closest to another label (the paper's
        convention for SVHN, 4, and Restricted ImageNet, 6; see
        :func:`sepcheck.analysis.separation.separation_after_drop`): r is then half the separation
        of the kept points, and ``dropped_`` lists the excluded rows. With a raw separation
        of 0 (identical inputs labelled differently) give ``drop`` or a number ``r``.
    **engine_options
        backend ('auto', 'numba', 'torch'), device, raw (uint8 data: raw 0-255 units
        instead of the [0, 1] pixel scale), block_size, memory_budget, progress (bar on
        stderr), cache (a folder for the cached training separation; None, the default,
        reads and writes nothing), dataset (a name stored with the cached separation).

    Attributes (after :meth:`fit`)
    ------------------------------
    r_, separation_, lipschitz_constant_ (= 1 / r_), classes_, n_features_in_, norm_,
    units_, X_train_, y_train_ (the kept rows), separation_result_, separation_from_cache_,
    dropped_ (indices of the excluded rows of X, empty without ``drop``), raw_separation_
    (the separation before dropping).

    Notes
    -----
    Distances and r are in the units of :func:`sepcheck.separation`: the [0, 1] pixel scale
    for uint8 data, the data's own units for floats. Queries must have the training data's
    kind (uint8 with uint8, floats with floats); the torch module of
    :meth:`as_torch_module` takes floats on the same scale.
    """

    def __init__(self, norm: str | float = "linf", r: float | str = "auto", clip: bool = False, drop: int = 0,
                 **engine_options: Any) -> None:
        unknown = sorted(set(engine_options) - set(ENGINE_OPTIONS))
        if unknown:
            raise SepcheckError(
                f"unknown option {unknown[0]!r} for LipschitzNNClassifier: use norm, r, clip or "
                f"one of {', '.join(ENGINE_OPTIONS)}"
            )
        self.norm = norm
        self.r = r
        self.clip = clip
        self.drop = drop
        self.engine_options = engine_options

    # ----- scikit-learn protocol --------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (engine options flattened in)."""
        return {"norm": self.norm, "r": self.r, "clip": self.clip, "drop": self.drop, **self.engine_options}

    def set_params(self, **params: Any) -> LipschitzNNClassifier:
        """Set constructor parameters; returns self."""
        for key, value in params.items():
            if key in ("norm", "r", "clip", "drop"):
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
        """Store the training set and compute its separation (cached) and r_.

        ``X`` may be a row source or a file (:func:`sepcheck.open_source`): it is then
        streamed by every search within ``memory_budget`` and ``X_train_`` is that source
        (with ``drop`` the kept rows are read into memory)."""
        from ..analysis.separation import units_of, validated_inputs
        from ..engine import BY_CLASS_BACKENDS
        from ..runs.cache import cached_separation

        p = parse_norm(self.norm)
        clip = self.clip
        if not isinstance(clip, (bool, np.bool_)):
            raise SepcheckError(f"clip={clip!r} is invalid: use True or False")
        opts = dict(self.engine_options)
        backend = str(opts.get("backend", "auto")).lower()
        if backend not in BY_CLASS_BACKENDS:
            raise SepcheckError(f"backend {backend!r} is not supported here: use one of {', '.join(BY_CLASS_BACKENDS)}")
        r_user = self._user_r()
        Xf, yv, _, _ = validated_inputs(X, y)
        check_two_classes(yv, "y")
        self.search_options_ = SearchOptions(**{k: opts[k] for k in _SEARCH_OPTIONS if k in opts})
        search = {"options": self.search_options_}
        res, cached = cached_separation(
            Xf,
            yv,
            norm=p,
            dataset=str(opts.get("dataset", "")),
            cache=opts.get("cache"),
            **search,
        )
        raw_sep = res.separation
        drop = self.drop
        if isinstance(drop, bool) or not isinstance(drop, (int, np.integer)) or not 0 <= drop < Xf.shape[0]:
            raise SepcheckError(f"drop={drop!r} is invalid: give a number of training points from 0 to "
                                f"{Xf.shape[0] - 1}")
        dropped = np.empty(0, dtype=np.int64)
        if drop:
            from ..analysis.separation import separation_after_drop

            if is_source(Xf):  # the kept rows are stored: read them
                Xf = Xf.read(0, len(Xf))

            res, dropped = separation_after_drop(Xf, yv, int(drop), norm=p, result=res, **search)
            keep = np.ones(Xf.shape[0], dtype=bool)
            keep[dropped] = False
            Xf, yv = Xf[keep], yv[keep]
            cached = False
        sep = res.separation
        if r_user is None:
            if sep <= 0:
                raise SepcheckError(
                    "the training data has identical points with different labels (separation 0), "
                    "so r = 0: drop the closest points (drop=K; sepcheck separation --drop K shows the "
                    "effect), remove the conflicting duplicates or pass a number r > 0"
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
        self.raw_separation_ = float(raw_sep)
        self.dropped_ = dropped
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

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless :meth:`fit` has run."""
        if not hasattr(self, "r_"):
            raise NotFittedError(
                "this LipschitzNNClassifier is not fitted yet: call fit(X, y) before using it"
            )

    # ----- the classifier ---------------------------------------------------------------
    def class_distances(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per point and class (columns follow ``classes_``): the exact distance
        d(x, X_i) to the nearest training point of class i and that point's index
        (lowest index on ties)."""
        self.check_fitted()
        Xq = _features(X)
        if Xq.shape[1] != self.n_features_in_:
            raise SepcheckError(
                f"X has {Xq.shape[1]} features per row but the classifier was fitted on "
                f"{self.n_features_in_}: pass rows from the same feature space"
            )
        from ..engine import nearest_by_class

        d, idx, _ = nearest_by_class(self.X_train_, self.y_train_, Xq, norm=self.p_, options=self.search_options_)
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
        self.check_fitted()
        eps_t = parse_eps(eps)
        Xq = _features(X)
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
        :func:`sepcheck.analysis.plots.plot_classifier`). Returns the matplotlib Axes."""
        from ..analysis.plots import plot_classifier

        return plot_classifier(self, ax=ax, **kwargs)

    # ----- differentiable forward -------------------------------------------------------
    def as_torch_module(self, device: str = "cpu", block_size: int | None = None):
        """A ``torch.nn.Module`` computing the scores, differentiable in its input.

        See ``sepcheck.classifier.LipschitzScores``: the nearest row of each class is
        searched in blocks of ``block_size`` training rows (default: ~256 MiB tiles). Inputs are floats on the classifier's scale (the
        [0, 1] pixel scale for uint8 training data unless ``raw``).
        """
        self.check_fitted()
        from .scores import LipschitzScores

        return LipschitzScores(self, device=device, block_size=block_size)


def _features(X: Any) -> Any:
    """Query rows: a row source (streamed) when ``X`` is one or a file, else a 2-D array."""
    return open_source(X, "X") if is_source(X) else as_features(X, "X")


__all__ = ["ENGINE_OPTIONS", "LipschitzNNClassifier"]
