"""Running a sharded job: resumable, one group of a SLURM array, or spread over torchrun ranks.

This is the entry of sharded, resumable and distributed searches (train-train / test-train
separation and the per-class search behind certification). The job (:mod:`.job`) computes
any shard on its own; :func:`run_sharded` decides which shards this process computes, journals
them (:mod:`.journal`) and assembles the finished ones into a piece (:mod:`.pieces`).

* **Resume.** With ``out=``, every finished shard is written atomically to a journal folder
  next to the output (``<out>.parts/``). ``resume=True`` reuses the finished shards after a
  crash or SIGKILL, so at most the shards in progress are lost. A journal or results file of
  other inputs or options is refused with one line and left untouched. At the end the
  result is written atomically (:func:`finish_output`) and the journal removed.
* **SLURM job arrays.** ``shard=(I, N)`` runs only group I of N (contiguous groups of
  shards) and writes a *piece* (``sepcheck.shards/1``, sealed HDF5) holding its shards and
  the fingerprint; :func:`sepcheck.runs.merge.merge_pieces` combines the pieces.
* **torchrun.** Under ``torchrun`` each rank takes every ``world_size``-th shard of its
  group, writes it to the journal (so resume works per rank) and sends it to rank 0 with
  ``gather_object`` (works without a shared filesystem, and the results are small: one
  distance and one index per query and slot); rank 0 alone writes the output.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.conflicts import find_conflicts
from ..analysis.separation import SeparationResult
from ..core import process_group
from ..core.errors import SepcheckError
from ..core.progress import bar
from ..core.validation import checked_once
from .job import ShardJob, describe_mismatch, separation_job
from .journal import Journal
from .pieces import Piece, output_fingerprint, read_output, save_piece, separation_result
from .plan import parse_shard

Shards = dict[int, dict[str, np.ndarray]]


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


# ----- the run loop ----------------------------------------------------------------------------
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
    group, shards = _group_shards(job, out, resume, shard)
    out_p = None if out is None else Path(out)
    journal = Journal(out, job.fingerprint) if out is not None else None
    if journal is not None and resume:
        found = _finished_output(journal, job)
        if found is not None:  # the run had finished: nothing to do
            piece = _piece_of(found, Path(out), job, shards) if ctx.is_main else None
            return ShardRun(piece, job.plan.count, group, 0, len(shards) if ctx.is_main else 0, ctx.rank,
                            ctx.world_size, Path(out), time.perf_counter() - t0)
    if journal is not None:
        _open_journal(journal, resume, ctx)
    try:
        results, computed, reused = _run_mine(job, list(shards)[ctx.rank :: ctx.world_size], journal, resume,
                                              progress, ctx, len(shards))
    except BaseException:
        if journal is not None and not journal.done():  # failed before any shard: leave no empty journal
            journal.remove()
        raise
    gathered = process_group.gather_object((results, computed, reused), ctx)
    if not ctx.is_main or gathered is None:
        return ShardRun(None, job.plan.count, group, computed, reused, ctx.rank, ctx.world_size, out_p,
                        time.perf_counter() - t0)
    piece, computed, reused = _gathered_piece(job, gathered, shards)
    return ShardRun(piece, job.plan.count, group, computed, reused, ctx.rank, ctx.world_size, out_p,
                    time.perf_counter() - t0)


def _group_shards(job: ShardJob, out: str | os.PathLike | None, resume: bool,
                  shard: str | tuple[int, int] | None) -> tuple[tuple[int, int], range]:
    """The group (I, N) of this run (recorded in the fingerprint unless it is the whole run) and
    its shards, under the journal's shard size when resuming allows it (:func:`adopt_plan`)."""
    group = parse_shard(shard) or (0, 1)
    if group != (0, 1):
        job.fingerprint["group"] = list(group)
    if resume and out is not None:
        adopt_plan(job, Journal(out, job.fingerprint).read_fingerprint())
    shards = job.plan.group(*group)
    if len(shards) == 0:
        raise SepcheckError(f"--shard {group[0]}/{group[1]}: the run has only {job.plan.count} shards of "
                            f"{job.plan.shard_rows} query rows: use N <= {job.plan.count} or a smaller --shard-rows")
    return group, shards


