"""Sharded, resumable and distributed searches (train-train / test-train separation and the
per-class search behind certification).

The queries of a run (the training rows, then the test rows) are split into contiguous
*shards* by a :class:`ShardPlan`, a deterministic function of the number of queries and the
options, so that a resumed run, the ranks of a ``torchrun`` job and the tasks of a SLURM
array all agree on it. Each shard is one exact engine call (its queries against the whole
reference), so a sharded run gives the same answer, bit for bit, as one call.

* **Resume.** With ``out=``, every finished shard is written atomically to a journal folder
  next to the output (``<out>.parts/``: ``manifest.json`` with the run's fingerprint, one
  ``shard-NNNNN.npz`` per shard). ``resume=True`` reuses the finished shards after a crash
  or SIGKILL, so at most the shards in progress are lost. A journal or results file of
  other inputs or options is refused with one line and left untouched. At the end the
  result is written atomically and the journal removed.
* **SLURM job arrays.** ``shard=(I, N)`` runs only group I of N (contiguous groups of
  shards) and writes a *piece* (``sepcheck.shards/1``, sealed HDF5) holding its shards and
  the fingerprint; :func:`merge_pieces` checks that pieces come from the same inputs and
  options and cover every query exactly once, and writes the final result.
* **torchrun.** Under ``torchrun`` each rank takes every ``world_size``-th shard of its
  group, writes it to the journal (so resume works per rank) and sends it to rank 0 with
  ``gather_object`` (works without a shared filesystem, and the results are small: one
  distance and one index per query and slot); rank 0 alone writes the output.

The fingerprint of a run is the digest of its input arrays
(:func:`sepcheck.core.hashing.array_digest`), the norm, the units, the kind of search, the parts
and their sizes, the shard plan and the sepcheck version.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._version import __version__
from ..analysis.certify import CertificationResult, build_result, parse_eps
from ..analysis.conflicts import find_conflicts
from ..analysis.separation import SeparationResult, units_of, validated_inputs
from ..core import process_group
from ..core.errors import SepcheckError, cause
from ..core.fileio import USERBLOCK, atomic_write, h5_dataset, input_file, seal_file, seal_problem
from ..core.hashing import array_digest
from ..core.norms import norm_name, parse_norm
from ..core.progress import bar
from ..core.validation import as_memory_budget
from ..engine import Grouping, nearest_by_class, nearest_other
from ..engine.sources import is_source
from ..engine.stream import StreamPlan, plan_stream

Task = Literal["separation", "certify"]
SearchKind = Literal["other", "by_class"]

#: the tag of a piece file (a shard group, or a whole certify run)
PIECE_FORMAT = "sepcheck.shards/1"
JOURNAL_FORMAT = "sepcheck.journal/1"
_SHARD_FILE = re.compile(r"^shard-(\d{5,})\.npz$")
#: rows of one shard at least / its share of the queries at most (unless the budget is smaller;
#: never below FLOOR_SHARD_ROWS)
MIN_SHARD_ROWS = 2048
SHARDS_TARGET = 64
FLOOR_SHARD_ROWS = 256


# ----- the plan ------------------------------------------------------------------------------
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


# ----- the search ----------------------------------------------------------------------------
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


def _part_ranges(sizes: list[int], a: int, b: int) -> list[tuple[int, int, int]]:
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
    engine_options: dict[str, Any]
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
        return [(self.parts[j], lo, hi) for j, lo, hi in _part_ranges([part.n for part in self.parts], a, b)]

    def compute(self, i: int) -> dict[str, np.ndarray]:
        """The arrays of shard ``i``: ``<part>.dist`` and ``<part>.idx`` for its rows of each part."""
        a, b = self.plan.bounds(i)
        out: dict[str, np.ndarray] = {}
        for part, lo, hi in self.part_ranges(a, b):
            q, ql = query_rows(part.queries, lo, hi), part.labels[lo:hi]
            if is_source(self.X) or is_source(part.queries):  # one plan per part, not one per shard
                d, idx = self._streamed(part, lo, hi)
            elif part.kind == "other":
                d, idx = nearest_other(self.X, self.y, q, ql, norm=self.p, k=1, raw=self.raw, info=self.info,
                                       **self.engine_options)
            else:
                d, idx, _ = nearest_by_class(self.X, self.y, q, norm=self.p, raw=self.raw, info=self.info,
                                             **self.engine_options)
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
                grouping=Grouping.OTHER_LABEL if other else Grouping.BY_CLASS, norm=self.p, raw=self.raw,
                **self.engine_options)
        dist, idx = np.empty((hi - lo, plan.n_slots)), np.empty((hi - lo, plan.n_slots), dtype=np.int64)
        for a, b in plan.queries.rows(lo, hi).block_bounds(plan.query_rows):
            d, i = plan.search_shard(lo + a, lo + b)
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
                   **engine_options: Any) -> ShardJob:
    """The sharded form of :func:`sepcheck.separation`: training rows, then test rows, each
    against the training set (nearest differently labelled row)."""
    return _job("separation", X, y, X_test, y_test, norm, dataset, raw, shard_rows, engine_options)


def certify_job(X: Any, y: Any, X_test: Any, y_test: Any, *, norm: str | float = "linf", dataset: str = "",
                raw: bool = False, shard_rows: int | None = None, **engine_options: Any) -> ShardJob:
    """The searches of certification: the training separation (r) and, per test row, the nearest
    training row of every class."""
    if X_test is None or y_test is None:
        raise SepcheckError("certify needs a test set: pass X_test and y_test")
    return _job("certify", X, y, X_test, y_test, norm, dataset, raw, shard_rows, engine_options)


def _job(task: Task, X: Any, y: Any, X_test: Any, y_test: Any, norm: str | float, dataset: str, raw: bool,
         shard_rows: int | None, engine_options: dict[str, Any]) -> ShardJob:
    p = parse_norm(norm)
    Xf, yv, Xt, yt = validated_inputs(X, y, X_test, y_test)  # arrays, or row sources that stream
    parts = [Part("train", "other", Xf, yv)]
    if Xt is not None:
        parts.append(Part("test", "other" if task == "separation" else "by_class", Xt, yt))
    opts = {k: v for k, v in engine_options.items() if k not in ("progress", "info", "k")}
    if opts.get("memory_budget") is not None:
        opts["memory_budget"] = as_memory_budget(opts["memory_budget"])
    n = sum(part.n for part in parts)
    plan = plan_shards(n, int(Xf.shape[1]) * Xf.dtype.itemsize, opts.get("memory_budget"), shard_rows)
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


# ----- the journal ---------------------------------------------------------------------------
class Journal:
    """Finished shards of a run, next to its output: ``<out>.parts/`` (see the module doc)."""

    def __init__(self, out: str | os.PathLike, fingerprint: dict[str, Any]):
        self.out = Path(out)
        self.folder = self.out.with_name(self.out.name + ".parts")
        self.fingerprint = fingerprint

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"

    def shard_path(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.npz"

    def read_fingerprint(self) -> dict[str, Any] | None:
        """The manifest's fingerprint, None without a journal; a damaged manifest -> error."""
        if not self.manifest.exists():
            return None
        try:
            fp = json.loads(self.manifest.read_text())
            if not isinstance(fp, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            raise SepcheckError(f"results journal {self.folder} is damaged ({cause(exc)}): remove the folder "
                                "and run again") from None
        return fp

    def check(self) -> None:
        """Refuse (one line, nothing touched) a journal written for other inputs or options."""
        fp = self.read_fingerprint()
        if fp is None:
            return
        diff = describe_mismatch(fp, self.fingerprint)
        if diff is not None:
            raise SepcheckError(f"results journal {self.folder} belongs to a run with other inputs or options "
                                f"({diff}): run without --resume to start over, or give another --out")

    def start(self, resume: bool) -> None:
        """Create the journal (resume: keep a matching one; else replace any old one)."""
        self.check_ours()
        if resume:
            self.check()
        elif self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".*.part"):  # temporary files of a killed write
            with contextlib.suppress(OSError):
                stale.unlink()
        if not self.manifest.exists():
            atomic_write(self.manifest, lambda tmp: tmp.write_text(json.dumps(self.fingerprint, indent=1)))

    def check_ours(self) -> None:
        """Refuse to touch a ``<out>.parts`` that is not a journal (a file, or a folder holding
        anything but a manifest, shard files and temporary files of ours)."""
        if not self.folder.exists() and not self.folder.is_symlink():
            return
        ok = self.folder.is_dir() and not self.folder.is_symlink() and all(
            p.name == "manifest.json" or _SHARD_FILE.match(p.name) or (p.name.startswith(".") and
                                                                       p.name.endswith(".part"))
            for p in self.folder.iterdir())
        if not ok:
            raise SepcheckError(f"{self.folder} exists and is not a sepcheck results journal, which sepcheck "
                                "never deletes: move it away or give another --out")

    def attach(self) -> None:
        """A rank other than 0 (after rank 0's :meth:`start`): check the manifest, or create one
        when this rank does not share rank 0's filesystem."""
        if self.read_fingerprint() is None:
            self.start(resume=False)
        self.check()

    def done(self) -> set[int]:
        if not self.folder.is_dir():
            return set()
        return {int(m.group(1)) for p in self.folder.iterdir() if (m := _SHARD_FILE.match(p.name))}

    def load(self, i: int) -> dict[str, np.ndarray] | None:
        """Shard ``i`` if the journal holds it (a file that does not read back is dropped)."""
        path = self.shard_path(i)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def save(self, i: int, arrays: dict[str, np.ndarray]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())

        atomic_write(self.shard_path(i), write, "results journal")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ----- pieces (a group of shards in one sealed file) -----------------------------------------
