"""One validated nearest-different-label search problem, shared by every backend."""

from __future__ import annotations

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
#: hard ceiling the automatic block sizing never exceeds
MAX_MEMORY_BUDGET = 1024 * 2**20


@dataclass(frozen=True)
class Problem:
    """Validated inputs: reference rows, query rows (the reference itself when ``self_mode``),
    their int64 labels, the norm's p and k. Features are 2-D, C-contiguous, and share a dtype:
    uint8, float32 or float64."""

    reference: np.ndarray
    reference_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    p: float
    k: int
    self_mode: bool

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

    def subset(self, rows: np.ndarray) -> Problem:
        """The same problem restricted to some query rows (never self mode)."""
        return Problem(
            self.reference,
            self.reference_labels,
            np.ascontiguousarray(self.queries[rows]),
            self.query_labels[rows],
            self.p,
            self.k,
            False,
        )


def _common_dtype(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    """Validate everything once and return a :class:`Problem`."""
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
    ref, qry = _common_dtype(ref, qry)
    return Problem(ref, rl, qry, ql, p, k, False)


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


def p_is(p: float, value: float) -> bool:
    return (math.isinf(value) and math.isinf(p)) or p == value
