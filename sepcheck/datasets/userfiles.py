"""The user's own arrays: ``.npz`` and ``.h5`` files with ``X``, ``y`` (and ``X_test``, ``y_test``).

Nothing in a data file is ever executed: npz is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import SepcheckError

KEYS = ("X", "y", "X_test", "y_test")


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{'X', 'y'[, 'X_test', 'y_test']}`` from a .npz or .h5 file, checked for completeness."""
    p = Path(path)
    if not p.exists():
        raise SepcheckError(f"data file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(p)
    elif suffix in (".h5", ".hdf5"):
        arrays = _read_h5(p)
    else:
        raise SepcheckError(f"data file {p} is neither .npz nor .h5: save X and y with np.savez")
    for key in ("X", "y"):
        if key not in arrays:
            raise SepcheckError(
                f"data file {p} has no array {key!r} (found {sorted(arrays) or 'none'}): "
                "store the features as X and the labels as y"
            )
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise SepcheckError(f"data file {p} has only one of X_test and y_test: store both or neither")
    return arrays


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k in KEYS}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SepcheckError(
                f"data file {p} stores Python objects (pickles), which sepcheck never loads: "
                "save plain numeric arrays"
            ) from None
        raise SepcheckError(f"data file {p} is corrupted or truncated ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise SepcheckError(f"data file {p} is corrupted or truncated ({exc})") from None


def _read_h5(p: Path) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            out = {}
            for k in KEYS:
                if k in f:
                    if not isinstance(f[k], h5py.Dataset):
                        raise SepcheckError(f"data file {p}: {k!r} is a group, not an array")
                    out[k] = f[k][()]
            return out
    except SepcheckError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise SepcheckError(f"data file {p} is corrupted or not HDF5 ({exc})") from None
