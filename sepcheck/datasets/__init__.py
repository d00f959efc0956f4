"""Data sets: the registry of named sets, the user's own files, and resolution of a CLI
``DATASET`` argument.

``open_dataset(spec)`` accepts a registered name (``spiral``), a ``.npz``/``.h5`` file
with ``X``, ``y`` (optionally ``X_test``, ``y_test``) or a directory of MNIST-format IDX
files, and returns a :class:`Dataset` with the train and (when present) test arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SepcheckError
from .idx import find_idx_pairs, read_idx, read_idx_pair
from .spiral import make_spiral
from .userfiles import read_arrays


@dataclass
class Dataset:
    """A loaded data set: train arrays, optional test arrays and facts for reports."""

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    #: typical linf attack radius from the literature (None when unknown)
    eps: float | None = None
    #: where the arrays came from
    source: str = ""
    #: anything the user must know about the arrays (e.g. a substitute split)
    notes: list[str] = field(default_factory=list)

    @property
    def has_test(self) -> bool:
        return self.X_test is not None


def _is_idx_dir(path: Path) -> bool:
    return path.is_dir() and bool(list(path.glob("*-images-idx3-ubyte*")))


def _open_idx_dir(path: Path) -> Dataset:
    pairs = find_idx_pairs(path)
    if not pairs:
        raise SepcheckError(f"directory {path} holds no *-images-idx3-ubyte[.gz] files")
    train_key = "train" if "train" in pairs else ("t10k" if len(pairs) == 1 else None)
    test_key = "t10k" if ("t10k" in pairs and train_key != "t10k") else None
    if train_key is None:
        train_key = sorted(pairs)[0]
    X, y = read_idx_pair(*pairs[train_key])
    ds = Dataset(path.name or str(path), X, y, source=str(path))
    if test_key is not None:
        ds.X_test, ds.y_test = read_idx_pair(*pairs[test_key])
    if train_key == "t10k":
        ds.notes.append(f"only the t10k files are in {path}: they are used as the training split")
    return ds


def open_dataset(
    spec: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
) -> Dataset:
    """Resolve a CLI ``DATASET`` argument: a registered name, a .npz/.h5 file or an IDX directory."""
    text = str(spec)
    path = Path(text)
    if text == "spiral":
        X, y = make_spiral("train")
        Xt, yt = make_spiral("test")
        return Dataset("spiral", X, y, Xt, yt, eps=None, source="built-in")
    if path.suffix.lower() in (".npz", ".h5", ".hdf5"):
        arrays = read_arrays(path)
        return Dataset(path.stem, arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"), source=str(path))
    if path.is_dir():
        if _is_idx_dir(path):
            return _open_idx_dir(path)
        raise SepcheckError(
            f"directory {path} is not a data set sepcheck reads: expected MNIST-format IDX files "
            "(*-images-idx3-ubyte.gz, *-labels-idx1-ubyte.gz)"
        )
    if path.exists():
        raise SepcheckError(f"{path} is not a data set sepcheck reads: use a .npz or .h5 with X and y")
    raise SepcheckError(
        f"unknown data set {text!r}: use a registered name (spiral), a .npz/.h5 file with X "
        "and y, or a directory of IDX files"
    )


__all__ = ["Dataset", "open_dataset", "make_spiral", "read_idx", "read_idx_pair", "read_arrays"]
