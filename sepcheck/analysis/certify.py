"""Certification results of the 1/r-Lipschitz nearest-neighbour classifier.

:class:`CertificationResult` is what :meth:`sepcheck.LipschitzNNClassifier.certify`
returns: clean accuracy, certified accuracy per attack radius eps, the fraction of points
within r of their own class, and the per-point arrays behind those numbers. The helpers
turn per-class distances into predictions and certified radii; they are plain numpy and
shared by the classifier and the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import SepcheckError

_BIG_INDEX = np.iinfo(np.int64).max


def parse_eps(eps: Any) -> tuple[float, ...]:
    """One attack radius or a list of them as a tuple of floats >= 0 (order kept)."""
    if isinstance(eps, (str, bytes)):
        raise SepcheckError(f"eps={eps!r} is invalid: give a number or a list of numbers >= 0")
    values: Iterable[Any] = np.atleast_1d(np.asarray(eps, dtype=object)).ravel().tolist()
    out = []
    for e in values:
        if isinstance(e, bool) or not isinstance(e, (int, float, np.integer, np.floating)):
            raise SepcheckError(f"eps={eps!r} is invalid: give a number or a list of numbers >= 0")
        f = float(e)
        if not math.isfinite(f) or f < 0:
            raise SepcheckError(f"eps={e!r} is invalid: attack radii must be finite and >= 0")
        out.append(f)
    if not out:
        raise SepcheckError("eps is empty: give at least one attack radius")
    return tuple(out)


def predicted_columns(distances: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Column (class position) of the 1-NN prediction: the smallest distance, and among
    classes at that same distance the one whose nearest training row has the lowest index
    (the label of the lowest-index nearest neighbour)."""
    dmin = distances.min(axis=1, keepdims=True)
    key = np.where(distances == dmin, indices, _BIG_INDEX)
    return np.argmin(key, axis=1)


def own_and_other(distances: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the class in ``columns``, smallest distance to any other class)."""
    rows = np.arange(distances.shape[0])
    own = distances[rows, columns]
    rest = distances.copy()
    rest[rows, columns] = np.inf
    return own, rest.min(axis=1)


def radii(distances: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Certified radius (d_other - d_own) / 2 per point (0 on a tie)."""
    own, other = own_and_other(distances, columns)
    return (other - own) / 2.0


@dataclass
class CertificationResult:
    """Clean and certified accuracy of the 1/r-Lipschitz nearest-neighbour classifier.

    Distances, radii, eps and r are in the classifier's units: the [0, 1] pixel scale for
    uint8 data (raw 0-255 when fitted with ``raw=True``), the data's own units otherwise.

    Attributes
    ----------
    accuracy
        Fraction of points whose prediction equals their label.
    certified_accuracy
        eps -> fraction of points that are correctly classified *and* have certified
        radius > eps (strictly: a tie in distance certifies nothing).
    within_r
        Fraction of points at distance <= r from a training point of their own class
        (where the theorem's guarantee applies).
    predictions, labels, radius, d_own, d_other, d_true, correct
        Per point: predicted label, true label, certified radius, distance to the nearest
        training point of the predicted class, of any other class, and of the true class
        (inf for a label absent from training), and prediction == label.
    """

    norm: str
    units: str
    r: float
    separation: float
    eps: tuple[float, ...]
    accuracy: float
    certified_accuracy: dict[float, float]
    within_r: float
    predictions: np.ndarray
    labels: np.ndarray
    radius: np.ndarray
    d_own: np.ndarray
    d_other: np.ndarray
    d_true: np.ndarray
    correct: np.ndarray
    n_classes: int = 0
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def lipschitz_constant(self) -> float:
        """1 / r: each score coordinate is 1/r-Lipschitz."""
        return math.inf if self.r == 0 else 1.0 / self.r

    def rows(self) -> list[dict[str, Any]]:
        """One dict per eps: eps, clean accuracy, certified accuracy, r, 1/r, within r."""
        return [
            {
                "eps": e,
                "accuracy": self.accuracy,
                "certified_accuracy": self.certified_accuracy[e],
                "r": self.r,
                "lipschitz_constant": self.lipschitz_constant,
                "within_r": self.within_r,
            }
            for e in self.eps
        ]

    def to_dict(self, per_point: bool = False) -> dict[str, Any]:
        """Plain dict for JSON: headline numbers, one row per eps, and with ``per_point``
        the per-point arrays as lists."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "norm": self.norm,
            "units": self.units,
            "n": self.n,
            "n_classes": self.n_classes,
            "separation": self.separation,
            "r": self.r,
            "lipschitz_constant": self.lipschitz_constant,
            "accuracy": self.accuracy,
            "within_r": self.within_r,
            "certified_accuracy": {repr(e): v for e, v in self.certified_accuracy.items()},
            "rows": self.rows(),
            "median_radius": float(np.median(self.radius)) if self.n else None,
        }
        if per_point:
            out.update(
                {
                    "predictions": self.predictions.tolist(),
                    "labels": self.labels.tolist(),
                    "radius": self.radius.tolist(),
                    "d_own": self.d_own.tolist(),
                    "d_other": self.d_other.tolist(),
                    "d_true": self.d_true.tolist(),
                }
            )
        return out


def build_result(
    distances: np.ndarray,
    indices: np.ndarray,
    classes: np.ndarray,
    labels: np.ndarray,
    eps: tuple[float, ...],
    *,
    r: float,
    separation: float,
    norm: str,
    units: str,
    dataset: str = "",
) -> CertificationResult:
    """Everything :class:`CertificationResult` holds, from per-class distances of the points."""
    cols = predicted_columns(distances, indices)
    own, other = own_and_other(distances, cols)
    radius = (other - own) / 2.0
    pred = classes[cols]
    correct = pred == labels
    # distance to the true class (inf when the label never occurs in training)
    pos = np.searchsorted(classes, labels)
    known = (pos < classes.size) & (classes[np.minimum(pos, classes.size - 1)] == labels)
    d_true = np.full(labels.shape[0], np.inf)
    d_true[known] = distances[np.flatnonzero(known), pos[known]]
    n = max(1, labels.shape[0])
    certified = {e: float(np.count_nonzero(correct & (radius > e)) / n) for e in eps}
    return CertificationResult(
        norm=norm,
        units=units,
        r=float(r),
        separation=float(separation),
        eps=eps,
        accuracy=float(np.count_nonzero(correct) / n),
        certified_accuracy=certified,
        within_r=float(np.count_nonzero(d_true <= r) / n),
        predictions=pred,
        labels=labels,
        radius=radius,
        d_own=own,
        d_other=other,
        d_true=d_true,
        correct=correct,
        n_classes=int(classes.size),
        dataset=dataset,
    )


__all__ = ["CertificationResult", "parse_eps", "predicted_columns", "own_and_other", "radii", "build_result"]
