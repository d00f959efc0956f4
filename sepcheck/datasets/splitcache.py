"""The HDF5 cache of converted splits: ``<data dir>/<name>/<split>[-<options>].h5``.

One file per split: ``X`` (uint8, N x C x H x W, chunked), ``y`` (int64) and attributes
with the format, the cache key (data set, split, options, converter version), the source
files' fingerprints (name, size, mtime_ns, checksum), whether their checksums were
verified, the preprocessing, skipped images and the sepcheck version. A cache is used only
when all of these still match; otherwise the split is converted again. A corrupted cache
file is ignored and rewritten: each file is sealed with a checksum of its bytes (in its HDF5
user block), checked before HDF5 reads it. Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..core.errors import SepcheckError
from ..core.fileio import (
    USERBLOCK,
    default_file_mode,
    h5_dataset,
    replace_file,
    seal_file,
    seal_problem,
    writable_dir,
)
from .base import SplitData, warn

FORMAT = "sepcheck.dataset-cache/1"
#: target bytes per HDF5 chunk of X
_CHUNK_BYTES = 4 << 20
_CHECKSUM_KEYS = ("md5", "sha256", "content_md5")


def cache_file(directory: Path, split: str, tag: str = "") -> Path:
    """Where a split's cache lives (``tag`` names non-default options, e.g. ``coarse``)."""
    return directory / f"{split}{'-' + tag if tag else ''}.h5"


def _comparable(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k not in _CHECKSUM_KEYS} for s in sources]


def read_cache(
    path: Path,
    *,
    key: dict[str, Any],
    current_sources: list[dict[str, Any]] | None,
    need_verified: bool,
) -> SplitData | None:
    """The cached split when it is valid, else None.

    Valid means: same format and key; the source files present now have the recorded
    names, sizes and modification times (``current_sources`` None means no source file is
    present, and the cache alone is used); and, when ``need_verified``, the sources'
    checksums were verified when the cache was made.
    """
    if not path.is_file() or seal_problem(path, FORMAT) is not None:
        return None  # missing, not a regular file, damaged or edited: rebuilt from the sources
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if a.get("format") != FORMAT or json.loads(a["key"]) != key:
                return None
            sources = json.loads(a["sources"])
            if current_sources is not None and _comparable(sources) != _comparable(current_sources):
                return None
            verified = bool(a["verified"])
            if need_verified and not verified:
                return None
            X = h5_dataset(f, "X", path)[()]
            y = h5_dataset(f, "y", path)[()]
            if X.dtype != np.uint8 or X.ndim != 4 or y.shape != (X.shape[0],):
                return None
            return SplitData(
                X=X,
                y=y.astype(np.int64, copy=False),
                classes=json.loads(a["classes"]),
                sources=sources,
                verified=verified,
                preprocessing=json.loads(a["preprocessing"]),
                skipped=json.loads(a["skipped"]),
                n_skipped=int(a["n_skipped"]),
                notes=json.loads(a["notes"]),
                origin=str(path),
            )
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, SepcheckError):
        return None  # a damaged or foreign cache file is rebuilt from the sources


def write_cache(path: Path, key: dict[str, Any], data: SplitData) -> bool:
    """Write the split atomically; a folder that cannot be written gives a warning, not an error."""
    if not writable_dir(path.parent):
        warn(f"cache not written: {path.parent} is read-only, so this split is converted again on each load")
        return False
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        warn(f"cache not written: cannot write in {path.parent} ({exc.strerror})")
        return False
    tmp_path = Path(tmp)
    try:
        _write(tmp_path, key, data)
        os.chmod(tmp_path, default_file_mode())
        replace_file(tmp_path, path, "cache")
        return True
    except (OSError, SepcheckError) as exc:
        warn(f"cache not written: {path} ({exc})")
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def _write(path: Path, key: dict[str, Any], data: SplitData) -> None:
    import h5py

    X = np.ascontiguousarray(data.X)
    n = X.shape[0]
    row = max(1, int(np.prod(X.shape[1:])))
    chunks = (max(1, min(n, _CHUNK_BYTES // row)),) + X.shape[1:] if n else None
    with h5py.File(path, "w", userblock_size=USERBLOCK) as f:
        f.create_dataset("X", data=X, chunks=chunks)
        f.create_dataset("y", data=np.asarray(data.y, dtype=np.int64))
        a = f.attrs
        a["format"] = FORMAT
        a["key"] = json.dumps(key, sort_keys=True)
        a["sources"] = json.dumps(data.sources)
        a["verified"] = bool(data.verified)
        a["classes"] = json.dumps(data.classes)
        a["preprocessing"] = json.dumps(data.preprocessing, sort_keys=True)
        a["skipped"] = json.dumps(data.skipped)
        a["n_skipped"] = int(data.n_skipped)
        a["notes"] = json.dumps(data.notes)
        a["sepcheck_version"] = __version__
        a["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seal_file(path, FORMAT)
