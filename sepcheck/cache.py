"""Cached separation results: keyed by the content hash of the arrays and the options
that change the answer (norm, units). The backend and block size do not: every backend
gives the same exact answer."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

from .errors import SepcheckError
from .fileio import writable_dir
from .hashing import array_digest
from .norms import norm_name, parse_norm
from .separation import SeparationResult, separation, validated_inputs


def cache_key(content_hash: str, norm: str, raw: bool) -> str:
    text = f"{content_hash}|{norm}|raw={bool(raw)}|v1"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


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
    **engine_options: Any,
) -> tuple[SeparationResult, bool]:
    """:func:`~sepcheck.separation` with an optional results cache. Returns
    (result, came_from_cache).

    ``cache`` is a folder: the result is read from and written to
    ``<cache>/separation-<key>.h5``; a corrupted or edited cache file (its checksum does not
    match) is recomputed, a cache entry that is not a regular file is skipped, and a
    read-only cache folder is read but never written. ``None`` (the
    default) reads and writes nothing: a library call has no hidden side effects. The CLI
    passes :func:`sepcheck.paths.results_dir` unless ``--no-cache``. ``X`` and ``X_test``
    may be row sources or files, as for :func:`~sepcheck.separation` (the digest then
    streams them once).
    """
    p = parse_norm(norm)
    Xf, yv, Xt, yt = validated_inputs(X, y, X_test, y_test)
    digest = array_digest(Xf, yv, Xt, yt)
    path = None
    if cache is not None:
        path = Path(cache) / f"separation-{cache_key(digest, norm_name(p), raw)}.h5"
    if path is not None and path.is_file():  # a FIFO or folder at the cache path is skipped, never opened
        try:
            res = SeparationResult.load(path)
            if res.content_hash == digest:
                if dataset:
                    res.dataset = dataset
                return res, True
        except SepcheckError:
            pass
    res = separation(Xf, yv, Xt, yt, norm=p, dataset=dataset, raw=raw, **engine_options)
    if path is not None and writable_dir(path.parent):  # a read-only cache folder is left alone
        with contextlib.suppress(OSError, SepcheckError):  # a special file at the cache path: no cache
            res.save(path)
    return res, False


__all__ = ["cached_separation", "cache_key"]
