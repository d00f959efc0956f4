"""Input validation in one place: features, labels and their agreement.

Every check raises :class:`~sepcheck.core.errors.SepcheckError` with a one-line message that
names the problem and the fix.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

from .errors import SepcheckError

#: within one public call (:func:`checked_once`): id -> (weak reference to the object, weak
#: reference to its checked array) of every array :func:`as_features` / :func:`as_labels`
#: returned, and ("abs_max", id) -> (weak reference, value); weak, so that the scope keeps
#: no block of a streamed search alive
_CHECKED: ContextVar[dict | None] = ContextVar("sepcheck_checked", default=None)
#: full reads of the data by the checks, by kind ('finite', 'abs_max'): tests count them
SCANS: collections.Counter = collections.Counter()

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def checked_once_scope() -> Iterator[None]:
    """Inside, an array already checked by :func:`as_features` or :func:`as_labels` (the
    caller's object or the checked one) is returned at once, not read again: "check once,
    then trust" for the layers of one call. Scopes nest: the outermost one counts. Arrays
    are trusted only within the call (a caller may change theirs between calls)."""
    if _CHECKED.get() is not None:
        yield
        return
    token = _CHECKED.set({})
    try:
        yield
    finally:
        _CHECKED.reset(token)


def checked_once(f: F) -> F:
    """Decorator of a public entry point: its whole call is one :func:`checked_once_scope`."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with checked_once_scope():
            return f(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _recall(obj: Any) -> np.ndarray | None:
    """The checked array of ``obj`` when this call checked it already."""
    scope = _CHECKED.get()
    if scope is None:
        return None
    hit = scope.get(id(obj))
    return hit[1]() if hit is not None and hit[0]() is obj else None


def _remember(obj: Any, out: np.ndarray) -> np.ndarray:
    scope = _CHECKED.get()
    if scope is not None:
        try:
            ref_obj, ref_out = weakref.ref(obj), weakref.ref(out)
        except TypeError:  # not weakly referable (a list): checked again when passed again
            return out
        scope[id(obj)] = (ref_obj, ref_out)
        scope[id(out)] = (ref_out, ref_out)
    return out


def abs_max(a: np.ndarray, chunk: int = 2**20) -> float:
    """The largest |value| of ``a`` (read in chunks; once per array within a call)."""
    scope = _CHECKED.get()
    key = ("abs_max", id(a))
    if scope is not None and key in scope and scope[key][0]() is a:
        return scope[key][1]
    SCANS["abs_max"] += 1
    flat = a.reshape(-1)
    top = max((float(np.abs(flat[s : s + chunk]).max()) for s in range(0, flat.size, chunk)), default=0.0)
    if scope is not None:
        scope[key] = (weakref.ref(a), top)
    return top

#: rows checked for NaN/inf at a time (bounded memory for the finiteness check)
_FINITE_CHUNK_BYTES = 64 * 2**20


def _to_numpy(a: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors are moved to the CPU first."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except ValueError as exc:  # ragged nested lists
        raise SepcheckError(
            f"could not make an array of the input ({str(exc).splitlines()[0]}): pass "
            "rows of equal length"
        ) from None


def as_features(X: Any, name: str = "X") -> np.ndarray:
    """Validate features and return a C-contiguous 2-D array of shape (n, d).

    Images of shape (n, ...) are flattened. uint8 stays uint8 (no copy when already
    contiguous); float16 becomes float32; other integer and bool types become float64;
    float32/float64 stay as they are. NaN or inf values, empty arrays and non-numeric
    data are rejected. Within a :func:`checked_once_scope` an array checked already is
    returned at once.
    """
    done = _recall(X)
    if done is not None:
        return done
    arr = _to_numpy(X)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise SepcheckError(
            f"{name} has dtype {arr.dtype}: features must be numeric (uint8 or floating)"
        )
    if arr.ndim == 0:
        raise SepcheckError(f"{name} is a scalar: pass an array of shape (n, features...)")
    if arr.ndim == 1:
        raise SepcheckError(
            f"{name} is 1-D with shape {arr.shape}: pass shape (n, d); use X.reshape(-1, 1) "
            "for one feature"
        )
    n = arr.shape[0]
    d = int(np.prod(arr.shape[1:], dtype=np.int64))
    if n == 0 or d == 0:
        raise SepcheckError(f"{name} is empty (shape {arr.shape}): it needs at least one row and one feature")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype.kind == "f":
        out = arr.astype(np.float32, copy=False) if arr.dtype.itemsize < 4 else arr
        if out.dtype.itemsize > 8:
            out = out.astype(np.float64)
    else:
        _check_exact_in_float64(arr, name)
        out = arr.astype(np.float64)
    out = np.ascontiguousarray(out.reshape(n, d))
    if out.dtype.kind == "f":
        _check_finite(out, name)
    return _remember(X, out)


#: integers of larger magnitude are not all exact in float64
_FLOAT64_EXACT_INT = 2**53


def _check_exact_in_float64(arr: np.ndarray, name: str) -> None:
    """Integer features are computed in float64: refuse values it cannot hold exactly."""
    if arr.dtype.kind in "iu" and arr.dtype.itemsize >= 8 and arr.size:
        big = max(abs(int(arr.min())), abs(int(arr.max())))
        if big > _FLOAT64_EXACT_INT:
            raise SepcheckError(
                f"{name} holds integers up to {big}, beyond 2**53 where float64 (in which "
                "sepcheck computes) rounds them: rescale or offset the features below 2**53"
            )


def _check_finite(arr: np.ndarray, name: str) -> None:
    SCANS["finite"] += 1
    step = max(1, _FINITE_CHUNK_BYTES // max(1, arr.shape[1] * arr.itemsize))
    for start in range(0, arr.shape[0], step):
        block = arr[start : start + step]
        if not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise SepcheckError(
                f"{name} contains NaN or inf (first in row {bad}): remove or impute those rows"
            )


def as_labels(y: Any, n: int, name: str = "y", features_name: str = "X") -> np.ndarray:
    """Validate labels for ``n`` rows and return them as a 1-D C-contiguous int64 array
    (a strided view is copied: the compiled kernels take one layout).

    Integer arrays and floating arrays holding whole numbers are accepted; strings and
    fractional values are rejected, as is a count that differs from ``n``.
    """
    done = _recall(y)
    if done is not None and done.shape[0] == n:
        return done
    arr = _to_numpy(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise SepcheckError(f"{name} has shape {arr.shape}: labels must be 1-D, one per row")
    if arr.shape[0] != n:
        raise SepcheckError(
            f"{name} has {arr.shape[0]} labels but {features_name} has {n} rows: "
            "pass one label per row"
        )
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise SepcheckError(
            f"{name} has values up to {int(arr.max())}, beyond int64: map them with "
            "np.unique(y, return_inverse=True)"
        )
    if arr.dtype.kind in "iub":
        return _remember(y, np.ascontiguousarray(arr, dtype=np.int64))
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise SepcheckError(
                f"{name} has non-integer values (fractions, NaN or inf): labels must be "
                "integers (map them with np.unique(y, return_inverse=True))"
            )
        if arr.size and float(np.abs(arr).max()) > 2**53:
            raise SepcheckError(
                f"{name} has float labels beyond 2**53 ({float(np.abs(arr).max()):g}), which "
                "float64 cannot tell apart: map them with np.unique(y, return_inverse=True)"
            )
        return _remember(y, arr.astype(np.int64))
    raise SepcheckError(
        f"{name} has dtype {arr.dtype}: labels must be integers "
        "(map them with np.unique(y, return_inverse=True))"
    )


def check_same_dim(a: np.ndarray, b: np.ndarray, a_name: str = "X", b_name: str = "X_test") -> None:
    """Both feature arrays must have the same number of features per row."""
    if a.shape[1] != b.shape[1]:
        raise SepcheckError(
            f"{a_name} has {a.shape[1]} features per row but {b_name} has {b.shape[1]}: "
            "both must come from the same feature space"
        )


def check_two_classes(y: np.ndarray, name: str = "y", what: str = "separation") -> None:
    """A nearest-different-label search (``what`` names the caller's task) needs at least two classes."""
    if np.unique(y).size < 2:
        raise SepcheckError(
            f"{name} has a single class ({int(y[0])}): {what} needs at least two labels"
        )


def check_positive_int(value: Any, name: str) -> int:
    """An integer >= 1 (k, block sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SepcheckError(f"{name}={value!r} is invalid: it must be an integer >= 1")
    return int(value)


#: default extra memory one search may use for its blocks (bytes); see README "Memory"
DEFAULT_MEMORY_BUDGET = 512 * 2**20
#: the smallest memory budget a search accepts (smaller budgets make blocks of a few rows)
MIN_MEMORY_BUDGET = 16 * 2**20
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def as_memory_budget(value: Any) -> int:
    """Bytes of a memory budget given as a number of bytes or a string such as ``"512MiB"``,
    ``"1GB"`` or ``"2 GiB"`` (decimal and binary units); at least :data:`MIN_MEMORY_BUDGET`."""
    hint = "give bytes (an integer) or a size such as '512MiB' or '2GB', at least 16MiB"
    if isinstance(value, str):
        import re

        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise SepcheckError(f"memory_budget={value!r} is invalid: {hint}")
        number = float(m.group(1)) * _UNITS[m.group(2).lower()]
    elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SepcheckError(f"memory_budget={value!r} is invalid: {hint}")
    else:
        number = float(value)
    if not np.isfinite(number) or number < MIN_MEMORY_BUDGET:
        raise SepcheckError(f"memory_budget={value!r} is invalid: {hint}")
    return int(number)
