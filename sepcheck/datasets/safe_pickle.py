"""A restricted unpickler for CIFAR's python batches: data only, never code.

It admits the builtin containers, bytes, str and numbers (built by pickle opcodes without
any import) and numeric numpy arrays, through exactly these globals:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` and
  ``numpy.ndarray`` (only as ``_reconstruct``'s subtype), ``numpy.dtype`` (names of plain
  numeric types only),
* ``_codecs.encode`` restricted to latin-1 text (how Python 3 writes ``bytes`` in protocol
  2, as the CIFAR batches and their test fixtures use),
* ``builtins.set``/``frozenset``/``bytearray`` (plain containers; ``bytearray`` of bytes only)
  and ``bytes()`` with no argument (an empty ``bytes`` in protocol 2).

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused
before it is imported, so nothing a malicious pickle asks for runs.

No numpy object is ever built by numpy's own ``__setstate__`` (a BUILD on a
``numpy.dtype`` could grow its item size and make later reads leave the buffer). The
BUILD opcode is refused on everything except two inert shells this module defines:
``_reconstruct`` returns an array shell and ``numpy.dtype`` a dtype shell; BUILD on the
dtype shell checks the state (byte order only; no fields, no item size) and BUILD on the
array shell checks the (shape, dtype, bytes) triple -- shape of non-negative Python ints,
dtype from :data:`NUMERIC_KINDS`, ``len(bytes) == prod(shape) * itemsize`` computed in
Python integers -- before an array is created from a copy of those bytes. A shell that is
never built (or is used before it is built) is refused too.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np

from ..core.errors import SepcheckError, UnsafePickleError, cause

#: dtype kinds a pickled array may have: booleans, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"
#: containers nested deeper than this in a pickle are refused (CIFAR batches use 2 levels)
MAX_DEPTH = 32


class _NdarrayType:
    """Stands in for ``numpy.ndarray`` in a pickle: usable only as ``_reconstruct``'s subtype,
    never callable (a pickle cannot call the array constructor directly)."""

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError("a call of numpy.ndarray")


_NDARRAY = _NdarrayType()


class _Shell:
    """An object a pickle has asked for but not yet given its state (BUILD)."""

    __slots__ = ("memo_keys",)

    def __init__(self) -> None:
        self.memo_keys: list[Any] = []

    def build(self, state: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


class _DtypeShell(_Shell):
    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def build(self, state: Any) -> np.dtype:
        # numpy writes (version, byteorder, subdescr, names, fields, elsize, alignment, flags);
        # for a plain numeric type everything but the byte order is None / -1 / 0.
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=", b"<", b">", b"|", b"=")
                and state[2] is None and state[3] is None and state[4] is None
                and state[5] == -1 and state[6] == -1 and isinstance(state[7], int) and state[7] == 0):
            raise UnsafePickleError("a numpy.dtype state other than a plain numeric type's")
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        return self.dtype if order in ("|", "=") else self.dtype.newbyteorder(order)


class _ArrayShell(_Shell):
    __slots__ = ()

    def build(self, state: Any) -> np.ndarray:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError("a numpy array state that is not (version, shape, dtype, order, bytes)")
        if len(state) == 5:
            if state[0] != 1:
                raise UnsafePickleError(f"numpy array state version {state[0]!r}")
            state = state[1:]
        shape, dtype, fortran, raw = state
        if (not isinstance(shape, tuple) or len(shape) > 32
                or not all(type(s) is int and s >= 0 for s in shape)):
            raise UnsafePickleError(f"numpy array shape {shape!r}")
        if isinstance(dtype, _DtypeShell):
            raise UnsafePickleError("a numpy.dtype used before its state was given")
        if not isinstance(dtype, np.dtype):
            raise UnsafePickleError(f"numpy array dtype {dtype!r}")
        if not isinstance(raw, (bytes, bytearray)) or not isinstance(fortran, (bool, int)):
            raise UnsafePickleError("numpy array data that is not bytes")
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if len(raw) != expected:
            raise UnsafePickleError(f"numpy array data of {len(raw)} bytes for shape {shape} of "
                                    f"{dtype} ({expected} bytes)")
        flat = np.frombuffer(raw, dtype=dtype).copy()
        return flat.reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayShell:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"array subtype {subtype!r}")
    return _ArrayShell()


def _dtype(obj: Any, align: Any = False, copy: Any = False) -> _DtypeShell:
    if not isinstance(obj, (str, bytes)) or len(obj) > 8:
        raise UnsafePickleError(f"numpy.dtype({obj!r})")
    try:
        d = np.dtype(obj.decode("latin-1") if isinstance(obj, bytes) else obj)
    except TypeError:
        raise UnsafePickleError(f"numpy.dtype({obj!r})") from None
    if d.kind not in NUMERIC_KINDS or d.names is not None or d.subdtype is not None:
        raise UnsafePickleError(f"numpy.dtype({obj!r}) (only plain numeric types are loaded)")
    return _DtypeShell(d)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise UnsafePickleError("bytes() with arguments")
    return b""


def _bytearray(*args: Any) -> bytearray:
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray))):
        raise UnsafePickleError("bytearray() of anything but bytes")
    return bytearray(*args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "bytes"): _empty_bytes,
    # Python 2 names, as written by the original CIFAR pickles
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "bytearray"): _bytearray,
    ("__builtin__", "bytes"): _empty_bytes,
}


class _Memo(dict):
    """The unpickler's memo, remembering where shells are stored so BUILD can replace them."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, _Shell):
            value.memo_keys.append(key)
        super().__setitem__(key, value)


class RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its opcodes can be overridden
    """Unpickler that resolves only the allowed globals and builds only inert shells (see the
    module doc)."""

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.memo = _Memo()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids")

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, _Shell):
            raise UnsafePickleError(f"BUILD (__setstate__) on a {type(inst).__name__}")
        built = inst.build(state)
        self.stack[-1] = built
        for key in inst.memo_keys:
            if self.memo.get(key) is inst:
                dict.__setitem__(self.memo, key, built)

    def load_inst(self) -> None:
        raise UnsafePickleError("the INST opcode (calls a class)")

    def load_obj(self) -> None:
        raise UnsafePickleError("the OBJ opcode (calls a class)")

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.INST[0]] = load_inst
    dispatch[pickle.OBJ[0]] = load_obj


def _check_result(obj: Any) -> None:
    """Refuse shells left unbuilt (or used before BUILD) and nesting deeper than MAX_DEPTH."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(obj, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, _Shell):
            raise UnsafePickleError("a numpy object without its state (or used before its state was given)")
        if not isinstance(item, (dict, list, tuple, set, frozenset)) or id(item) in seen:
            continue
        if depth >= MAX_DEPTH:
            raise UnsafePickleError(f"containers nested more than {MAX_DEPTH} deep")
        seen.add(id(item))
        values = [v for kv in item.items() for v in kv] if isinstance(item, dict) else list(item)
        todo.extend((v, depth + 1) for v in values)


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
    except RecursionError:
        raise SepcheckError(f"{source} is not a readable pickle (nested too deeply): the file is "
                            "corrupted; delete it and download it again") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the pure-Python unpickler on hostile bytes
        raise SepcheckError(
            f"{source} is not a readable pickle ({type(exc).__name__}: {cause(exc, 200)}): the file is truncated "
            "or corrupted; delete it and download it again"
        ) from None
