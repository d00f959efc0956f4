"""What is on disk for a registered data set (for ``datasets list`` and ``datasets info``):
cheap checks only, nothing is hashed, decoded or downloaded."""

from __future__ import annotations

import os
from typing import Any

from .loader import dataset_dir
from .registry import INFOS, SOURCES, require_name
from .splitcache import cache_file


def split_status(name: str, split: str, data_dir: str | os.PathLike | None = None) -> str:
    """'built-in', 'cached' (default-options cache present), 'files' (sources present) or 'missing'."""
    canonical = require_name(name)
    src = SOURCES[canonical]
    if src is None:
        return "built-in"
    directory = dataset_dir(canonical, data_dir)
    if cache_file(directory, split).is_file():
        return "cached"
    return "files" if src.present(directory, split) else "missing"


def describe(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Facts and on-disk state of a registered data set (``datasets info``)."""
    canonical = require_name(name)
    info = INFOS[canonical]
    src = SOURCES[canonical]
    out: dict[str, Any] = info.to_dict()
    if src is None:
        out["directory"] = None
        out["status"] = {s: "built-in" for s in info.splits}
        return out
    directory = dataset_dir(canonical, data_dir)
    out["directory"] = str(directory)
    out["status"] = {s: split_status(canonical, s, data_dir) for s in info.splits}
    out["cache"] = {s: str(cache_file(directory, s)) for s in info.splits}
    remote = []
    for f in src.remote_files():
        p = directory / f.name
        remote.append({"name": f.name, "present": p.is_file(), "size": p.stat().st_size if p.is_file() else None,
                       "urls": list(f.urls), "md5": f.md5, "sha256": f.sha256})
    out["remote_files"] = remote
    return out
