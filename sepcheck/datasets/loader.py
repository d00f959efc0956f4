"""Loading registered data sets: find or download the files, verify, convert, cache.

``load(name, split)`` returns ``(X, y)``; the first load converts the split to
``<data dir>/<name>/<split>.h5`` and later loads read that file (see
:mod:`sepcheck.datasets.splitcache`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SepcheckError
from ..paths import data_dir as resolve_data_dir
from ._warn import warn
from .base import SplitData
from .registry import INFOS, get_source, require_name
from .spiral import make_spiral
from .splitcache import cache_file, read_cache, write_cache


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """``<data dir>/<name>/`` for a registered name."""
    return resolve_data_dir(data_dir) / require_name(name)


def load_split(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    cache: bool = True,
    progress: bool = True,
    **options: Any,
) -> SplitData:
    """One split of a registered data set with its provenance (see :func:`load`)."""
    canonical = require_name(name)
    src = get_source(canonical)
    if src is None:  # the built-in spiral: generated, never cached
        if split not in INFOS[canonical].splits:
            raise SepcheckError(f"spiral has no split {split!r}: use train or test")
        X, y = make_spiral(split)
        return SplitData(X=X, y=y, classes=["0", "1"], verified=True, origin="built-in",
                         preprocessing={"generator": "make_spiral"})
    split = src.canonical_split(split)
    opts = src.normalize_options(options)
    directory = resolve_data_dir(data_dir) / canonical
    key = {"dataset": canonical, "split": split, "options": src.key_options(opts), "converter": src.converter}
    path = cache_file(directory, split, src.option_tag(opts))
    if cache:
        current = src.current_sources(directory, split, opts)
        hit = read_cache(path, key=key, current_sources=current, need_verified=verify and src.has_checksums)
        if hit is not None:
            for note in hit.notes:
                warn(note)
            if src.has_checksums and not hit.verified:
                warn(f"{canonical} {split}: cached from files whose checksums were not verified "
                     "(load once with verification on to check them)")
            return hit
    data = src.build(directory, split, opts, download=download, verify=verify, progress=progress)
    if cache and directory.is_dir():
        write_cache(path, key, data)
    return data


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a registered data set: X uint8 (n, C, H, W), y int64 (n,).

    Files are looked up in ``<data dir>/<name>/`` (``data_dir``, else ``$SEPCHECK_DATA``,
    else ``~/.cache/sepcheck``) and downloaded from the canonical URLs when missing, unless
    ``download=False`` or ``$SEPCHECK_OFFLINE=1``. Published checksums are verified unless
    ``verify=False`` (a :class:`DatasetWarning` says so; the format is always checked).
    The first load writes an HDF5 cache of the split; later loads read it.

    ``split`` is ``train`` or ``test`` (``val`` for restricted-imagenet, which accepts
    ``test`` for it). Options: ``label_mode='coarse'`` (cifar100), ``size``, ``resize``
    and ``workers`` (restricted-imagenet), ``cache=False``, ``progress=False``. The
    built-in ``spiral`` returns float64 points of shape (n, 2).
    """
    data = load_split(name, split, data_dir=data_dir, download=download, verify=verify, **options)
    return data.X, data.y


def prepare(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    progress: bool = True,
    **options: Any,
) -> dict[str, SplitData]:
    """Download, verify and convert every split of a registered data set (what
    ``sepcheck datasets prepare`` runs); returns the splits."""
    canonical = require_name(name)
    return {
        split: load_split(canonical, split, data_dir=data_dir, download=download, verify=verify,
                          progress=progress, **options)
        for split in INFOS[canonical].splits
    }
