"""The shard plan of a run: which query rows each shard holds.

The queries of a run (the training rows, then the test rows: its :class:`Part` s) are split
into contiguous shards by a :class:`ShardPlan`, a deterministic function of the number of
queries and the options (:func:`plan_shards`), so that a resumed run, the ranks of a
``torchrun`` job and the tasks of a SLURM array (:func:`parse_shard`) all agree on it.
Nothing here searches, reads or writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.errors import SepcheckError
from ..engine.sources import is_source

Task = Literal["separation", "certify"]
SearchKind = Literal["other", "by_class"]

#: rows of one shard at least / its share of the queries at most (unless the budget is smaller;
#: never below FLOOR_SHARD_ROWS)
MIN_SHARD_ROWS = 2048
SHARDS_TARGET = 64
FLOOR_SHARD_ROWS = 256


@dataclass(frozen=True)
class ShardPlan:
    """Contiguous shards of ``shard_rows`` queries (the last one shorter) over ``n`` queries."""

    n: int
    shard_rows: int

    @property
    def count(self) -> int:
        return max(1, -(-self.n // self.shard_rows))

    def bounds(self, i: int) -> tuple[int, int]:
        """Query rows [a, b) of shard ``i``."""
        return i * self.shard_rows, min(self.n, (i + 1) * self.shard_rows)

    def group(self, index: int, groups: int) -> range:
        """The shards of group ``index`` of ``groups`` (contiguous, sizes differing by at most one)."""
        return range(index * self.count // groups, (index + 1) * self.count // groups)


def plan_shards(n: int, row_bytes: int, memory_budget: int | None = None, shard_rows: int | None = None) -> ShardPlan:
    """The shard plan of ``n`` queries of ``row_bytes`` bytes each.

    ``shard_rows`` given: that. Otherwise 1/64 of the queries per shard (a kill loses at most
    that share of the work) but at least 2 048 rows (each shard is one engine call: one pass
    over the reference, a GPU probe), and at most the rows whose features fit a quarter of
    ``memory_budget`` (default 512 MiB; the streamed search's query block, so a sharded
    streamed run reads the reference no more often than one call), never below 256.
    """
    if shard_rows is not None:
        if isinstance(shard_rows, bool) or not isinstance(shard_rows, (int, np.integer)) or shard_rows < 1:
            raise SepcheckError(f"shard_rows={shard_rows!r} is invalid: give a number of query rows >= 1")
        return ShardPlan(int(n), int(shard_rows))
    budget = memory_budget if memory_budget is not None else 512 * 2**20
    rows = max(MIN_SHARD_ROWS, -(-n // SHARDS_TARGET))
    rows = min(rows, max(FLOOR_SHARD_ROWS, budget // 4 // max(1, row_bytes)))
    return ShardPlan(int(n), int(max(1, min(rows, max(n, 1)))))


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` (0 <= I < N; a SLURM array's ``$SLURM_ARRAY_TASK_ID/N``) -> (I, N)."""
    if text is None:
        return None
    if isinstance(text, tuple):
        i, n = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if m is None:
            raise SepcheckError(f"--shard {text!r} is invalid: give I/N, e.g. 3/8 for group 3 of 8 (I from 0 to N-1)")
        i, n = int(m.group(1)), int(m.group(2))
    if not (isinstance(i, (int, np.integer)) and isinstance(n, (int, np.integer)) and n >= 1 and 0 <= i < n):
        raise SepcheckError(f"shard {text!r} is invalid: give I/N with N >= 1 and I from 0 to N-1")
    return int(i), int(n)


@dataclass
class Part:
    """One set of queries of a run: ``name`` ('train' or 'test'), the kind of search, its rows."""

    name: str
    kind: SearchKind
    queries: Any  # an array, or a row source (sepcheck.engine.sources) that streams
    labels: np.ndarray

    @property
    def n(self) -> int:
        return int(self.queries.shape[0])


def split_rows(sizes: list[int], a: int, b: int) -> list[tuple[int, int, int]]:
    """Global query rows [a, b) over parts of ``sizes`` rows (one after the other) as
    (part number, local start, local stop), pieces that are not empty."""
    out, off = [], 0
    for j, n in enumerate(sizes):
        lo, hi = max(a, off) - off, min(b, off + n) - off
        if hi > lo:
            out.append((j, lo, hi))
        off += n
    return out


def query_rows(X: Any, a: int, b: int) -> Any:
    """Rows a:b of the queries (a lazy view of an out-of-core source, a slice of an array)."""
    return X.rows(a, b) if is_source(X) else X[a:b]


__all__ = ["Task", "SearchKind", "ShardPlan", "plan_shards", "parse_shard", "Part", "split_rows", "query_rows"]
