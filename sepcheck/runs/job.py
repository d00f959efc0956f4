"""A sharded search as a job: the data, its parts, the plan and the run's fingerprint.

A :class:`ShardJob` computes any one shard on its own (:meth:`ShardJob.compute`: one exact
engine call of the shard's queries against the whole reference, so a sharded run gives the
same answer, bit for bit, as one call). :func:`separation_job` and :func:`certify_job` build
the jobs of separation and certification.

The fingerprint of a run is the digest of its input arrays
(:func:`sepcheck.core.hashing.array_digest`), the norm, the units, the kind of search, the parts
and their sizes, the shard plan and the sepcheck version; :func:`describe_mismatch` says in
one line where two fingerprints differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._version import __version__
from ..analysis.separation import units_of, validated_inputs
from ..core.errors import SepcheckError
from ..core.hashing import array_digest
from ..core.norms import norm_name, parse_norm
from ..engine import Grouping, nearest_by_class, nearest_other
from ..engine.options import SearchOptions, call_options
from ..engine.sources import is_source
from ..engine.stream import StreamPlan, plan_stream
from .plan import Part, ShardPlan, Task, plan_shards, query_rows, split_rows

#: the ``format`` of a run's fingerprint (a journal's manifest, a piece's attribute)
JOURNAL_FORMAT = "sepcheck.journal/1"


@dataclass
class ShardJob:
    """Everything a sharded run needs: the data, the parts, the plan and the fingerprint."""

    task: Task
    X: Any
    y: np.ndarray
    X_test: Any
    y_test: np.ndarray | None
    parts: list[Part]
    p: float
    raw: bool
    dataset: str
    #: how every shard's search runs (no progress: the run reports shards)
    options: SearchOptions
    fingerprint: dict[str, Any] = field(default_factory=dict)
    #: what the engine reported on the last shard computed here (backend, device)
    info: dict[str, Any] = field(default_factory=dict)
    #: per part name, its streamed search (planned on first use: validated, scanned, sized once)
    streams: dict[str, StreamPlan] = field(default_factory=dict, repr=False)

    @property
    def plan(self) -> ShardPlan:
        """The shards: ``fingerprint["shard_rows"]`` query rows each over all the parts."""
        return ShardPlan(sum(part.n for part in self.parts), int(self.fingerprint["shard_rows"]))

    def part_ranges(self, a: int, b: int) -> list[tuple[Part, int, int]]:
        """Global query rows [a, b) as (part, local start, local stop), pieces that are not empty."""
        return [(self.parts[j], lo, hi) for j, lo, hi in split_rows([part.n for part in self.parts], a, b)]

    def compute(self, i: int) -> dict[str, np.ndarray]:
        """The arrays of shard ``i``: ``<part>.dist`` and ``<part>.idx`` for its rows of each part."""
        a, b = self.plan.bounds(i)
        out: dict[str, np.ndarray] = {}
        for part, lo, hi in self.part_ranges(a, b):
            q, ql = query_rows(part.queries, lo, hi), part.labels[lo:hi]
            if is_source(self.X) or is_source(part.queries):  # one plan per part, not one per shard
                d, idx = self._streamed(part, lo, hi)
            elif part.kind == "other":
                d, idx = nearest_other(self.X, self.y, q, ql, norm=self.p, k=1, info=self.info,
                                       options=self.options)
            else:
                d, idx, _ = nearest_by_class(self.X, self.y, q, norm=self.p, info=self.info,
                                             options=self.options)
            if part.kind == "other":  # (m, 1) -> (m,)
                d, idx = d[:, 0], idx[:, 0]
            out[f"{part.name}.dist"], out[f"{part.name}.idx"] = d, idx
        return out

    def _streamed(self, part: Part, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots (hi - lo, S) of distances and indices of ``part``'s rows lo:hi, searched by
        the part's streamed plan in query blocks of its size."""
        plan = self.streams.get(part.name)
        if plan is None:
            other = part.kind == "other"
            plan = self.streams[part.name] = plan_stream(
                self.X, self.y, part.queries, part.labels if other else None,
                grouping=Grouping.OTHER_LABEL if other else Grouping.BY_CLASS, norm=self.p,
                options=self.options)
        dist, idx = np.empty((hi - lo, plan.n_slots)), np.empty((hi - lo, plan.n_slots), dtype=np.int64)
        for a, b in plan.queries.rows(lo, hi).block_bounds(plan.query_rows):
            d, i = plan.search_query_block(lo + a, lo + b)
            dist[a:b], idx[a:b] = d[:, :, 0], i[:, :, 0]
        self.info.update(plan.info())
        return dist, idx

    def check_shard(self, i: int, arrays: dict[str, np.ndarray]) -> bool:
        """True when ``arrays`` have the names and row counts of shard ``i``."""
        a, b = self.plan.bounds(i)
        want = {f"{part.name}.{k}": hi - lo for part, lo, hi in self.part_ranges(a, b) for k in ("dist", "idx")}
        return set(arrays) == set(want) and all(arrays[k].shape[0] == m for k, m in want.items())