@dataclass
class Piece:
    """Shards ``lo`` to ``hi - 1`` of a run: per part its rows' distances and indices."""

    fingerprint: dict[str, Any]
    lo: int
    hi: int
    arrays: dict[str, np.ndarray]
    path: Path | None = None

    @property
    def plan(self) -> ShardPlan:
        n = sum(int(p[2]) for p in self.fingerprint["parts"])
        return ShardPlan(n, int(self.fingerprint["shard_rows"]))

    @property
    def rows(self) -> tuple[int, int]:
        """Global query rows [a, b) the piece covers."""
        return self.plan.bounds(self.lo)[0], self.plan.bounds(self.hi - 1)[1] if self.hi > self.lo else 0

    @property
    def complete(self) -> bool:
        return self.lo == 0 and self.hi == self.plan.count


def save_piece(piece: Piece, path: str | os.PathLike) -> Path:
    """Write a piece to sealed HDF5 atomically."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            f.attrs["format"] = PIECE_FORMAT
            f.attrs["fingerprint"] = json.dumps(piece.fingerprint, sort_keys=True)
            f.attrs["shards"] = np.array([piece.lo, piece.hi], dtype=np.int64)
            for name, arr in sorted(piece.arrays.items()):
                f.create_dataset(name, data=np.asarray(arr), compression="gzip", compression_opts=4)
        seal_file(tmp, PIECE_FORMAT)

    return atomic_write(path, write)


def read_piece(path: str | os.PathLike) -> Piece:
    """A file written by :func:`save_piece`; one-line errors for anything else."""
    p = input_file(path, "results piece")
    problem = seal_problem(p, PIECE_FORMAT)
    if problem is not None:
        raise SepcheckError(f"{p} is not a sepcheck shard result or is damaged ({problem}): rerun its --shard I/N")
    return _open_piece(p)


def _open_piece(p: Path) -> Piece:
    """The piece in ``p``, whose seal has been checked."""
    import h5py

    try:
        with h5py.File(p, "r") as f:
            fp = json.loads(f.attrs["fingerprint"])
            lo, hi = (int(v) for v in f.attrs["shards"])
            arrays = {name: h5_dataset(f, name, p)[()] for name in f}
    except SepcheckError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise SepcheckError(f"results piece {p} is corrupted ({cause(exc)}): rerun its --shard I/N") from None
    return Piece(fp, lo, hi, arrays, p)


def _assemble(job_fp: dict[str, Any], shards: dict[int, dict[str, np.ndarray]], lo: int,
              hi: int) -> dict[str, np.ndarray]:
    """Concatenate shards lo..hi-1 per part (keys '<part>.dist', '<part>.idx')."""
    names = [p[0] for p in job_fp["parts"]]
    out: dict[str, np.ndarray] = {}
    for name in names:
        for k in ("dist", "idx"):
            key = f"{name}.{k}"
            chunks = [shards[i][key] for i in range(lo, hi) if key in shards[i]]
            if chunks:
                out[key] = np.concatenate(chunks, axis=0)
    return out


# ----- conflicts and the final results --------------------------------------------------------
def _conflicts(job: ShardJob, arrays: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
    """Conflict pairs of the queries in global rows [a, b) (what a piece adds to the result)."""
    out = {}
    for part, lo, _ in job.part_ranges(a, b):
        if part.kind != "other":
            continue
        zero = lo + np.flatnonzero(arrays[f"{part.name}.dist"] == 0)
        if part.name == "train":
            c = find_conflicts(job.X, job.y, zero)
        else:
            c = find_conflicts(job.X, job.y, zero, job.X_test, job.y_test)
        out[f"{part.name}.conflicts"] = c.reshape(-1, 2).astype(np.int64)
    return out


def separation_result(piece: Piece, dataset: str | None = None) -> SeparationResult:
    """The :class:`SeparationResult` of a complete separation piece (every shard)."""
    fp, a = piece.fingerprint, piece.arrays
    has_test = any(p[0] == "test" for p in fp["parts"])
    return SeparationResult(
        norm=fp["norm"],
        distances=a["train.dist"],
        neighbors=a["train.idx"],
        test_distances=a.get("test.dist") if has_test else None,
        test_neighbors=a.get("test.idx") if has_test else None,
        conflicts=a.get("train.conflicts", np.empty((0, 2), dtype=np.int64)),
        test_conflicts=a.get("test.conflicts", np.empty((0, 2), dtype=np.int64)) if has_test else None,
        dataset=fp.get("dataset", "") if dataset is None else dataset,
        n_classes=int(fp["n_classes"]),
        dim=int(fp["dim"]),
        units=fp["units"],
        content_hash=fp["content_hash"],
        extra={"shard_rows": int(fp["shard_rows"])},
    )


def certification(piece: Piece, eps: Any, dataset: str = "") -> CertificationResult:
    """The :class:`CertificationResult` of a complete certify piece at radii ``eps``.

    r is half the training separation; raises :class:`SepcheckError` when it is 0.
    """
    fp, a = piece.fingerprint, piece.arrays
    sep = float(np.min(a["train.dist"]))
    if sep <= 0:
        raise SepcheckError("the training data has identical points with different labels (separation 0), so "
                            "r = 0: remove the conflicting duplicates (sepcheck separation --drop K shows the effect)")
    return build_result(a["test.dist"], a["test.idx"], a["classes"], a["test.labels"], parse_eps(eps), r=sep / 2.0,
                        separation=sep, norm=fp["norm"], units=fp["units"], dataset=dataset)


def _finish(job: ShardJob, arrays: dict[str, np.ndarray], lo: int, hi: int) -> Piece:
    """The piece of shards lo..hi-1 with what needs the data: conflicts, classes, test labels."""
    plan = job.plan
    a, b = plan.bounds(lo)[0], plan.bounds(hi - 1)[1]
    extra = _conflicts(job, arrays, a, b) if job.task == "separation" else {}
    if job.task == "certify":
        extra["classes"] = np.unique(job.y)
        extra["test.labels"] = np.asarray(job.y_test)
    return Piece(dict(job.fingerprint), lo, hi, {**arrays, **extra})


# ----- running ---------------------------------------------------------------------------------
@dataclass
class ShardRun:
    """What :func:`run_sharded` did: on rank 0 the finished ``piece`` (all shards of the run, or
    of the group ``shard``), None on the other ranks."""

    piece: Piece | None
    total: int
    group: tuple[int, int]
    computed: int
    reused: int
    rank: int = 0
    world_size: int = 1
    out: Path | None = None
    seconds: float = 0.0


def run_sharded(job: ShardJob, *, out: str | os.PathLike | None = None, resume: bool = False,
                shard: str | tuple[int, int] | None = None, progress: bool | Callable[[int], None] = False,
                ctx: process_group.DistContext | None = None) -> ShardRun:
    """Run ``job``'s shards (all, or group ``shard`` = (I, N)), journaled next to ``out``.

    Several processes (``ctx`` from :func:`sepcheck.core.process_group.setup`) share the shards
    round-robin; rank 0 gathers them. The output is written by the caller (see
    :func:`sharded_separation`); the journal is removed by :func:`finish_output`.
    """
    t0 = time.perf_counter()
    ctx = ctx or process_group.DistContext()
    check_run_options(out, resume, shard)
    group = parse_shard(shard) or (0, 1)
    if group != (0, 1):
        job.fingerprint["group"] = list(group)
    if resume and out is not None:
        adopt_plan(job, Journal(out, job.fingerprint).read_fingerprint())
    shards = job.plan.group(*group)
    if len(shards) == 0:
        raise SepcheckError(f"--shard {group[0]}/{group[1]}: the run has only {job.plan.count} shards of "
                            f"{job.plan.shard_rows} query rows: use N <= {job.plan.count} or a smaller --shard-rows")
    journal = Journal(out, job.fingerprint) if out is not None else None
    if journal is not None:
        if resume:
            journal.check()  # every rank refuses a foreign journal before anything is touched
            found = check_existing(out, job.fingerprint)
            if not journal.folder.exists() and found is not None:  # the run had finished: nothing to do
                piece = _piece_of(found, Path(out), job, shards) if ctx.is_main else None
                return ShardRun(piece, job.plan.count, group, 0, len(shards) if ctx.is_main else 0, ctx.rank,
                                ctx.world_size, Path(out), time.perf_counter() - t0)
        if ctx.is_main:
            journal.start(resume)
        process_group.barrier(ctx)
        if not ctx.is_main:
            journal.attach()
    try:
        results, computed, reused = _run_mine(job, list(shards)[ctx.rank :: ctx.world_size], journal, resume,
                                              progress, ctx, len(shards))
    except BaseException:
        if journal is not None and not journal.done():  # failed before any shard: leave no empty journal
            journal.remove()
        raise
    gathered = process_group.gather_object((results, computed, reused), ctx)
    if not ctx.is_main or gathered is None:
        return ShardRun(None, job.plan.count, group, computed, reused, ctx.rank, ctx.world_size,
                        None if out is None else Path(out), time.perf_counter() - t0)
    allres: dict[int, dict[str, np.ndarray]] = {}
    for res, _, _ in gathered:
        allres.update(res)
    computed = sum(g[1] for g in gathered)
    reused = sum(g[2] for g in gathered)
    arrays = _assemble(job.fingerprint, allres, shards.start, shards.stop)
    piece = _finish(job, arrays, shards.start, shards.stop)
    return ShardRun(piece, job.plan.count, group, computed, reused, ctx.rank, ctx.world_size,
                    None if out is None else Path(out), time.perf_counter() - t0)


def _run_mine(job: ShardJob, mine: list[int], journal: Journal | None, resume: bool,
              progress: bool | Callable[[int], None], ctx: process_group.DistContext,
              total: int) -> tuple[dict[int, dict[str, np.ndarray]], int, int]:
    """This process's shards: from the journal (resume) or computed and journaled."""
    results: dict[int, dict[str, np.ndarray]] = {}
    computed = reused = 0
    log = LogLines(total) if (progress is True and ctx.is_main) else None
    with bar(total, "shards", "shard", enabled=bool(progress) and ctx.is_main) as b:
        for i in mine:
            arrays = journal.load(i) if (journal is not None and resume) else None
            if arrays is not None and not job.check_shard(i, arrays):
                arrays = None
            if arrays is None:
                arrays = job.compute(i)
                computed += 1
                if journal is not None:
                    journal.save(i, arrays)
            else:
                reused += 1
            results[i] = arrays
            b.update(ctx.world_size if ctx.enabled else 1)
            if log is not None:
                log.tick(min(total, len(results) * ctx.world_size))
            if callable(progress):
                progress(1)
    return results, computed, reused


