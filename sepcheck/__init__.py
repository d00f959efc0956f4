"""sepcheck: exact nearest-different-label search, data set separation and the certified
robustness bound of "A Closer Look at Accuracy vs. Robustness" (Yang et al., NeurIPS 2020).

Public API
----------
nearest_other       the exact engine: k nearest rows with a different label
separation          per-point distances, separation, r, histograms and conflicts
SeparationResult    the result of :func:`separation` (save/load in HDF5, plot)
SepcheckError       the one error type for bad input
datasets            loaders for named data sets and the user's own files
"""

from __future__ import annotations

from . import datasets
from ._version import __version__
from .engine import nearest_other
from .errors import SepcheckError
from .separation import SeparationResult, separation

__all__ = [
    "__version__",
    "nearest_other",
    "separation",
    "SeparationResult",
    "SepcheckError",
    "datasets",
]
