"""A restricted unpickler for CIFAR's python batches: data only, never code.

It admits the builtin containers, bytes, str and numbers (built by pickle opcodes without
any import) and numpy arrays, through exactly these globals:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` (array
  shells; only for ``numpy.ndarray`` itself),
* ``numpy.ndarray`` (only as the shell's type, never called) and ``numpy.dtype`` (numeric
  dtypes only: no object arrays),
* ``_codecs.encode`` restricted to latin-1 text (how Python 3 writes ``bytes`` in protocol
  2, as the CIFAR batches and their test fixtures use),
* ``builtins.set``/``frozenset``/``bytearray`` (plain containers) and ``bytes()`` with no
  argument (an empty ``bytes`` in protocol 2).

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused
before it is imported, so nothing a malicious pickle asks for runs.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from ..errors import SepcheckError, UnsafePickleError


class _NdarrayType:
    """Stands in for ``numpy.ndarray`` in a pickle: usable only as ``_reconstruct``'s subtype,
    never callable (a pickle cannot call the array constructor directly)."""

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError("a call of numpy.ndarray")


_NDARRAY = _NdarrayType()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(obj, (str, bytes, np.dtype)):
        raise UnsafePickleError(f"numpy.dtype({obj!r})")
    d = np.dtype(obj.decode("latin-1") if isinstance(obj, bytes) else obj, align=bool(align), copy=bool(copy))
    if d.hasobject:
        raise UnsafePickleError("numpy object arrays")
    return d


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise UnsafePickleError("bytes() with arguments")
    return b""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "bytes"): _empty_bytes,
    # Python 2 names, as written by the original CIFAR pickles
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "bytearray"): bytearray,
    ("__builtin__", "bytes"): _empty_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allowed globals (see the module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids")


def _check_result(obj: Any, depth: int = 0) -> None:
    """The restricted set also admits numpy dtypes rebuilt via BUILD: reject object arrays."""
    if depth > 50:
        return
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise UnsafePickleError("numpy object arrays")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_result(k, depth + 1)
            _check_result(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_result(v, depth + 1)


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` (Python 2 strings come back as bytes) with the restricted unpickler.

    A pickle that asks for anything else raises :class:`SepcheckError` naming what it asked
    for; a truncated or corrupted pickle raises :class:`SepcheckError` too.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
        _check_result(obj)
        return obj
    except UnsafePickleError as exc:
        raise SepcheckError(
            f"{source} is a pickle that asks for {exc}, which sepcheck never loads "
            "(only containers, numbers, strings and numeric numpy arrays): it is not a genuine "
            "CIFAR batch; delete it and download the official file"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, RecursionError) as exc:
        raise SepcheckError(
            f"{source} is not a readable pickle ({type(exc).__name__}: {exc}): the file is truncated "
            "or corrupted; delete it and download it again"
        ) from None