class LogLines:
    """Progress for logs (a SLURM job's output is no terminal, so the bar is off): one line on
    stderr at most every ``every`` seconds, ``shards 12/64 done, ETA 0:41:07``."""

    def __init__(self, total: int, every: float = 60.0):
        self.total, self.every = total, every
        self.t0 = self.last = time.monotonic()
        isatty = getattr(sys.stderr, "isatty", None)
        self.on = not (callable(isatty) and isatty())  # a terminal has the bar

    def tick(self, done: int) -> None:
        now = time.monotonic()
        if not self.on or now - self.last < self.every or done <= 0:
            return
        self.last = now
        eta = (now - self.t0) / done * (self.total - done)
        print(f"sepcheck: shards {done}/{self.total} done, ETA {datetime.timedelta(seconds=round(eta))}",
              file=sys.stderr, flush=True)


def adopt_plan(job: ShardJob, found: dict[str, Any] | None) -> None:
    """Resume with the journal's shard size when that is all that differs (a default size
    follows the memory budget; the answer does not depend on it)."""
    if found is None or found.get("shard_rows") == job.fingerprint["shard_rows"]:
        return
    if describe_mismatch({**found, "shard_rows": job.fingerprint["shard_rows"]}, job.fingerprint) is None:
        job.fingerprint["shard_rows"] = int(found["shard_rows"])  # job.plan follows


