"""Reader for the IDX format of MNIST and Fashion-MNIST (``*-idx3-ubyte[.gz]``).

Our own parser: magic number, dimensions and payload size are checked, and a truncated,
corrupted or mislabelled file gives a one-line :class:`SepcheckError`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import SepcheckError

#: IDX element type codes -> numpy dtypes (big-endian)
_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise SepcheckError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise SepcheckError(f"IDX file {path} is corrupted or truncated ({exc}): download it again") from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array with the shape stored in the header."""
    if len(data) < 4:
        raise SepcheckError(f"IDX file {source} is truncated: {len(data)} bytes, no header")
    zero, code, ndim = data[0] | data[1], data[2], data[3]
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise SepcheckError(
            f"IDX file {source} has a wrong magic number {data[:4].hex()}: not an IDX file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SepcheckError(f"IDX file {source} is truncated inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise SepcheckError(
            f"IDX file {source} has {len(data)} bytes but its header {shape} needs {expected}: "
            "the file is truncated or corrupted"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped)."""
    p = Path(path)
    return parse_idx(_read_bytes(p), str(p))


def read_idx_pair(images: str | os.PathLike, labels: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 1, rows, cols) uint8 and labels (n,) int64 from an IDX pair."""
    X = read_idx(images)
    y = read_idx(labels)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise SepcheckError(f"IDX images {images} have shape {X.shape} and type {X.dtype}: expected (n, rows, cols) uint8")
    if y.ndim != 1:
        raise SepcheckError(f"IDX labels {labels} have shape {y.shape}: expected (n,)")
    if X.shape[0] != y.shape[0]:
        raise SepcheckError(
            f"IDX images {images} hold {X.shape[0]} images but labels {labels} hold {y.shape[0]}: "
            "the files do not belong together"
        )
    return X[:, None, :, :], y.astype(np.int64)


def find_idx_pairs(directory: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Map split prefix ('train', 't10k', ...) -> (images, labels) files in a directory."""
    d = Path(directory)
    pairs: dict[str, tuple[Path, Path]] = {}
    for img in sorted(d.glob("*-images-idx3-ubyte*")):
        if img.name.endswith(".part"):
            continue
        prefix = img.name.split("-images-idx3-ubyte")[0]
        suffix = img.name.split("-images-idx3-ubyte")[1]
        lab = d / f"{prefix}-labels-idx1-ubyte{suffix}"
        if not lab.exists():
            alt = [p for p in d.glob(f"{prefix}-labels-idx1-ubyte*") if not p.name.endswith(".part")]
            if not alt:
                raise SepcheckError(
                    f"IDX images {img} have no labels file: expected {lab.name} in {d}"
                )
            lab = alt[0]
        pairs[prefix] = (img, lab)
    return pairs
