"""The containers every loader returns: :class:`Dataset` (train and test arrays for reports)
and :class:`SplitData` (one split with its provenance, as stored in the HDF5 cache)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Dataset:
    """A loaded data set: train arrays, optional test arrays and facts for reports."""

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    #: typical linf attack radius from the literature (None when unknown)
    eps: float | None = None
    #: where the arrays came from
    source: str = ""
    #: anything the user must know about the arrays (e.g. a substitute split)
    notes: list[str] = field(default_factory=list)
    #: class names in label order, when known
    classes: list[str] | None = None
    #: provenance per split (source files, checksums, preprocessing, skipped images)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_test(self) -> bool:
        return self.X_test is not None


@dataclass
class SplitData:
    """One split of a registered data set: uint8 NCHW images, int64 labels and provenance.

    ``sources`` are the fingerprints of the files it was made from (name, size, mtime_ns and,
    when verified, the md5); ``verified`` says whether their published checksums were
    checked; ``skipped`` lists images that could not be decoded (never silently dropped).
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str] | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    verified: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    n_skipped: int = 0
    notes: list[str] = field(default_factory=list)
    #: where the arrays were read from ('cache' or the source folder)
    origin: str = ""

    def meta(self) -> dict[str, Any]:
        """Provenance as a JSON-able dict (for ``Dataset.meta`` and ``datasets prepare``)."""
        return {
            "n": int(self.X.shape[0]),
            "shape": [int(s) for s in self.X.shape[1:]],
            "sources": self.sources,
            "verified": self.verified,
            "preprocessing": self.preprocessing,
            "n_skipped": self.n_skipped,
            "skipped": self.skipped,
            "origin": self.origin,
        }
