"""Exact radius search: every (query, reference row) pair within a distance.

:func:`neighbors_within` returns a sparse, CSR-like :class:`RadiusNeighbors` of all pairs
whose reported distance is at most the radius (closed ball), with the conventions of
:func:`sepcheck.engine.nearest_other`: 0-based reference rows, uint8 distances on the
[0, 1] pixel scale unless ``raw``, every distance computed by the one exact routine
(:mod:`sepcheck.engine.kernels.exact`) that ``nearest_other`` reports with. The conflict graph of
the robust-accuracy ceiling is ``neighbors_within(X, y, 2 * eps)``.

How: the backend tiles produce candidate pairs under a threshold a hair above the radius
(exact integers for uint8; a relative slack that covers the tiles' rounding for floats);
each candidate's distance is then computed exactly and compared with the radius, so a pair
is in iff the distance sepcheck reports for it is <= radius. Pairs are kept per query
block, sorted per row by (distance, index), and spilled to ``.npy`` files when they
outgrow their share of the memory budget.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..core.errors import SepcheckError
from ..core.norms import norm_name, parse_norm
from ..core.validation import as_features, as_labels, check_same_dim, checked_once
from .dispatch import choose_radius, run_radius_backend
from .options import RADIUS_BACKENDS, SearchOptions
from .problem import (
    Problem,
    common_dtype,
    effective_p,
    range_safe,
    scale_of,
    units_of,
)

Units = Literal["pixel", "raw", "data"]
#: bytes per stored pair: its reference index (int64) and distance (float64)
PAIR_BYTES = 16
#: bytes per candidate pair while a query block is collected (row, column, value, and the
#: temporaries of selecting and sorting them)
CANDIDATE_BYTES = 48
#: bytes of the query rows gathered at once to compute candidates' exact distances
_EXACT_CHUNK_BYTES = 4 * 2**20


@dataclass(frozen=True, eq=False)
class RadiusNeighbors:
    """All (query, reference row) pairs within ``radius``, in CSR form.

    Row ``i`` (query i) holds the reference rows ``indices[indptr[i]:indptr[i+1]]`` at
    distances ``distances[indptr[i]:indptr[i+1]]``, sorted by (distance, index).

    Attributes
    ----------
    indptr : int64 array (m + 1,)
    indices : int64 array (nnz,)
        0-based rows of the reference.
    distances : float64 array (nnz,)
        In the units of ``units``: 'pixel' (uint8 data, raw / 255), 'raw' (uint8, 0-255)
        or 'data' (floating data, as given).
    shape : (m, n)
        Queries x reference rows.
    radius : float
        The search radius (closed: pairs at exactly ``radius`` are included).
    norm : str
        'linf', 'l1', 'l2' or 'lP'.
    units : str

    When the search spilled its pairs to disk, ``indices`` and ``distances`` are read-only
    arrays memory-mapped from ``.npy`` files (see :func:`neighbors_within`, ``spill_dir``).
    """

    indptr: np.ndarray
    indices: np.ndarray
    distances: np.ndarray
    shape: tuple[int, int]
    radius: float
    norm: str
    units: Units
    #: folder of the spill files, or None
    spill_path: str | None = field(default=None, compare=False)

    @property
    def nnz(self) -> int:
        """Number of pairs."""
        return int(self.indices.shape[0])

    def counts(self) -> np.ndarray:
        """(m,) int64 number of pairs per query."""
        return np.diff(self.indptr)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) of query ``i``, sorted by (distance, index)."""
        m = self.shape[0]
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -m <= i < m:
            raise SepcheckError(f"row {i!r} is invalid: give an integer query row in [0, {m})")
        i = int(i) % m
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[a:b], self.distances[a:b]

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, distances) of every pair, (nnz,) each, in row order."""
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int64), self.counts())
        return rows, np.asarray(self.indices), np.asarray(self.distances)

    def to_csr(self):
        """``scipy.sparse.csr_array`` of shape ``shape`` whose data are the distances.

        Explicit zeros are KEPT: a pair at distance 0 (identical rows, with different
        labels the interesting ones) is a stored entry, not an absent one. Do not call
        ``eliminate_zeros`` on it; test membership with the sparsity structure."""
        from scipy.sparse import csr_array

        return csr_array(
            (np.asarray(self.distances), np.asarray(self.indices), np.asarray(self.indptr)),
            shape=self.shape,
        )

    def within(self, radius: float) -> RadiusNeighbors:
        """The pairs at distance <= ``radius`` (at most this result's radius), without a new
        search. The result is held in memory."""
        r = check_radius(radius)
        if r > self.radius:
            raise SepcheckError(
                f"radius {r!r} is beyond the searched radius {self.radius!r}: search again "
                "with the larger radius"
            )
        keep = np.asarray(self.distances) <= r
        kept = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        indptr = kept[self.indptr]
        return RadiusNeighbors(
            indptr, np.asarray(self.indices)[keep], np.asarray(self.distances)[keep],
            self.shape, r, self.norm, self.units,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to an ``.npz`` file (no pickles); read it with :meth:`load`."""
        np.savez(
            path, indptr=self.indptr, indices=self.indices, distances=self.distances,
            shape=np.asarray(self.shape, dtype=np.int64), radius=np.float64(self.radius),
            norm=np.str_(self.norm), units=np.str_(self.units),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> RadiusNeighbors:
        """Read a result written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            return cls(
                f["indptr"], f["indices"], f["distances"], tuple(int(v) for v in f["shape"]),
                float(f["radius"]), str(f["norm"]), str(f["units"]),  # type: ignore[arg-type]
            )


def check_radius(radius: Any, name: str = "radius") -> float:
    """A radius as a float >= 0 (+inf allowed: every pair); a one-line error otherwise."""
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.integer, np.floating)):
        raise SepcheckError(f"{name}={radius!r} is invalid: give a number >= 0")
    r = float(radius)
    if math.isnan(r) or r < 0:
        raise SepcheckError(f"{name}={radius!r} is invalid: give a number >= 0 (inf: all pairs)")
    return r


def make_radius_problem(
    reference: Any,
    reference_labels: Any,
    queries: Any,
    query_labels: Any,
    norm: str | float,
    other_label: bool,
) -> Problem:
    """Validated inputs as an ``OTHER_LABEL`` :class:`Problem` whose label mask is the pair
    exclusion: the labels themselves with ``other_label``; otherwise labels that exclude
    nothing, or only the pair (i, i) in self mode."""
    p = parse_norm(norm)
    ref = as_features(reference, "reference")
    n = ref.shape[0]
    if (queries is None) and (query_labels is not None):
        raise SepcheckError(
            "query_labels without queries: pass queries too, or neither for the reference "
            "set against itself"
        )
    if other_label and reference_labels is None:
        raise SepcheckError(
            "other_label=True needs reference_labels: pass them, or other_label=False for "
            "every pair"
        )
    rl = None if reference_labels is None else as_labels(
        reference_labels, n, "reference_labels", "reference"
    )
    if queries is None:
        ql = rl
        p = effective_p(p, ref.shape[1])
        ref, _, scale = range_safe(ref, None, p)
        qry = ref
    else:
        qry = as_features(queries, "queries")
        check_same_dim(ref, qry, "reference", "queries")
        if other_label and query_labels is None:
            raise SepcheckError(
                "other_label=True needs query_labels with queries: pass them, or "
                "other_label=False for every pair"
            )
        ql = None if query_labels is None else as_labels(
            query_labels, qry.shape[0], "query_labels", "queries"
        )
        ref, qry = common_dtype(ref, qry)
        p = effective_p(p, ref.shape[1])
        ref, qry, scale = range_safe(ref, qry, p)
    self_mode = queries is None
    if not other_label:  # labels that exclude nothing but (i, i) in self mode
        rl = np.arange(n, dtype=np.int64)
        ql = rl if self_mode else np.full(qry.shape[0], -1, dtype=np.int64)
    return Problem(ref, rl, qry, ql, p, 1, self_mode, scale=scale)


@checked_once
def neighbors_within(
    reference: Any,
    reference_labels: Any,
    radius: float,
    queries: Any = None,
    query_labels: Any = None,
    *,
    norm: str | float = "linf",
    other_label: bool = True,
    backend: str = "auto",
    device: str = "auto",
    raw: bool = False,
    block_size: int | None = None,
    memory_budget: int | str | None = None,
    progress: bool | Callable[[int], None] = False,
    info: dict | None = None,
    spill_dir: str | os.PathLike | None = None,
    options: SearchOptions | None = None,
) -> RadiusNeighbors:
    """Every (query, reference row) pair at distance <= ``radius``. Exact.

    Parameters
    ----------
    reference, reference_labels
        Array-like of shape (n, ...) (images are flattened) and its n integer labels
        (may be None with ``other_label=False``). uint8 or floating.
    radius
        Closed radius >= 0 in the reported units (the [0, 1] pixel scale for uint8 unless
        ``raw``): a pair is included iff the distance sepcheck reports for it (the value
        :func:`~sepcheck.engine.nearest_other` would report) is <= ``radius``; ``inf``
        gives every pair (small n only).
    queries, query_labels
        Rows to search for; ``None`` (both) means the reference against itself ("self
        mode"): then the pair (i, i) is never included, and both (i, j) and (j, i) are.
    norm
        'linf', 'l2', 'l1' or any float p >= 1.
    other_label
        True: only reference rows whose label differs from the query's (labels required).
        False: every row.
    backend
        'auto' (the fastest exact one), 'numba' (CPU, linf and l1) or 'torch' (CPU or
        CUDA, every norm).
    device
        'auto', 'cpu' or 'cuda'.
    raw
        uint8 input: radius and distances in raw 0-255 units.
    block_size
        Rows per block (queries and references), overriding the memory budget.
    memory_budget
        Bytes (or a size such as '512MiB') the search may use besides its input and the
        result (default 512 MiB): a quarter for the pairs kept in memory (beyond it they
        are spilled to disk), a quarter for the torch tiles, a quarter for one query
        block's candidate pairs (torch: a block that finds more is searched again in
        halves, down to single queries; numba: the kernel's pair buffers, a block of 64
        queries that finds more is rerun with room for all its pairs). The numba kernels' copy of the reference must fit half of an
        explicit budget ('auto' takes torch otherwise).
    progress
        True for a progress bar on stderr, or a callable receiving query counts done.
    options
        Validated :class:`~sepcheck.engine.options.SearchOptions` instead of backend,
        device, raw, block_size, memory_budget and progress.
    info
        Optional dict that receives details: backend, device, candidates checked exactly,
        pairs found, whether they were spilled; numba: its pruning counters and the bytes
        of its copies.
    spill_dir
        Folder for the spill files (``indices.npy``, ``distances.npy`` with a unique prefix)
        when the pairs outgrow the memory budget. None: a temporary folder, removed when the
        result is garbage-collected (on Linux arrays already taken from it stay readable).
        A folder given here is the caller's: its files stay.

    Returns
    -------
    RadiusNeighbors
        CSR-like pairs of shape (m, n), rows sorted by (distance, index); spilled results
        hold read-only memory-mapped ``indices`` and ``distances``.
    """
    r = check_radius(radius)
    problem = make_radius_problem(
        reference, reference_labels, queries, query_labels, norm, bool(other_label)
    )
    opts = SearchOptions.resolve(options, backend=backend, device=device, raw=raw, block_size=block_size,
                                 memory_budget=memory_budget, progress=progress)
    budget = opts.budget
    plan = _plan(problem, r, opts.raw, opts.backend, opts.device, opts.memory_budget is not None, budget)
    result, details = _collect(problem, plan, r, opts.raw, opts.block_size, opts.progress, spill_dir)
    if info is not None:
        info.update(details)
    return result


@dataclass(frozen=True)
class _Plan:
    """How a radius search runs: backend ``name`` on ``device``; ``scale`` divides raw
    distances into reported ones; candidate pairs are those under ``threshold`` (raw
    units); ``share`` (a quarter of the memory budget) bounds the pairs kept in memory and
    the backend's tiles; a query block collects at most ``max_pairs`` candidates at once."""

    name: str
    device: str
    scale: float
    threshold: float
    share: int
    max_pairs: int


def _plan(
    problem: Problem, r: float, raw: bool, backend: str, device: str, explicit_budget: bool,
    budget: int,
) -> _Plan:
    """The plan of a search for the pairs within ``r`` (reported units)."""
    name, dev = choose_radius(problem, backend, device, explicit_budget, budget)
    s = scale_of(problem, raw)
    # candidates: a threshold in computed units a hair above the radius (tile rounding)
    slack = 1.0 + 1e-9 + 8.0 * problem.dim * 2.0**-53
    threshold = math.inf if math.isinf(r) else r * s * slack
    max_pairs = max(1, (budget // 4) // CANDIDATE_BYTES)
    return _Plan(name, dev, s, threshold, budget // 4, max_pairs)


def _collect(
    problem: Problem,
    plan: _Plan,
    r: float,
    raw: bool,
    block_size: int | None,
    progress: bool | Callable[[int], None],
    spill_dir: str | os.PathLike | None,
) -> tuple[RadiusNeighbors, dict]:
    """Run ``plan`` and assemble the result: (the pairs within ``r``, the details for
    ``info``). A failed search leaves no spill file behind."""
    sink = _PairSink(problem.n_query, plan.share, spill_dir)
    try:
        extra, checked = _search(problem, plan, r, block_size, progress, sink)
        result = sink.result(
            shape=(problem.n_query, problem.n_ref), radius=r, norm=norm_name(problem.p),
            units=units_of(problem.reference, raw),
        )
    except BaseException:
        sink.discard()
        raise
    details = {"backend": plan.name, "device": plan.device, "candidates": checked,
               "pairs": result.nnz, "spilled": result.spill_path is not None, **extra}
    return result, details


def _search(
    problem: Problem,
    plan: _Plan,
    r: float,
    block_size: int | None,
    progress: bool | Callable[[int], None],
    sink: _PairSink,
) -> tuple[dict, int]:
    """The backend's candidate pairs, those within ``r`` (:func:`_within`) into ``sink``:
    (the backend's details, the number of candidates checked)."""
    from ..core.progress import progress_callback

    checked = 0

    def on_block(qs, n, rows, cols, values):
        nonlocal checked
        checked += rows.size
        sink.add(qs, n, *_within(problem, plan.scale, r, rows, cols, values))

    with progress_callback(progress, problem.n_query, f"neighbors within ({plan.name})") as tick:
        extra = run_radius_backend(
            problem, plan.name, plan.device, plan.share, block_size, plan.max_pairs,
            plan.threshold, on_block, tick,
        )
    return extra, checked


def _within(
    problem: Problem, s: float, r: float, rows: np.ndarray, cols: np.ndarray,
    values: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs (queries[rows], reference[cols]) at reported distance <= ``r``,
    sorted by (row, distance, column): (rows, cols, distances). ``values``: their exact
    distances in raw units, or None (computed here); ``s`` divides them into reported units."""
    d = (values if values is not None else _exact(problem, rows, cols)) / s
    keep = d <= r
    rows, cols, d = rows[keep], cols[keep], d[keep]
    order = np.lexsort((cols, d, rows))
    return rows[order], cols[order], d[order]


def _exact(problem: Problem, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact distances (raw units) of the pairs (queries[rows], reference[cols])."""
    from .kernels.exact import pair_distances

    out = np.empty(rows.size)
    chunk = max(1, _EXACT_CHUNK_BYTES // max(1, problem.dim * problem.queries.itemsize))
    for a in range(0, rows.size, chunk):
        q = problem.queries[rows[a : a + chunk]]
        out[a : a + chunk] = pair_distances(q, problem.reference, cols[a : a + chunk, None], problem.p)[:, 0]
    return out


#: bytes of the .npy header the spill files reserve (written when the length is known)
_NPY_HEADER = 128


class _PairSink:
    """Sorted pairs of consecutive query blocks, in memory up to ``limit`` bytes, then
    appended to two ``.npy`` files (header reserved, written at the end)."""

    def __init__(self, n_rows: int, limit: int, spill_dir: str | os.PathLike | None):
        self.counts = np.zeros(n_rows, dtype=np.int64)
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.held = 0
        self.limit = max(PAIR_BYTES, limit)
        self.spill_dir = spill_dir
        self.folder: str | None = None
        self.own_folder = False
        self.paths: list[str] = []

    def add(self, qs: int, n: int, rows: np.ndarray, cols: np.ndarray, dists: np.ndarray):
        self.counts[qs : qs + n] = np.bincount(rows - qs, minlength=n)
        self.parts.append((cols.astype(np.int64, copy=False), dists))
        self.held += rows.size * PAIR_BYTES
        if self.held > self.limit:
            self._spill()

    def _spill(self) -> None:
        if not self.paths:
            if self.spill_dir is None:
                self.folder = tempfile.mkdtemp(prefix="sepcheck-radius-")
                self.own_folder = True
            else:
                self.folder = os.fspath(self.spill_dir)
                os.makedirs(self.folder, exist_ok=True)
            stem = os.path.join(self.folder, f"radius-{uuid.uuid4().hex[:12]}")
            self.paths = [f"{stem}-indices.npy", f"{stem}-distances.npy"]
            for path in self.paths:
                with open(path, "wb") as f:
                    f.write(b"\0" * _NPY_HEADER)
        for k, path in enumerate(self.paths):
            with open(path, "ab") as f:
                for part in self.parts:
                    f.write(np.ascontiguousarray(part[k]).tobytes())
        self.parts.clear()
        self.held = 0

    def result(self, shape, radius, norm, units) -> RadiusNeighbors:
        indptr = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        if not self.paths:
            if self.parts:
                indices = np.concatenate([c for c, _ in self.parts])
                distances = np.concatenate([d for _, d in self.parts])
            else:
                indices, distances = np.empty(0, dtype=np.int64), np.empty(0)
            return RadiusNeighbors(indptr, indices, distances, shape, radius, norm, units)
        self._spill()
        arrays = []
        for path, dtype in zip(self.paths, (np.int64, np.float64), strict=True):
            with open(path, "r+b") as f:
                f.write(_npy_header(np.dtype(dtype), int(indptr[-1])))
            arrays.append(np.load(path, mmap_mode="r"))
        out = RadiusNeighbors(
            indptr, arrays[0], arrays[1], shape, radius, norm, units, spill_path=self.folder
        )
        if self.own_folder:
            weakref.finalize(out, shutil.rmtree, self.folder, True)
        return out

    def discard(self) -> None:
        """Remove what was written (a failed search leaves nothing behind)."""
        for p in self.paths:
            with contextlib.suppress(OSError):
                os.remove(p)
        if self.own_folder and self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.paths = []


def _npy_header(dtype: np.dtype, n: int) -> bytes:
    """A version 1.0 ``.npy`` header of exactly :data:`_NPY_HEADER` bytes for a 1-D array."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}
    np.lib.format.write_array_header_1_0(buf, header)
    data = buf.getvalue()
    if len(data) != _NPY_HEADER:  # pragma: no cover - numpy's format pads to 64 bytes
        raise RuntimeError(f".npy header of {len(data)} bytes, expected {_NPY_HEADER}")
    return data


__all__ = ["neighbors_within", "RadiusNeighbors", "RADIUS_BACKENDS", "check_radius"]
