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

from .._validation import (
    as_features,
    as_labels,
    check_positive_int,
    check_same_dim,
    check_two_classes,
)
from ..errors import SepcheckError
from ..norms import parse_norm

#: default extra memory one search may use for its blocks (bytes); see README "Memory"
DEFAULT_MEMORY_BUDGET = 512 * 2**20


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
    if (queries is None) != (query_labels is None):
        raise SepcheckError(
            "queries and query_labels go together: pass both, or neither for the reference "
            "set against itself"
        )
    if queries is None:
        return Problem(ref, rl, ref, rl, p, k, True)
    qry = as_features(queries, "queries")
    ql = as_labels(query_labels, qry.shape[0], "query_labels", "queries")
    check_same_dim(ref, qry, "reference", "queries")
    ref, qry = common_dtype(ref, qry)
    return Problem(ref, rl, qry, ql, p, k, False)


def make_by_class_problem(
    reference: Any, reference_labels: Any, queries: Any, *, norm: str | float = "linf"
) -> Problem:
    """Validate the inputs into a ``BY_CLASS`` :class:`Problem` (a single class is allowed;
    query labels unused: all -1)."""
    p = parse_norm(norm)
    ref = as_features(reference, "reference")
    rl = as_labels(reference_labels, ref.shape[0], "reference_labels", "reference")
    if queries is None:
        raise SepcheckError(
            "queries is missing: pass the rows to search for (shape (m, features...))"
        )
    qry = as_features(queries, "queries")
    check_same_dim(ref, qry, "reference", "queries")
    ref, qry = common_dtype(ref, qry)
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
    )


def search_limits(block_size: int | None, memory_budget: int | None) -> tuple[int | None, int]:
    """Validated (block_size, memory budget in bytes) for a search."""
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")
    budget = int(memory_budget) if memory_budget is not None else DEFAULT_MEMORY_BUDGET
    if budget < 1:
        raise SepcheckError(f"memory_budget={memory_budget!r} is invalid: give bytes > 0")
    return block_size, budget


def scale_of(problem: Problem, raw: bool) -> float:
    """Divisor applied to reported distances: 255 for uint8 pixels unless ``raw``."""
    return 1.0 if (raw or not problem.integer) else 255.0


def is_linf_or_l1(p: float) -> bool:
    """The norms of the compiled early-abandon kernels."""
    return math.isinf(p) or p == 1
