"""The theorem's classifier: the scaled 1-nearest-neighbour function of Yang et al. (2020).

If the training data is 2r-separated, the scores

    f_i(x) = 1 - d(x, X_i) / r        (X_i: the training points of class i)

are 1/r-Lipschitz in the chosen norm and their argmax, the 1-NN label, is accurate and
robust at radius r around the training data. :class:`LipschitzNNClassifier` builds that
classifier on top of the exact engine (:func:`sepcheck.engine.nearest_by_class`)
and certifies it: ``certified_radius(x) = (d_other - d_own) / 2`` is a lower bound on
the distance from x to the decision boundary (triangle inequality).

Modules: ``estimator`` (the scikit-learn style estimator), ``scores`` (its torch module,
:class:`LipschitzScores`; imports torch, so it is loaded on first use); the figure is
:func:`sepcheck.analysis.plots.plot_classifier`.
"""

from __future__ import annotations

from typing import Any

from ..analysis.certify import CertificationResult
from ..core.errors import NotFittedError, TheoremWarning
from .estimator import ENGINE_OPTIONS, LipschitzNNClassifier


def __getattr__(name: str) -> Any:
    """``LipschitzScores`` (torch) and the figure (matplotlib) load on first use."""
    if name == "LipschitzScores":
        from .scores import LipschitzScores

        return LipschitzScores
    if name in ("plot_classifier", "CLASS_COLORS"):
        from ..analysis import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ENGINE_OPTIONS", "LipschitzNNClassifier", "LipschitzScores", "NotFittedError", "TheoremWarning",
           "CertificationResult", "plot_classifier"]
