"""HDF5 persistence of :class:`~sepcheck.analysis.separation.SeparationResult`.

This module sits below :mod:`sepcheck.analysis.separation`: it writes any object with the result's
attributes and reads back the keyword arguments of the result, so it never imports the class
(``SeparationResult.save`` / ``SeparationResult.load`` are the public entry points).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError, cause
from ..core.fileio import USERBLOCK, atomic_write, h5_dataset, input_file, seal_file, seal_problem

#: /2: sealed with a checksum in the HDF5 user block (/1 files are refused: recompute them)
FORMAT = "sepcheck.separation/2"
_ARRAYS = ("distances", "neighbors", "test_distances", "test_neighbors", "conflicts", "test_conflicts")
_ATTRS = ("norm", "dataset", "n_classes", "dim", "units", "content_hash", "version")


def save_result(result: Any, path: str | os.PathLike) -> Path:
    """Write a result to HDF5 through a temporary file renamed into place, sealed with a
    hash of its bytes in the HDF5 user block (see :func:`read_result`)."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            f.attrs["format"] = FORMAT
            for a in _ATTRS:
                f.attrs[a] = getattr(result, a)
            f.attrs["n"] = result.n
            f.attrs["n_test"] = result.n_test
            f.attrs["extra"] = json.dumps(result.extra, default=str)
            for name in _ARRAYS:
                arr = getattr(result, name)
                if arr is not None:
                    f.create_dataset(name, data=np.asarray(arr), compression="gzip", compression_opts=4)
        seal_file(tmp, FORMAT)

    return atomic_write(path, write)


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """The keyword arguments of the result written by :func:`save_result` at ``path``;
    one-line errors for other files.

    The file's bytes are checked against the hash in its user block before HDF5 parses
    them: an edited or damaged file is refused (and recomputed by the results cache), and
    the HDF5 library, which can crash on damaged files, never sees one.
    """
    import h5py

    p = input_file(path, "result file")
    problem = seal_problem(p, FORMAT)
    if problem is not None:
        raise SepcheckError(f"result file {p} is corrupted or not a sepcheck separation result ({problem}): "
                            "recompute it")
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise SepcheckError(f"{p} is not a sepcheck separation result (no '{FORMAT}' tag)")
            kw = {a: _py(f.attrs[a]) for a in _ATTRS}
            arrays = {name: h5_dataset(f, name, p)[()] for name in _ARRAYS if name in f}
            extra = json.loads(f.attrs.get("extra", "{}"))
    except SepcheckError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # h5py: RuntimeError too
        raise SepcheckError(f"result file {p} is corrupted or truncated ({cause(exc)})") from None
    if "distances" not in arrays or "neighbors" not in arrays:
        raise SepcheckError(f"result file {p} lacks its distances: recompute it")
    return {**kw, **arrays, "extra": extra}


def _py(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v
