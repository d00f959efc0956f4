"""The results cache: one keyed mechanism (:func:`cached`) for every kind of result, and its
uses for separation results and robust-accuracy ceilings.

A key is built from the content hash of the arrays and the options that change the answer
(norm, units, radii, ...). The backend, device and block size are never part of it: every
backend gives the same exact answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..analysis.ceiling import CeilingResult, ceiling_inputs, robust_ceiling
from ..analysis.separation import SeparationResult, separation, validated_inputs
from ..core.errors import SepcheckError
from ..core.fileio import writable_dir
from ..core.hashing import array_digest
from ..core.norms import norm_name, parse_norm
from ..core.validation import checked_once
from ..engine.options import SearchOptions, call_options

T = TypeVar("T")


def key_of(parts: Iterable[Any]) -> str:
    """blake2b hex digest (32 characters) of the parts joined with ``|``."""
    text = "|".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def cached(
    kind: str,
    key_parts: Iterable[Any],
    compute: Callable[[], T],
    load: Callable[[Path], T | None],
    save: Callable[[T, Path], Any],
    cache: str | os.PathLike | None = None,
    suffix: str = ".h5",
) -> tuple[T, bool]:
    """``compute()`` with an optional results cache; returns (result, came_from_cache).

    ``cache`` is a folder: the result lives in ``<cache>/<kind>-<key><suffix>``, the key made
    by :func:`key_of` from ``key_parts`` (everything that changes the answer, and a format
    version). ``load(path)`` returns the cached result, or None when it does not belong to
    the request (e.g. its content hash differs); a file it cannot read (a
    :class:`SepcheckError`: corrupted, edited) is recomputed, a cache entry that is not a
    regular file is skipped, never opened, and a read-only cache folder is read but never
    written; ``save(result, path)`` writes atomically. ``None`` (the default) reads and
    writes nothing: a library call has no hidden side effects. The CLI passes
    :func:`sepcheck.core.paths.results_dir` unless ``--no-cache``.
    """
    path = None if cache is None else Path(cache) / f"{kind}-{key_of(key_parts)}{suffix}"
    if path is not None and path.is_file():  # a FIFO or folder at the cache path is skipped
        with contextlib.suppress(SepcheckError):
            res = load(path)
            if res is not None:
                return res, True
    res = compute()
    if path is not None and writable_dir(path.parent):  # a read-only cache folder is left alone
        with contextlib.suppress(OSError, SepcheckError):  # a special file at the cache path: no cache
            save(res, path)
    return res, False


def cache_key(content_hash: str, norm: str, raw: bool) -> str:
    """The key of a separation result (:func:`cached_separation`)."""
    return key_of(_separation_parts(content_hash, norm, raw))


def _separation_parts(content_hash: str, norm: str, raw: bool) -> tuple[Any, ...]:
    return (content_hash, norm, f"raw={bool(raw)}", "v1")


@checked_once
def cached_separation(
    X: Any,
    y: Any,
    X_test: Any = None,
    y_test: Any = None,
    *,
    norm: str | float = "linf",
    dataset: str = "",
    raw: bool = False,
    cache: str | os.PathLike | None = None,
    content_hash: str | None = None,
    options: SearchOptions | None = None,
    info: dict | None = None,
    **engine_options: Any,
) -> tuple[SeparationResult, bool]:
    """:func:`~sepcheck.separation` with an optional results cache (:func:`cached`, kind
    ``separation``, HDF5). Returns (result, came_from_cache). ``X`` and ``X_test`` may be
    row sources or files, as for :func:`~sepcheck.separation` (the digest then streams them
    once). ``content_hash``: :func:`sepcheck.core.hashing.array_digest` of ``(X, y, X_test,
    y_test)`` (Nones included) when the caller has it already; it is the cache key.
    ``options`` / ``engine_options``: how the search runs (as for :func:`~sepcheck.separation`)."""
    p = parse_norm(norm)
    opts = call_options(options, raw, **engine_options)
    raw = opts.raw
    Xf, yv, Xt, yt = validated_inputs(X, y, X_test, y_test)
    digest = content_hash or array_digest(Xf, yv, Xt, yt)

    def load(path: Path) -> SeparationResult | None:
        res = SeparationResult.load(path)
        if res.content_hash != digest:
            return None
        if dataset:
            res.dataset = dataset
        return res

    return cached(
        "separation", _separation_parts(digest, norm_name(p), raw),
        lambda: separation(Xf, yv, Xt, yt, norm=p, dataset=dataset, raw=raw, content_hash=digest,
                           options=opts, info=info),
        load, lambda res, path: res.save(path), cache,
    )


@checked_once
def cached_ceiling(
    X: Any,
    y: Any,
    eps: Any,
    *,
    norm: str | float = "linf",
    raw: bool = False,
    time_limit: float = 10.0,
    dataset: str = "",
    cache: str | os.PathLike | None = None,
    nearest_distances: Any = None,
    content_hash: str | None = None,
    **engine_options: Any,
) -> tuple[CeilingResult, bool]:
    """:func:`~sepcheck.analysis.ceiling.robust_ceiling` with an optional results cache (:func:`cached`,
    kind ``ceiling``, JSON), keyed by the data, norm, units, the eps grid and the time limit;
    the nearest-other distances it needs are ``nearest_distances`` when given (shape (n,):
    :attr:`SeparationResult.distances <sepcheck.SeparationResult>` of the same data, norm and
    units), else come from :func:`cached_separation` in the same cache (``cache=None``:
    :func:`~sepcheck.analysis.ceiling.robust_ceiling` searches them). ``content_hash``:
    :func:`sepcheck.core.hashing.array_digest` of ``(X, y)`` when the caller has it already (the
    cache key). Returns (result, came_from_cache)."""
    p = parse_norm(norm)
    Xf, yv, grid, limit = ceiling_inputs(X, y, eps, time_limit)
    digest = content_hash or array_digest(Xf, yv)

    def load(path: Path) -> CeilingResult | None:
        res = CeilingResult.load(path)
        if res.content_hash != digest or not np.array_equal(res.eps, grid):
            return None
        res.dataset = dataset or res.dataset
        return res

    def compute() -> CeilingResult:
        nearest = nearest_distances
        if nearest is None and cache is not None:  # they come from (and go to) the separation cache
            nearest = cached_separation(Xf, yv, norm=p, raw=raw, cache=cache, **engine_options)[0].distances
        return robust_ceiling(Xf, yv, grid, norm=p, raw=raw, time_limit=limit, dataset=dataset,
                              nearest_distances=nearest, content_hash=digest, **engine_options)

    parts = (digest, norm_name(p), f"raw={bool(raw)}", grid.tobytes().hex(), repr(limit), "ceiling-v1")
    return cached("ceiling", parts, compute, load, lambda res, path: res.save(path), cache, suffix=".json")


__all__ = ["cached", "cached_ceiling", "cached_separation", "cache_key", "key_of"]
