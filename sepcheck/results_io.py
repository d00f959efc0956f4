"""HDF5 persistence of :class:`~sepcheck.separation.SeparationResult`.

This module sits below :mod:`sepcheck.separation`: it writes any object with the result's
attributes and reads back the keyword arguments of the result, so it never imports the class
(``SeparationResult.save`` / ``SeparationResult.load`` are the public entry points).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SepcheckError
from .fileio import atomic_write, h5_dataset, input_file
from .hashing import array_digest

FORMAT = "sepcheck.separation/1"
_ARRAYS = ("distances", "neighbors", "test_distances", "test_neighbors", "conflicts", "test_conflicts")
_ATTRS = ("norm", "dataset", "n_classes", "dim", "units", "content_hash", "version")


def save_result(result: Any, path: str | os.PathLike) -> Path:
    """Write a result to HDF5 through a temporary file renamed into place."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            for a in _ATTRS:
                f.attrs[a] = getattr(result, a)
            f.attrs["n"] = result.n
            f.attrs["n_test"] = result.n_test
            f.attrs["extra"] = json.dumps(result.extra, default=str)
            arrays = {}
            for name in _ARRAYS:
                arr = getattr(result, name)
                if arr is not None:
                    arrays[name] = np.asarray(arr)
                    f.create_dataset(name, data=arrays[name], compression="gzip", compression_opts=4)
            f.attrs["payload_hash"] = _payload_hash({a: _py(f.attrs[a]) for a in (*_ATTRS, "n", "n_test")},
                                                    f.attrs["extra"], arrays)

    return atomic_write(path, write)


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """The keyword arguments of the result written by :func:`save_result` at ``path``;
    one-line errors for other files."""
    import h5py

    p = input_file(path, "result file")
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise SepcheckError(f"{p} is not a sepcheck separation result (no '{FORMAT}' tag)")
            kw = {a: _py(f.attrs[a]) for a in _ATTRS}
            sizes = {a: _py(f.attrs[a]) for a in ("n", "n_test")}
            stored_hash = _py(f.attrs.get("payload_hash", ""))
            extra_text = _py(f.attrs.get("extra", "{}"))
            arrays = {}
            for name in _ARRAYS:
                if name in f:
                    arrays[name] = h5_dataset(f, name, p)[()]
            extra = json.loads(extra_text)
    except SepcheckError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise SepcheckError(f"result file {p} is corrupted or truncated ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if "distances" not in arrays or "neighbors" not in arrays:
        raise SepcheckError(f"result file {p} lacks its distances: recompute it")
    if stored_hash != _payload_hash({**kw, **sizes}, extra_text, arrays):
        raise SepcheckError(f"result file {p} does not match its payload hash (edited or corrupted): recompute it")
    return {**kw, **arrays, "extra": extra}


def _payload_hash(attrs: dict[str, Any], extra: str, arrays: dict[str, np.ndarray]) -> str:
    """Digest over the attributes, ``extra`` and every stored array (absent ones count too)."""
    text = json.dumps({k: attrs[k] for k in sorted(attrs)}, default=str) + "|" + str(extra)
    return array_digest(np.frombuffer(text.encode(), np.uint8), *(arrays.get(n) for n in _ARRAYS))


def _py(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v
