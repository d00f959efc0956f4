"""Row sources: the rows of a feature array, in memory or on disk, read in blocks.

A :class:`RowSource` is what the streamed search reads (see :mod:`sepcheck.engine.stream`):
an (n, d) array of rows (images flattened) that is read block by block, in file order, so
that a search over data larger than memory keeps its reads sequential and its memory
bounded. :func:`open_source` makes one from

* an array-like (:class:`ArraySource`: no copy when it is already uint8/float32/float64 and
  C-contiguous),
* a ``.npy`` file (:class:`NpySource`: the header is validated, blocks are read with plain
  file reads at their offsets; a memory map would leave every page read resident, counted
  in the process's memory, so the pages are read, not mapped),
* an ``.h5``/``.hdf5`` file (``dataset=`` or ``"file.h5:name"``, default ``"X"``) or an
  open ``h5py.Dataset`` (:class:`H5Source`: checked by :func:`sepcheck.core.fileio.h5_dataset`,
  external links never followed; blocks aligned to the dataset's chunk rows),
* a :class:`RowSource` (returned as it is).

Blocks hold the values as stored (native byte order); the engine converts and validates
each block as it would an in-memory array (:func:`sepcheck.core.validation.as_features`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError, cause
from ..core.fileio import h5_dataset, input_file

#: the dataset read from an HDF5 file when none is named
DEFAULT_DATASET = "X"
_H5_SUFFIXES = (".h5", ".hdf5")


class RowSource:
    """Rows ``[start, stop)`` of an (n, d) feature array, read in blocks.

    Subclasses implement :meth:`_read` (absolute rows of the whole array) and
    :meth:`describe`; :meth:`rows` gives a lazy view of a row range of any source.

    Attributes
    ----------
    image_shape : tuple of int
        The shape of one row as stored (``(28, 28)``, ``(3, 32, 32)``, ``(d,)``).
    dtype : numpy.dtype
        The stored dtype in native byte order.
    """

    image_shape: tuple[int, ...]
    dtype: np.dtype
    _start: int = 0
    _stop: int = 0

    # ----- shape -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(n, d): rows of this source, features per row (images flattened)."""
        return (self._stop - self._start, math.prod(self.image_shape))

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def nbytes(self) -> int:
        n, d = self.shape
        return n * d * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        return self.shape[1] * self.dtype.itemsize

    #: rows that are read together most cheaply (HDF5: the chunk rows); blocks align to it
    chunk_rows: int = 1

    # ----- reading -----------------------------------------------------------------------
    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of this source as a C-contiguous (stop - start, d) array."""
        n = len(self)
        if not (0 <= start <= stop <= n):
            raise SepcheckError(f"rows [{start}, {stop}) are outside the {n} rows of {self.label}")
        out = self._read(self._start + start, self._start + stop)
        return np.ascontiguousarray(out.reshape(stop - start, self.shape[1]))

    def rows(self, start: int, stop: int) -> RowSource:
        """A lazy view of rows ``[start, stop)`` (nothing is read)."""
        n = len(self)
        if not (0 <= start <= stop <= n):
            raise SepcheckError(f"rows [{start}, {stop}) are outside the {n} rows of {self.label}")
        view = copy.copy(self)
        view._start, view._stop = self._start + start, self._start + stop
        return view

    def iter_blocks(self, block_rows: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, rows)`` for consecutive blocks covering the source in file order.

        Blocks hold at most ``max(block_rows, chunk_rows)`` rows; their boundaries fall on
        multiples of the chunk rows of the file (HDF5), so that no chunk is read twice.
        """
        for start, stop in self.block_bounds(block_rows):
            yield start, stop, self.read(start, stop)

    def block_bounds(self, block_rows: int) -> list[tuple[int, int]]:
        """The ``(start, stop)`` of the blocks :meth:`iter_blocks` reads."""
        c = max(1, int(self.chunk_rows))
        step = max(c, int(block_rows) // c * c)
        bounds, pos = [], self._start
        while pos < self._stop:
            end = min(self._stop, (pos // step + 1) * step)
            bounds.append((pos - self._start, end - self._start))
            pos = end
        return bounds

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    # ----- identity ----------------------------------------------------------------------
    @property
    def label(self) -> str:
        return type(self).__name__

    def describe(self) -> dict[str, Any]:
        """What identifies the data: kind, path, dataset, shape, dtype, file size and
        mtime_ns (for fingerprints; an in-memory source has no path)."""
        raise NotImplementedError

    def _file_facts(self, path: Path) -> dict[str, Any]:
        st = os.stat(path)
        return {"path": str(Path(path).resolve()), "file_size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
                "rows": [self._start, self._stop], "shape": list(self.shape), "dtype": self.dtype.str}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} rows {self._start}:{self._stop} shape={self.shape} {self.dtype}>"


def _check_features(shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
    if dtype.hasobject or dtype.kind not in "biuf":
        raise SepcheckError(f"{where} has dtype {dtype}: features must be numeric (uint8 or floating)")
    if len(shape) < 2:
        raise SepcheckError(f"{where} has shape {tuple(shape)}: features need shape (n, features...)")
    if shape[0] == 0 or math.prod(shape[1:]) == 0:
        raise SepcheckError(f"{where} is empty (shape {tuple(shape)}): it needs at least one row and one feature")


class ArraySource(RowSource):
    """An in-memory array as a source (no copy for uint8/float32/float64 C-contiguous input)."""

    def __init__(self, array: Any, name: str = "X") -> None:
        arr = np.asarray(array)
        _check_features(arr.shape, arr.dtype, name)
        if arr.dtype.byteorder not in "=|":
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if arr.dtype not in (np.uint8, np.float32, np.float64) or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        self.array = arr.reshape(arr.shape[0], -1)
        self.image_shape = tuple(int(s) for s in arr.shape[1:])
        self.dtype = arr.dtype
        self.name = name
        self._start, self._stop = 0, int(arr.shape[0])

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    @property
    def label(self) -> str:
        return f"array {self.name}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "array", "path": None, "dataset": None, "rows": [self._start, self._stop],
                "shape": list(self.shape), "dtype": self.dtype.str, "file_size": None, "mtime_ns": None}


class NpySource(RowSource):
    """Rows of a ``.npy`` file, read at their offsets (C order, numeric dtypes only)."""

    def __init__(self, path: str | os.PathLike, name: str = "X") -> None:
        self.path = input_file(path, f"{name} file")
        self.name = name
        shape, dtype, offset = _npy_header(self.path)
        self.image_shape = tuple(int(s) for s in shape[1:])
        self._stored = dtype
        self.dtype = dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype
        self.offset = offset
        self._start, self._stop = 0, int(shape[0])

    def _read(self, start: int, stop: int) -> np.ndarray:
        row = self.row_bytes
        count = (stop - start) * self.shape[1]
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * row)
            out = np.fromfile(fh, dtype=self._stored, count=count)
        if out.size != count:
            raise SepcheckError(f"{self.label} ended early (rows {start}:{stop}): the file was truncated while "
                                "it was read")
        return out.astype(self.dtype, copy=False)

    @property
    def label(self) -> str:
        return f"{self.path}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "npy", "dataset": None, **self._file_facts(self.path)}


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a ``.npy`` file, checked against its size."""
    fix = "save the array with np.save (a numeric, C-order array)"
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh, max_header_size=10000)
            offset = fh.tell()
    except (ValueError, SyntaxError, TypeError, EOFError, OSError) as exc:
        raise SepcheckError(f"{path} is not a valid .npy file ({cause(exc, 120)}): {fix}") from None
    if dtype.hasobject:
        raise SepcheckError(f"{path} stores Python objects (pickles), which sepcheck never loads: {fix}")
    if fortran and len(shape) > 1:
        raise SepcheckError(f"{path} is stored in Fortran order, which cannot be read row by row: "
                            "save np.ascontiguousarray(X) with np.save")
    _check_features(tuple(shape), dtype, str(path))
    nbytes = math.prod(shape) * dtype.itemsize
    size = os.stat(path).st_size
    if size - offset < nbytes:
        raise SepcheckError(f"{path} declares {nbytes} bytes of data but holds {size - offset}: the file is "
                            "truncated; write it again")
    return tuple(int(s) for s in shape), dtype, offset


class H5Source(RowSource):
    """Rows of an HDF5 dataset (opened read-only by path; reopened lazily after pickling)."""

    def __init__(self, path: str | os.PathLike, dataset: str = DEFAULT_DATASET, *, _dset: Any = None) -> None:
        self.path = Path(path)
        self.dataset = dataset
        self._file = None
        self._dset = _dset
        d = self._open()
        _check_features(tuple(d.shape), d.dtype, f"data file {self.path}: {dataset!r}")
        self.image_shape = tuple(int(s) for s in d.shape[1:])
        self.dtype = d.dtype.newbyteorder("=") if d.dtype.byteorder not in "=|" else d.dtype
        self.chunk_rows = int(d.chunks[0]) if d.chunks else 1
        self._start, self._stop = 0, int(d.shape[0])

    def _open(self) -> Any:
        if self._dset is not None:
            return self._dset
        import h5py

        p = input_file(self.path, "data file")
        try:
            self._file = h5py.File(p, "r")
        except OSError as exc:
            raise SepcheckError(f"data file {p} is corrupted or not HDF5 ({cause(exc)})") from None
        try:
            names = sorted(self._file.keys())
            if self.dataset not in self._file:
                raise SepcheckError(f"data file {p} has no dataset {self.dataset!r} (it holds "
                                    f"{', '.join(names) or 'none'}): name one with dataset= or 'file.h5:name'")
            self._dset = h5_dataset(self._file, self.dataset, p, streamed=True)
        except SepcheckError:
            self.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            self.close()
            raise SepcheckError(f"data file {p} is corrupted or not HDF5 ({cause(exc)})") from None
        return self._dset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._dset = None

    def _read(self, start: int, stop: int) -> np.ndarray:
        d = self._open()
        try:
            out = d[start:stop]
        except (OSError, ValueError, RuntimeError) as exc:
            raise SepcheckError(f"{self.label}: rows {start}:{stop} cannot be read ({cause(exc)}): the file is "
                                "damaged; write it again") from None
        return out.astype(self.dtype, copy=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = state["_dset"] = None  # reopened by path where it is unpickled
        return state

    @property
    def label(self) -> str:
        return f"data file {self.path}: {self.dataset!r}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "hdf5", "dataset": self.dataset, **self._file_facts(self.path)}


def _split_h5_name(text: str) -> tuple[str, str | None]:
    """``"file.h5:name"`` -> (``"file.h5"``, ``"name"``) when the part before the last colon
    is an HDF5 file name; otherwise (text, None)."""
    head, sep, tail = text.rpartition(":")
    if sep and head.lower().endswith(_H5_SUFFIXES) and tail:
        return head, tail
    return text, None


def open_source(obj: Any, name: str = "X", dataset: str | None = None) -> RowSource:
    """A :class:`RowSource` for an array-like, a ``.npy`` / ``.h5`` path, an ``h5py.Dataset``
    or a source (returned as it is).

    Parameters
    ----------
    obj
        Array-like of shape (n, ...), a path to ``.npy`` or ``.h5``/``.hdf5`` (the dataset as
        ``"file.h5:name"`` or ``dataset=``; default ``"X"``), an ``h5py.Dataset`` or a
        :class:`RowSource`.
    name
        What the rows are called in error messages ("X", "reference", ...).
    dataset
        The HDF5 dataset to read (for a ``.h5`` path).

    Returns
    -------
    RowSource
        Rows of shape (n, d) (features flattened).
    """
    if isinstance(obj, RowSource):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        path, ds = _split_h5_name(text)
        suffix = Path(path).suffix.lower()
        if suffix in _H5_SUFFIXES:
            return H5Source(path, dataset or ds or DEFAULT_DATASET)
        if suffix == ".npy":
            return NpySource(path, name)
        raise SepcheckError(f"{name} file {text} is neither .npy nor .h5: save the rows with np.save or in HDF5")
    if _is_h5_dataset(obj):
        f = obj.file
        h5_dataset(f, obj.name, f.filename, streamed=True)
        return H5Source(f.filename, obj.name, _dset=obj)
    return ArraySource(obj, name)


def _is_h5_dataset(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("h5py") and type(obj).__name__ == "Dataset"


def is_source(obj: Any) -> bool:
    """True for a :class:`RowSource`, a path string/``PathLike`` to ``.npy``/``.h5`` or an
    ``h5py.Dataset``: inputs the engine streams. False for in-memory arrays."""
    if isinstance(obj, RowSource):
        return True
    if isinstance(obj, (str, os.PathLike)):
        path, _ = _split_h5_name(os.fspath(obj))
        return Path(path).suffix.lower() in (*_H5_SUFFIXES, ".npy")
    return _is_h5_dataset(obj)


__all__ = ["RowSource", "ArraySource", "NpySource", "H5Source", "open_source", "is_source",
           "DEFAULT_DATASET"]
