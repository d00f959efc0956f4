"""One validated search problem, shared by every backend.

A problem is a grouping of one search (see :class:`Grouping`): every backend returns its
answer in *slots* of shape (n_queries, n_slots, slot_k), where reference row j counts for
query i in slot ``slot_of(i, j)``:

* ``OTHER_LABEL``: one slot (S = 1) of the k nearest rows; row j counts iff its label
  differs from the query's.
* ``BY_CLASS``: one slot per class (S = n_classes, k = 1); row j goes to slot ``codes[j]``
  (its class's position in the sorted ``classes``); queries carry no labels.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import SepcheckError
from ..core.norms import norm_name, parse_norm
from ..core.validation import (
    abs_max,
    as_features,
    as_labels,
    check_positive_int,
    check_same_dim,
    check_two_classes,
)


class Grouping(enum.Enum):
    """Which reference rows a query's answer is drawn from, and into which slot."""

    #: the k nearest rows whose label differs from the query's (one slot)
    OTHER_LABEL = "other_label"
    #: the nearest row of every class (one slot per class, k = 1)
    BY_CLASS = "by_class"


@dataclass(frozen=True)
class Problem:
    """Validated inputs: reference rows, query rows (the reference itself when ``self_mode``),
    their int64 labels, the norm's p, k and the grouping. Features are 2-D, C-contiguous,
    and share a dtype: uint8, float32 or float64. For ``BY_CLASS``, ``codes`` (n_ref,) holds
    each reference row's class position 0..C-1 in ``classes`` (sorted unique labels) and the
    query labels are unused (-1)."""

    reference: np.ndarray
    reference_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    p: float
    k: int
    self_mode: bool
    grouping: Grouping = Grouping.OTHER_LABEL
    codes: np.ndarray | None = None
    classes: np.ndarray | None = None
    #: the features were multiplied by this power of two (see :func:`range_safe`):
    #: distances computed from them are divided by it before they are reported
    scale: float = 1.0

    @property
    def n_ref(self) -> int:
        return int(self.reference.shape[0])

    @property
    def n_query(self) -> int:
        return int(self.queries.shape[0])

    @property
    def dim(self) -> int:
        return int(self.reference.shape[1])

    @property
    def integer(self) -> bool:
        """True for uint8 data: distances are computed exactly in integer arithmetic."""
        return self.reference.dtype == np.uint8

    @property
    def by_class(self) -> bool:
        return self.grouping is Grouping.BY_CLASS

    @property
    def n_slots(self) -> int:
        """S: 1 for OTHER_LABEL, the number of classes for BY_CLASS."""
        return int(self.classes.size) if self.by_class else 1

    @property
    def slot_codes(self) -> np.ndarray:
        """(n_ref,) int64 slot of every reference row (all 0 for OTHER_LABEL, whose rows are
        excluded per query by label instead)."""
        if self.by_class:
            return self.codes
        return np.zeros(self.n_ref, dtype=np.int64)

    def subset(self, rows: np.ndarray | slice) -> Problem:
        """The same problem restricted to some query rows (never self mode)."""
        return dataclasses.replace(
            self,
            queries=np.ascontiguousarray(self.queries[rows]),
            query_labels=self.query_labels[rows],
            self_mode=False,
        )