def _piece_of(found: Piece | SeparationResult, path: Path, job: ShardJob, shards: range) -> Piece:
    """The finished output of ``job`` at ``path`` (as :func:`check_existing` loaded it) as a piece."""
    if isinstance(found, Piece):
        return found
    res = found
    arrays = {"train.dist": res.distances, "train.idx": res.neighbors, "train.conflicts": res.conflicts}
    if res.test_distances is not None:
        arrays.update({"test.dist": res.test_distances, "test.idx": res.test_neighbors,
                       "test.conflicts": res.test_conflicts})
    return Piece(dict(job.fingerprint), shards.start, shards.stop, arrays, path)


def check_run_options(out: str | os.PathLike | None, resume: bool, shard: str | tuple[int, int] | None) -> None:
    """One-line errors for options that do not go together (before any work)."""
    if resume and out is None:
        raise SepcheckError("--resume needs --out: the finished shards are kept next to the results file")
    if parse_shard(shard) is not None and out is None:
        raise SepcheckError("--shard I/N needs --out: each group writes its piece for `sepcheck merge`")


def check_existing(out: str | os.PathLike, fingerprint: dict[str, Any]) -> Piece | SeparationResult | None:
    """With ``--resume``: refuse (one line, file untouched) an existing ``out`` from other inputs
    or options. Returns what ``out`` holds (read once), None when there is no such file."""
    p = Path(out)
    if not p.is_file():
        return None
    loaded = _read_output(p)
    if loaded is None:
        raise SepcheckError(f"--out {p} exists and is not a sepcheck result: give another --out or remove it")
    found = _fingerprint_of(loaded)
    fp = {k: v for k, v in fingerprint.items() if k in found or k == "group"}  # a result file has fewer keys
    diff = describe_mismatch(found, fp)
    if diff is not None:
        raise SepcheckError(f"--out {p} holds results of other inputs or options ({diff}): give another --out, "
                            "or run without --resume to replace it")
    return loaded