def separation_job(X: Any, y: Any, X_test: Any = None, y_test: Any = None, *, norm: str | float = "linf",
                   dataset: str = "", raw: bool = False, shard_rows: int | None = None,
                   options: SearchOptions | None = None, **engine_options: Any) -> ShardJob:
    """The sharded form of :func:`sepcheck.separation`: training rows, then test rows, each
    against the training set (nearest differently labelled row)."""
    return _job("separation", X, y, X_test, y_test, norm, dataset, raw, shard_rows, engine_options, options)


def certify_job(X: Any, y: Any, X_test: Any, y_test: Any, *, norm: str | float = "linf", dataset: str = "",
                raw: bool = False, shard_rows: int | None = None, options: SearchOptions | None = None,
                **engine_options: Any) -> ShardJob:
    """The searches of certification: the training separation (r) and, per test row, the nearest
    training row of every class."""
    if X_test is None or y_test is None:
        raise SepcheckError("certify needs a test set: pass X_test and y_test")
    return _job("certify", X, y, X_test, y_test, norm, dataset, raw, shard_rows, engine_options, options)


def _job(task: Task, X: Any, y: Any, X_test: Any, y_test: Any, norm: str | float, dataset: str, raw: bool,
         shard_rows: int | None, engine_options: dict[str, Any], options: SearchOptions | None = None) -> ShardJob:
    p = parse_norm(norm)
    Xf, yv, Xt, yt = validated_inputs(X, y, X_test, y_test)  # arrays, or row sources that stream
    parts = [Part("train", "other", Xf, yv)]
    if Xt is not None:
        parts.append(Part("test", "other" if task == "separation" else "by_class", Xt, yt))
    given = {k: v for k, v in engine_options.items() if k not in ("progress", "info", "k")}
    opts = call_options(options, raw, **given).with_(progress=False)
    raw = opts.raw
    n = sum(part.n for part in parts)
    plan = plan_shards(n, int(Xf.shape[1]) * Xf.dtype.itemsize, opts.memory_budget, shard_rows)
    fp = {
        "format": JOURNAL_FORMAT,
        "task": task,
        "content_hash": array_digest(Xf, yv, Xt, yt),
        "norm": norm_name(p),
        "units": units_of(Xf, raw),
        "parts": [[part.name, part.kind, part.n] for part in parts],
        "shard_rows": plan.shard_rows,
        "version": __version__,
        "dataset": dataset,
        "n_classes": int(np.unique(yv).size),
        "dim": int(Xf.shape[1]),
    }
    return ShardJob(task, Xf, yv, Xt, yt, parts, p, raw, dataset, opts, fp)


def describe_mismatch(found: dict[str, Any], want: dict[str, Any]) -> str | None:
    """None when two fingerprints agree, else which field differs (both values)."""
    for key in sorted(set(found) | set(want)):
        if found.get(key) != want.get(key):
            return f"{key}: {_short(found.get(key))} there, {_short(want.get(key))} here"
    return None


def _short(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["JOURNAL_FORMAT", "ShardJob", "separation_job", "certify_job", "describe_mismatch"]
