"""Pieces: a group of shards of a run in one sealed HDF5 file, and the results they make.

A :class:`Piece` holds shards ``lo`` to ``hi - 1`` of a run (per part its rows' distances and
indices, and what the final result needs: conflicts, or classes and test labels) with the
run's fingerprint. :func:`save_piece` writes it atomically as a sealed file tagged
``PIECE_FORMAT`` (``sepcheck.shards/1``, an on-disk format id); :func:`read_piece` reads it
back with one-line errors. A complete piece becomes a :class:`SeparationResult`
(:func:`separation_result`) or a :class:`CertificationResult` (:func:`certification`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.certify import CertificationResult, build_result, parse_eps
from ..analysis.separation import SeparationResult
from ..core.errors import SepcheckError, cause
from ..core.fileio import USERBLOCK, atomic_write, h5_dataset, input_file, seal_file, seal_problem
from .plan import ShardPlan

#: the tag of a piece file (a shard group, or a whole certify run)
PIECE_FORMAT = "sepcheck.shards/1"


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


def read_output(path: Path) -> Piece | SeparationResult | None:
    """A results file (a piece, or a separation result written by a sharded run), read and
    checked once; None when it is neither."""
    if seal_problem(path, PIECE_FORMAT) is None:
        return _open_piece(path)
    try:
        return SeparationResult.load(path)
    except SepcheckError:
        return None


def output_fingerprint(loaded: Piece | SeparationResult) -> dict[str, Any]:
    """The fingerprint of a results file (a separation result carries only part of it)."""
    if isinstance(loaded, Piece):
        return loaded.fingerprint
    return {"task": "separation", "content_hash": loaded.content_hash, "norm": loaded.norm, "units": loaded.units}


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


__all__ = [
    "PIECE_FORMAT", "Piece", "save_piece", "read_piece", "read_output", "output_fingerprint", "separation_result",
    "certification",
]