def _read_output(path: Path) -> Piece | SeparationResult | None:
    """A results file (a piece, or a separation result written by a sharded run), read and
    checked once; None when it is neither."""
    if seal_problem(path, PIECE_FORMAT) is None:
        return _open_piece(path)
    try:
        return SeparationResult.load(path)
    except SepcheckError:
        return None


def _fingerprint_of(loaded: Piece | SeparationResult) -> dict[str, Any]:
    """The fingerprint of a results file (a separation result carries only part of it)."""
    if isinstance(loaded, Piece):
        return loaded.fingerprint
    return {"task": "separation", "content_hash": loaded.content_hash, "norm": loaded.norm, "units": loaded.units}


def finish_output(run: ShardRun, write: Callable[[Path], Any] | None = None) -> None:
    """Rank 0: write the output (``write(out)``, atomic) then remove the journal."""
    if run.piece is None or run.out is None:
        return
    if write is not None:
        write(run.out)
    Journal(run.out, run.piece.fingerprint).remove()


def write_piece_or_result(run: ShardRun, dataset: str = "") -> Callable[[Path], Any]:
    """The writer of ``run``'s output: a separation result when the run is a whole separation,
    a piece file otherwise (a shard group, or certify)."""
    piece = run.piece
    assert piece is not None
    if piece.complete and piece.fingerprint["task"] == "separation":
        res = separation_result(piece, dataset)
        return res.save
    return lambda path: save_piece(piece, path)


