"""Merging the pieces of a SLURM array (``--shard I/N``) into the complete run.

:func:`merge_pieces` checks that the pieces come from the same inputs and options (their
fingerprints agree but for the group) and cover every shard exactly once (an overlap or a gap
is a one-line error naming the query rows), then concatenates them and writes the result: a
separation result, or a complete certify piece.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError
from .job import describe_mismatch
from .pieces import Piece, read_piece, save_piece, separation_result
from .plan import ShardPlan, split_rows


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
    base = _same_run(pieces)
    plan = first.plan
    pieces.sort(key=lambda pc: (pc.lo, pc.hi))
    _check_cover(pieces, first.fingerprint, plan)
    merged = Piece(base, 0, plan.count, _merged_arrays(pieces))
    if out is not None:
        if base["task"] == "separation":
            separation_result(merged).save(out)
        else:
            save_piece(merged, out)
        merged.path = Path(out)
    return merged


def _same_run(pieces: list[Piece]) -> dict[str, Any]:
    """The fingerprint the pieces share (without their group); a one-line error naming two
    pieces of different runs."""
    first = pieces[0]
    base = {k: v for k, v in first.fingerprint.items() if k != "group"}
    for pc in pieces[1:]:
        diff = describe_mismatch({k: v for k, v in pc.fingerprint.items() if k != "group"}, base)
        if diff is not None:
            raise SepcheckError(f"{pc.path} and {first.path} come from different inputs or options ({diff}): "
                                "merge only the pieces of one run")
    return base


def _check_cover(pieces: list[Piece], fp: dict[str, Any], plan: ShardPlan) -> None:
    """Pieces sorted by their shards cover every shard of ``plan`` exactly once; else a
    one-line error naming the rows in two pieces or in none."""
    covered = 0
    for prev, pc in zip([None, *pieces[:-1]], pieces, strict=False):
        if pc.lo < covered:
            a, b = plan.bounds(pc.lo)[0], plan.bounds(min(covered, pc.hi) - 1)[1]
            raise SepcheckError(f"{_rows(fp, a, b)} are in both {prev.path} and {pc.path}: merge "
                                "each --shard I/N once")
        if pc.lo > covered:
            a, b = plan.bounds(covered)[0], plan.bounds(pc.lo - 1)[1]
            raise SepcheckError(f"{_rows(fp, a, b)} are in no piece: run the missing --shard I/N "
                                "and merge again")
        covered = pc.hi
    if covered < plan.count:
        a = plan.bounds(covered)[0]
        raise SepcheckError(f"{_rows(fp, a, plan.n)} are in no piece: run the missing --shard I/N "
                            "and merge again")


def _merged_arrays(pieces: list[Piece]) -> dict[str, np.ndarray]:
    """The arrays of sorted pieces one after the other (classes and test labels once)."""
    arrays: dict[str, np.ndarray] = {}
    for key in sorted({k for pc in pieces for k in pc.arrays}):
        chunks = [pc.arrays[key] for pc in pieces if key in pc.arrays]
        if key.endswith(".conflicts"):
            arrays[key] = np.concatenate(chunks, axis=0).reshape(-1, 2)
        elif key in ("classes", "test.labels"):
            arrays[key] = chunks[0]
        else:
            arrays[key] = np.concatenate(chunks, axis=0)
    return arrays


def _rows(fp: dict[str, Any], a: int, b: int) -> str:
    """Global query rows [a, b) in words, per part ('train rows 100-199')."""
    parts = fp["parts"]
    words = [f"{parts[j][0]} rows {lo}-{hi - 1}" for j, lo, hi in split_rows([int(p[2]) for p in parts], a, b)]
    return "query " + " and ".join(words) if words else f"query rows {a}-{b - 1}"


__all__ = ["merge_pieces"]