def common_dtype(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference and queries in one dtype (uint8 with float is refused: units differ)."""
    if a.dtype == b.dtype:
        return a, b
    if np.uint8 in (a.dtype, b.dtype):
        raise SepcheckError(
            f"reference is {a.dtype} but queries are {b.dtype}: pass both as uint8 pixels or "
            "both as floats in the same units"
        )
    wide = np.result_type(a.dtype, b.dtype)
    return a.astype(wide, copy=False), b.astype(wide, copy=False)


def check_query_pair(queries: Any, query_labels: Any) -> None:
    """Queries and their labels come together (neither: the reference against itself)."""
    if (queries is None) != (query_labels is None):
        raise SepcheckError(
            "queries and query_labels go together: pass both, or neither for the reference "
            "set against itself"
        )


def require_queries(queries: Any) -> None:
    """A per-class search needs queries."""
    if queries is None:
        raise SepcheckError(
            "queries is missing: pass the rows to search for (shape (m, features...))"
        )


def make_problem(
    reference: Any,
    reference_labels: Any,
    queries: Any = None,
    query_labels: Any = None,
    *,
    norm: str | float = "linf",
    k: int = 1,
) -> Problem:
    """Validate everything once and return an ``OTHER_LABEL`` :class:`Problem`."""
    p = parse_norm(norm)
    k = check_positive_int(k, "k")
    ref = as_features(reference, "reference")
    rl = as_labels(reference_labels, ref.shape[0], "reference_labels", "reference")
    check_two_classes(rl, "reference_labels")
    check_query_pair(queries, query_labels)
    if queries is None:
        p = effective_p(p, ref.shape[1])
        ref, _, scale = range_safe(ref, None, p)
        return Problem(ref, rl, ref, rl, p, k, True, scale=scale)
    qry = as_features(queries, "queries")
    ql = as_labels(query_labels, qry.shape[0], "query_labels", "queries")
    check_same_dim(ref, qry, "reference", "queries")
    ref, qry = common_dtype(ref, qry)
    p = effective_p(p, ref.shape[1])
    ref, qry, scale = range_safe(ref, qry, p)
    return Problem(ref, rl, qry, ql, p, k, False, scale=scale)


def make_by_class_problem(
    reference: Any, reference_labels: Any, queries: Any, *, norm: str | float = "linf"
) -> Problem:
    """Validate the inputs into a ``BY_CLASS`` :class:`Problem` (a single class is allowed;
    query labels unused: all -1)."""
    p = parse_norm(norm)
    ref = as_features(reference, "reference")
    rl = as_labels(reference_labels, ref.shape[0], "reference_labels", "reference")
    require_queries(queries)
    qry = as_features(queries, "queries")
    check_same_dim(ref, qry, "reference", "queries")
    ref, qry = common_dtype(ref, qry)
    p = effective_p(p, ref.shape[1])
    ref, qry, scale = range_safe(ref, qry, p)
    ql = np.full(qry.shape[0], -1, dtype=np.int64)
    classes, codes = np.unique(rl, return_inverse=True)
    return Problem(
        ref,
        rl,
        qry,
        ql,
        p,
        1,
        False,
        Grouping.BY_CLASS,
        codes.reshape(-1).astype(np.int64),
        classes.astype(np.int64),
        scale,
    )


#: the largest finite p searched as an lp norm: beyond it |difference|**p underflows
#: float64 for differences below 2**-16 of the largest feature (after range_safe)
MAX_P = 64.0
#: range_safe keeps log2 of the largest power sum below this (float32 range, with margin:
#: faiss and the l2 GEMM compute in float32)
_LOG2_TOP = 120.0
#: ... and log2 of the largest |feature| ** p above this (no float32 subnormals)
_LOG2_BOTTOM = -100.0


def effective_p(p: float, dim: int) -> float:
    """p itself, or ``inf`` for a p so large that the lp distance rounds to the linf distance
    in float64 (``dim ** (1/p) == 1``: then linf <= lp <= dim ** (1/p) linf); a finite p
    above :data:`MAX_P` otherwise is refused (its powers underflow: silently 0)."""
    if math.isinf(p) or p <= MAX_P:
        return p
    if dim ** (1.0 / p) == 1.0:
        return math.inf
    raise SepcheckError(
        f"norm {norm_name(p)} is beyond p={MAX_P:g}, where |difference|**p underflows in "
        "float64: use p <= 64, or 'linf' (the limit of lp as p grows)"
    )


def range_safe(
    ref: np.ndarray, qry: np.ndarray | None, p: float
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Reference and queries multiplied by one power of two ``scale`` (exact in binary
    floating point) so that sums of |difference|**p can neither overflow nor underflow to 0
    in float32 or float64, and ``scale``; the arrays are untouched (``scale`` 1) when they are
    safe as they are, which is the case for all but extreme data. uint8 is always safe."""
    if ref.dtype == np.uint8:
        return ref, qry, 1.0
    top = max(abs_max(ref), abs_max(qry) if qry is not None else 0.0)
    scale = range_scale(top, p, ref.shape[1])
    if scale == 1.0:
        return ref, qry, 1.0
    return apply_scale(ref, scale), (apply_scale(qry, scale) if qry is not None else None), scale


def range_scale(top: float, p: float, dim: int) -> float:
    """The power of two :func:`range_safe` multiplies features by when the largest |feature|
    of reference and queries is ``top`` (1.0: they are safe as they are)."""
    if top == 0.0:
        return 1.0
    e_top = math.frexp(top)[1]  # top < 2**e_top
    pp = 1.0 if math.isinf(p) else p
    spread = 0.0 if math.isinf(p) else math.log2(dim)
    # largest |difference| < 2**(e_top + 1); its p-th power summed over the features
    if spread + pp * (e_top + 1) < _LOG2_TOP and pp * (e_top - 1) > _LOG2_BOTTOM:
        return 1.0
    return math.ldexp(1.0, -e_top - 1)  # the largest |feature| in [1/4, 1/2)


def apply_scale(a: np.ndarray, scale: float) -> np.ndarray:
    """Floating rows multiplied by the power of two ``scale`` (float64 when ``scale`` is
    outside the range of their dtype); the rows themselves when ``scale`` is 1."""
    if scale == 1.0:
        return a
    info = np.finfo(a.dtype)
    dtype = a.dtype if float(info.tiny) <= scale <= float(info.max) else np.dtype(np.float64)
    return a.astype(dtype) * dtype.type(scale) if dtype != a.dtype else a * dtype.type(scale)


def scale_of(problem: Problem, raw: bool) -> float:
    """Divisor applied to computed distances: 255 for uint8 pixels unless ``raw``; the
    power of two of :func:`range_safe` for floating data."""
    if problem.integer:
        return 1.0 if raw else 255.0
    return problem.scale


def units_of(X: np.ndarray, raw: bool) -> str:
    """'pixel' ([0, 1] scale of uint8 data), 'raw' (0-255) or 'data' (floats as given)."""
    if X.dtype != np.uint8:
        return "data"
    return "raw" if raw else "pixel"


def is_linf_or_l1(p: float) -> bool:
    """The norms of the compiled early-abandon kernels."""
    return math.isinf(p) or p == 1