def run_job(job: ShardJob, *, out: str | os.PathLike | None = None, resume: bool = False,
            shard: str | tuple[int, int] | None = None, progress: bool = False) -> ShardRun:
    """:func:`run_sharded` inside the torchrun process group when there is one (joined, cores
    shared, left); nothing is written but the journal (see :func:`finish_output`)."""
    check_run_options(out, resume, shard)
    ctx = process_group.setup(str(job.engine_options.get("device", "auto")))
    try:
        process_group.share_cores(ctx)
        return run_sharded(job, out=out, resume=resume, shard=shard, progress=progress, ctx=ctx)
    finally:
        process_group.cleanup(ctx)


def sharded_separation(X: Any, y: Any, X_test: Any = None, y_test: Any = None, *, norm: str | float = "linf",
                       dataset: str = "", raw: bool = False, out: str | os.PathLike | None = None,
                       resume: bool = False, shard: str | tuple[int, int] | None = None,
                       shard_rows: int | None = None, progress: bool = False,
                       **engine_options: Any) -> tuple[SeparationResult | Piece | None, ShardRun]:
    """:func:`sepcheck.separation` in shards: resumable with ``out=``, one group of a SLURM array
    with ``shard=(I, N)``, spread over the processes of a ``torchrun`` job.

    Returns ``(result, run)``: the :class:`SeparationResult` of a whole run (a :class:`Piece`
    for a group; None on ranks other than 0) and the :class:`ShardRun` (shards computed and
    reused). ``out`` is written atomically (a separation result, or the group's piece for
    :func:`merge_pieces`) and the journal removed. Identical to :func:`sepcheck.separation`.
    """
    check_run_options(out, resume, shard)
    job = separation_job(X, y, X_test, y_test, norm=norm, dataset=dataset, raw=raw, shard_rows=shard_rows,
                         **engine_options)
    run = run_job(job, out=out, resume=resume, shard=shard, progress=progress)
    if run.piece is None:
        return None, run
    finish_output(run, write_piece_or_result(run, dataset))
    return (separation_result(run.piece, dataset) if run.piece.complete else run.piece), run