def _finished_output(journal: Journal, job: ShardJob) -> Piece | SeparationResult | None:
    """With resume: refuse a foreign journal or output (every rank, before anything is touched);
    the output of ``job`` when the run had finished (no journal left), else None."""
    journal.check()
    found = check_existing(journal.out, job.fingerprint)
    return found if not journal.folder.exists() else None


def _open_journal(journal: Journal, resume: bool, ctx: process_group.DistContext) -> None:
    """Rank 0 creates the journal (resume: keeps a matching one); then the other ranks attach."""
    if ctx.is_main:
        journal.start(resume)
    process_group.barrier(ctx)
    if not ctx.is_main:
        journal.attach()


def _run_mine(job: ShardJob, mine: list[int], journal: Journal | None, resume: bool,
              progress: bool | Callable[[int], None], ctx: process_group.DistContext,
              total: int) -> tuple[Shards, int, int]:
    """This process's shards: from the journal (resume) or computed and journaled."""
    results: Shards = {}
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


# ----- the piece of this run -------------------------------------------------------------------
def _gathered_piece(job: ShardJob, gathered: list[tuple[Shards, int, int]],
                    shards: range) -> tuple[Piece, int, int]:
    """Rank 0: the piece of the shards every rank sent, shards computed and reused in all."""
    allres: Shards = {}
    for res, _, _ in gathered:
        allres.update(res)
    computed = sum(g[1] for g in gathered)
    reused = sum(g[2] for g in gathered)
    arrays = _assemble(job.fingerprint, allres, shards.start, shards.stop)
    return _finish(job, arrays, shards.start, shards.stop), computed, reused


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


def _finish(job: ShardJob, arrays: dict[str, np.ndarray], lo: int, hi: int) -> Piece:
    """The piece of shards lo..hi-1 with what needs the data: conflicts, classes, test labels."""
    plan = job.plan
    a, b = plan.bounds(lo)[0], plan.bounds(hi - 1)[1]
    extra = _conflicts(job, arrays, a, b) if job.task == "separation" else {}
    if job.task == "certify":
        extra["classes"] = np.unique(job.y)
        extra["test.labels"] = np.asarray(job.y_test)
    return Piece(dict(job.fingerprint), lo, hi, {**arrays, **extra})


# ----- options, existing output and the output -------------------------------------------------
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
    loaded = read_output(p)
    if loaded is None:
        raise SepcheckError(f"--out {p} exists and is not a sepcheck result: give another --out or remove it")
    found = output_fingerprint(loaded)
    fp = {k: v for k, v in fingerprint.items() if k in found or k == "group"}  # a result file has fewer keys
    diff = describe_mismatch(found, fp)
    if diff is not None:
        raise SepcheckError(f"--out {p} holds results of other inputs or options ({diff}): give another --out, "
                            "or run without --resume to replace it")
    return loaded


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


@checked_once
def run_job(job: ShardJob, *, out: str | os.PathLike | None = None, resume: bool = False,
            shard: str | tuple[int, int] | None = None, progress: bool = False) -> ShardRun:
    """:func:`run_sharded` inside the torchrun process group when there is one (joined, cores
    shared, left); nothing is written but the journal (see :func:`finish_output`)."""
    check_run_options(out, resume, shard)
    ctx = process_group.setup(job.options.device)
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
    :func:`sepcheck.merge_pieces`) and the journal removed. Identical to :func:`sepcheck.separation`.
    """
    check_run_options(out, resume, shard)
    job = separation_job(X, y, X_test, y_test, norm=norm, dataset=dataset, raw=raw, shard_rows=shard_rows,
                         **engine_options)
    run = run_job(job, out=out, resume=resume, shard=shard, progress=progress)
    if run.piece is None:
        return None, run
    finish_output(run, write_piece_or_result(run, dataset))
    return (separation_result(run.piece, dataset) if run.piece.complete else run.piece), run


__all__ = [
    "ShardRun", "run_sharded", "LogLines", "check_run_options", "check_existing", "finish_output",
    "write_piece_or_result", "run_job", "sharded_separation",
]
