"""The report's own results-cache entries: a dict of numpy arrays as one .npz file (no
pickles) through :func:`sepcheck.runs.cache.cached`, and hygiene tables as such dicts
(column ``c`` stored as ``col_c``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.hygiene import HygieneTable
from ..core.errors import SepcheckError
from ..core.fileio import atomic_write
from ..runs.cache import cached


def cached_arrays(kind: str, key_parts: Sequence[Any], compute: Callable[[], dict[str, np.ndarray]],
                  cache: str | os.PathLike | None) -> tuple[dict[str, np.ndarray], bool]:
    """A dict of numpy arrays through the results cache (:func:`sepcheck.runs.cache.cached`, .npz
    without pickles)."""
    return cached(kind, [*key_parts, "report-v1"], compute, _load, _save, cache, suffix=".npz")


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise SepcheckError(f"unreadable cache file {path}: {exc}") from None


def _save(arrays: dict[str, np.ndarray], path: Path) -> None:
    atomic_write(path, partial(_write, arrays), "cache file")


def _write(arrays: dict[str, np.ndarray], tmp: Path) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def hygiene_table(name: str, arrays: dict[str, np.ndarray], description: str = "") -> HygieneTable:
    """The table ``name`` from the ``col_*`` arrays of a cached dict."""
    return HygieneTable(name, {k[len("col_"):]: v for k, v in arrays.items() if k.startswith("col_")}, description)


def table_columns(table: HygieneTable) -> dict[str, np.ndarray]:
    """The columns of ``table`` as ``col_*`` arrays (the inverse of :func:`hygiene_table`)."""
    return {f"col_{k}": v for k, v in table.columns.items()}


__all__ = ["cached_arrays", "hygiene_table", "table_columns"]