def merge_pieces(paths: list[str | os.PathLike], out: str | os.PathLike | None = None) -> Piece:
    """Combine the pieces of a ``--shard I/N`` array into the complete run (written to ``out``:
    a separation result, or a complete certify piece).

    The pieces must carry the same fingerprint (inputs, options, plan) and cover every shard
    exactly once: an overlap or a gap is a one-line error naming the query rows.
    """
    if not paths:
        raise SepcheckError("merge needs the pieces: sepcheck merge results-*.h5 --out results.h5")
    pieces = [read_piece(p) for p in paths]
    first = pieces[0]
    base = {k: v for k, v in first.fingerprint.items() if k != "group"}
    for pc in pieces[1:]:
        diff = describe_mismatch({k: v for k, v in pc.fingerprint.items() if k != "group"}, base)
        if diff is not None:
            raise SepcheckError(f"{pc.path} and {first.path} come from different inputs or options ({diff}): "
                                "merge only the pieces of one run")
    plan = first.plan
    pieces.sort(key=lambda pc: (pc.lo, pc.hi))
    covered = 0
    for prev, pc in zip([None, *pieces[:-1]], pieces, strict=False):
        if pc.lo < covered:
            a, b = plan.bounds(pc.lo)[0], plan.bounds(min(covered, pc.hi) - 1)[1]
            raise SepcheckError(f"{_rows(first.fingerprint, a, b)} are in both {prev.path} and {pc.path}: merge "
                                "each --shard I/N once")
        if pc.lo > covered:
            a, b = plan.bounds(covered)[0], plan.bounds(pc.lo - 1)[1]
            raise SepcheckError(f"{_rows(first.fingerprint, a, b)} are in no piece: run the missing --shard I/N "
                                "and merge again")
        covered = pc.hi
    if covered < plan.count:
        a = plan.bounds(covered)[0]
        raise SepcheckError(f"{_rows(first.fingerprint, a, plan.n)} are in no piece: run the missing --shard I/N "
                            "and merge again")
    arrays: dict[str, np.ndarray] = {}
    for key in sorted({k for pc in pieces for k in pc.arrays}):
        chunks = [pc.arrays[key] for pc in pieces if key in pc.arrays]
        if key.endswith(".conflicts"):
            arrays[key] = np.concatenate(chunks, axis=0).reshape(-1, 2)
        elif key in ("classes", "test.labels"):
            arrays[key] = chunks[0]
        else:
            arrays[key] = np.concatenate(chunks, axis=0)
    merged = Piece(base, 0, plan.count, arrays)
    if out is not None:
        if base["task"] == "separation":
            separation_result(merged).save(out)
        else:
            save_piece(merged, out)
        merged.path = Path(out)
    return merged


def _rows(fp: dict[str, Any], a: int, b: int) -> str:
    """Global query rows [a, b) in words, per part ('train rows 100-199')."""
    parts = fp["parts"]
    words = [f"{parts[j][0]} rows {lo}-{hi - 1}" for j, lo, hi in _part_ranges([int(p[2]) for p in parts], a, b)]
    return "query " + " and ".join(words) if words else f"query rows {a}-{b - 1}"


__all__ = [
    "ShardPlan", "plan_shards", "parse_shard", "Part", "ShardJob", "separation_job", "certify_job", "Journal",
    "Piece", "save_piece", "read_piece", "separation_result", "certification", "ShardRun", "run_sharded",
    "finish_output", "write_piece_or_result", "run_job", "sharded_separation", "merge_pieces", "query_rows",
]
