"""sepcheck: exact nearest-different-label search, data set separation and the certified
robustness bound of "A Closer Look at Accuracy vs. Robustness" (Yang et al., NeurIPS 2020).

Public API
----------
nearest_other       the exact engine: k nearest rows with a different label
separation          per-point distances, separation, r, histograms and conflicts
SeparationResult    the result of :func:`separation` (save/load in HDF5, plot)
SepcheckError       the one error type for bad input
datasets            loaders for named data sets and the user's own files
nearest_by_class    exact distance from each query to the nearest row of every class
open_source         rows of an array, .npy or HDF5 file, read in blocks (streamed searches)
neighbors_within    exact radius search: every pair within a distance (RadiusNeighbors)
class_pair_separation   minimum distance between every two classes (ClassPairs)
robust_ceiling      best robust accuracy any classifier can reach, per eps (CeilingResult)
LipschitzNNClassifier   the theorem's 1/r-Lipschitz classifier with certified radii
CertificationResult     what :meth:`LipschitzNNClassifier.certify` returns
hygiene, HygieneReport  test-train and cross-label near-duplicates, label-noise candidates
train               the five training methods, models, trainer and evaluation
TrainConfig, train_model, evaluate_runs, lipschitz_estimate   (from sepcheck.train)
sharded_separation, merge_pieces   resumable / SLURM-array / torchrun runs (sepcheck.runs)
"""

from __future__ import annotations

from . import datasets
from ._version import __version__
from .analysis.certify import CertificationResult
from .analysis.hygiene import HygieneReport, hygiene
from .analysis.separation import SeparationResult, separation
from .classifier import LipschitzNNClassifier
from .core.errors import SepcheckError
from .engine import nearest_other

_TRAIN_NAMES = {"TrainConfig", "train_model", "evaluate_runs", "lipschitz_estimate"}


def __getattr__(name: str):
    """Names whose modules import numba or torch are loaded on first use."""
    if name == "nearest_by_class":
        from .engine import nearest_by_class

        return nearest_by_class
    if name == "open_source":
        from .engine.sources import open_source

        return open_source
    if name == "sharded_separation":
        from .runs.run import sharded_separation

        return sharded_separation
    if name == "merge_pieces":
        from .runs.merge import merge_pieces

        return merge_pieces
    if name in ("neighbors_within", "RadiusNeighbors"):
        from .engine import radius

        return getattr(radius, name)
    if name in ("robust_ceiling", "CeilingResult"):
        from .analysis import ceiling

        return getattr(ceiling, name)
    if name in ("class_pair_separation", "ClassPairs"):
        from .analysis import classpairs

        return getattr(classpairs, name)
    if name in _TRAIN_NAMES:
        import importlib

        return getattr(importlib.import_module("sepcheck.train"), name)
    raise AttributeError(f"module 'sepcheck' has no attribute {name!r}")


__all__ = [
    "__version__",
    "nearest_other",
    "separation",
    "SeparationResult",
    "SepcheckError",
    "datasets",
    "nearest_by_class",
    "open_source",
    "neighbors_within",
    "RadiusNeighbors",
    "class_pair_separation",
    "ClassPairs",
    "robust_ceiling",
    "CeilingResult",
    "LipschitzNNClassifier",
    "CertificationResult",
    "hygiene",
    "HygieneReport",
    "TrainConfig",
    "train_model",
    "evaluate_runs",
    "lipschitz_estimate",
    "sharded_separation",
    "merge_pieces",
]
