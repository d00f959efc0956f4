"""Content hashes of arrays (cache keys and provenance in saved results)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

_CHUNK = 64 * 2**20


def array_digest(*arrays: Any) -> str:
    """blake2b hex digest over dtype, shape and bytes of each array (None counts too).

    A row source (anything with ``iter_blocks``, ``shape`` and ``dtype``, such as
    :class:`sepcheck.engine.sources.RowSource`) is read block by block and gives the digest
    of the equivalent in-memory array of shape ``source.shape``.
    """
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"<none>")
            continue
        if hasattr(a, "iter_blocks"):
            h.update(f"{np.dtype(a.dtype).str}{tuple(a.shape)}".encode())
            rows = max(1, _CHUNK // max(1, a.shape[1] * np.dtype(a.dtype).itemsize))
            for _, _, block in a.iter_blocks(rows):
                h.update(np.ascontiguousarray(block).reshape(-1).view(np.uint8).data)
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        flat = a.reshape(-1).view(np.uint8)
        for s in range(0, flat.size, _CHUNK):
            h.update(flat[s : s + _CHUNK].data)
    return h.hexdigest()


def row_keys(X: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """A uint64 key per row, equal for identical rows (wrapping integer dot with fixed weights).

    Used to find exact duplicates; equal keys are always confirmed by comparing the rows.
    """
    X2 = X.reshape(X.shape[0], -1)
    rng = np.random.default_rng(12345)
    w = rng.integers(1, 2**62, size=X2.shape[1], dtype=np.uint64) | np.uint64(1)
    out = np.empty(X2.shape[0], dtype=np.uint64)
    for s in range(0, X2.shape[0], chunk):
        b = X2[s : s + chunk]
        if b.dtype.kind == "f":
            b = b + b.dtype.type(0)  # -0.0 and 0.0 are the same point
        bits = b.view(np.uint64 if b.dtype.itemsize == 8 else np.uint32 if b.dtype.itemsize == 4 else np.uint8)
        with np.errstate(over="ignore"):
            out[s : s + chunk] = (bits.astype(np.uint64) * w).sum(axis=1, dtype=np.uint64)
    return out
