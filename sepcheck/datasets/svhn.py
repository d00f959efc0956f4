"""SVHN (cropped digits, format 2; Netzer et al. 2011): canonical URLs, published md5s and
the .mat loader. Label 10 means digit 0; images come out as uint8 (n, 3, 32, 32).

The .mat files are MATLAB v5 files read with ``scipy.io.loadmat``, which only parses
arrays (no code runs); only the variables ``X`` and ``y`` are read.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.errors import SepcheckError
from ..core.fileio import check_read_size, input_file
from .base import DatasetInfo, RegisteredDataset, SplitData, check_split
from .download import RemoteFile, ensure_files, fingerprint

_URL = "http://ufldl.stanford.edu/housenumbers/"


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(X uint8 (n, 3, H, W), y int64 in 0..9) from an SVHN .mat file."""
    from scipy.io import loadmat, whosmat

    input_file(path, "SVHN file")
    try:
        _check_mat_header(path, {name: (shape, cls) for name, shape, cls in whosmat(path)})
        mat = loadmat(path, variable_names=["X", "y"])
    except NotImplementedError:
        raise SepcheckError(f"{path} is a MATLAB v7.3 (HDF5) file: the official SVHN files are v5; download them again") from None
    except SepcheckError:
        raise
    except Exception as exc:  # scipy raises many types (ValueError, OSError, struct.error, ...)
        raise SepcheckError(f"{path} is not a readable .mat file ({type(exc).__name__}: {exc}): "
                            "it is truncated or corrupted; delete it and download it again") from None
    for key in ("X", "y"):
        if key not in mat:
            raise SepcheckError(f"{path} has no variable {key!r}: it is not an SVHN file (expected X and y)")
    X, y = mat["X"], mat["y"]
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[2] != 3:
        raise SepcheckError(f"{path}: X is {X.dtype} {X.shape}, expected uint8 (32, 32, 3, n): not an SVHN file")
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind not in "biuf":
        raise SepcheckError(f"{path}: labels are {y.dtype}, not numbers: the file is not the official one")
    if y.shape[0] != X.shape[3]:
        raise SepcheckError(f"{path} has {X.shape[3]} images but {y.shape[0]} labels: the file is corrupted")
    if y.size and (not np.all(y == np.round(y)) or y.min() < 1 or y.max() > 10):
        raise SepcheckError(f"{path}: labels must be 1..10 (10 = digit 0): the file is not the official one")
    X = np.ascontiguousarray(X.transpose(3, 2, 0, 1))
    return X, (y.astype(np.int64) % 10)


#: MATLAB classes the variables of an SVHN file may have (the official X is uint8, y double)
_NUMERIC_MAT = ("uint8", "double", "single", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")


def _check_mat_header(path: Path, found: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Refuse X/y whose declared type or size is wrong -- from the variable headers alone,
    before a (possibly compressed) payload is decompressed."""
    for key in ("X", "y"):
        if key not in found:
            continue
        shape, cls = found[key]
        if cls not in _NUMERIC_MAT:
            raise SepcheckError(f"{path}: {key} is a MATLAB {cls}, not numbers: the file is not the official one")
        check_read_size(math.prod(shape) * 8, str(path), key)
    if "X" in found and (len(found["X"][0]) != 4 or found["X"][0][:3] != (32, 32, 3)):
        raise SepcheckError(f"{path}: X is declared {found['X'][0]}, expected (32, 32, 3, n): not an SVHN file")


class SVHN(RegisteredDataset):
    """``train_32x32.mat`` / ``test_32x32.mat`` in ``<data dir>/svhn/``."""

    #: split -> the published file
    FILES: ClassVar[dict[str, RemoteFile]] = {
        "train": RemoteFile("train_32x32.mat", (_URL + "train_32x32.mat",), md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
        "test": RemoteFile("test_32x32.mat", (_URL + "test_32x32.mat",), md5="eb5a983be6a315427106f1b164d9cef3"),
    }
    info = DatasetInfo(
        name="svhn",
        title="SVHN street-view house numbers (cropped digits)",
        shape=(3, 32, 32),
        sizes={"train": 73257, "test": 26032},
        n_classes=10,
        eps=8 / 255,
        eps_text="8/255",
        eps_source="Yang et al. 2020, Table 1 (0.031)",
        homepage=_URL,
        files={split: (f.name,) for split, f in FILES.items()},
        notes=("label 10 in the .mat files is digit 0 (loaded as label 0)",),
    )

    def remote_files(self) -> list[RemoteFile]:
        return list(self.FILES.values())

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        p = directory / self.FILES[split].name
        return [fingerprint(p, directory)] if p.is_file() else None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        f = self.FILES[split]
        records = ensure_files(self.name, [f], directory, download=download, verify=verify, progress=progress)
        X, y = read_svhn_mat(directory / f.name)
        check_split(self.name, split, X, y, 10, self.info.shape, str(directory / f.name))
        return SplitData(X=X, y=y, classes=[str(i) for i in range(10)], sources=records, verified=verify,
                         preprocessing={"format": "svhn-mat", "label_10_is": 0, "layout": "NCHW"},
                         origin=str(directory / f.name))
