"""neighbors_within against the float64 brute-force oracle (tests/oracle.py::within): norms,
dtypes, self and query mode, other_label both ways, block sizes, ties at exactly the radius,
duplicates, radius 0 and beyond the diameter, the spill path; the result's methods; errors."""

from __future__ import annotations

import gc
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError, nearest_other
from sepcheck.engine.backends import torch_backend
from sepcheck.engine.radius import RadiusNeighbors, neighbors_within
from tests import oracle

NORMS = {"linf": math.inf, "l1": 1.0, "l2": 2.0, 3.0: 3.0}

pytestmark = pytest.mark.usefixtures("one_thread")


def _backends(p: float) -> list[str]:
    return ["auto", "numba", "torch"] if p in (1.0, math.inf) else ["auto", "torch"]


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(["uint8", "float32", "float64"]))
    norm = draw(st.sampled_from(list(NORMS)))
    n = draw(st.integers(1, 50))
    d = draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    coarse = draw(st.booleans())  # coarse grids: exact ties and duplicates

    def rows(k):
        if dtype == "uint8":
            return rng.integers(0, 4 if coarse else 256, (k, d)).astype(np.uint8)
        if coarse:
            return (rng.integers(-4, 5, (k, d)) * 0.25).astype(dtype)
        return rng.normal(size=(k, d)).astype(dtype)

    X = rows(n)
    if n > 3 and draw(st.booleans()):
        X[n // 2] = X[0]
    y = rng.integers(0, draw(st.integers(1, 4)), n) * 2 - 1
    query_mode = draw(st.booleans())
    Q = yq = None
    if query_mode:
        m = draw(st.integers(1, 20))
        Q = rows(m)
        Q[: m // 2] = X[rng.integers(0, n, m // 2)]
        yq = rng.integers(-1, 6, m)
    other_label = draw(st.booleans())
    block = draw(st.one_of(st.none(), st.integers(1, 53)))
    backend = draw(st.sampled_from(_backends(NORMS[norm])))
    gemm = draw(st.booleans())  # l2: the int8 GEMM tiles of uint8 rows of any length
    how = draw(st.sampled_from(["pair", "gap", "zero", "inf"]))
    return X, y, Q, yq, norm, other_label, block, backend, gemm, how, rng


def _radius(D, how, rng, coarse_exact):
    finite = np.unique(D[np.isfinite(D)])
    if how == "zero" or finite.size == 0:
        return 0.0
    if how == "inf":
        return math.inf
    if how == "pair" and coarse_exact:  # exactly a pair's distance: closed ball
        return float(finite[rng.integers(0, finite.size)])
    i = rng.integers(0, finite.size)  # between two distances: no rounding question
    return float(finite[i] + (finite[i + 1] - finite[i]) / 2) if i + 1 < finite.size else float(finite[i] * 2 + 1)


def _check(res: RadiusNeighbors, want, exact: bool) -> None:
    assert res.indptr.dtype == np.int64 and res.indices.dtype == np.int64
    assert res.distances.dtype == np.float64
    assert res.counts().tolist() == [w[0].size for w in want]
    for i, (wi, wd) in enumerate(want):
        gi, gd = res.row(i)
        np.testing.assert_array_equal(gi, wi)
        if exact:
            np.testing.assert_array_equal(gd, wd)
        else:
            np.testing.assert_allclose(gd, wd, rtol=1e-10, atol=0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_matches_oracle(case):
    X, y, Q, yq, norm, other_label, block, backend, gemm, how, rng = case
    p = NORMS[norm]
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    D = oracle.pairwise(X if Q is None else Q, X, p) / scale
    # exact oracle distances: integers (uint8 linf/l1/l2 squared) or quarter grids
    exact = X.dtype == np.uint8 and p != 3.0
    r = _radius(D, how, rng, exact or (p in (1.0, math.inf) and X.dtype != np.uint8))
    want = oracle.within(X, y, r, Q, yq, p=p, scale=scale, other_label=other_label)
    prev = torch_backend.DIRECT_L2_MAX_DIM
    torch_backend.DIRECT_L2_MAX_DIM = 0 if gemm else prev
    try:
        res = neighbors_within(
            X, y, r, Q, yq, norm=norm, other_label=other_label, backend=backend,
            block_size=block, device="cpu",
        )
    finally:
        torch_backend.DIRECT_L2_MAX_DIM = prev
    assert res.shape == (D.shape[0], X.shape[0]) and res.radius == r
    _check(res, want, exact or p in (1.0, math.inf))


def test_closed_ball_at_twice_eps_on_the_pixel_scale():
    # 2 * 0.1 = 0.2 and 51 / 255 = 0.2 in float64, while 0.2 * 255 = 51.000000000000007
    X = np.zeros((4, 3), dtype=np.uint8)
    X[1, 0], X[2, 1], X[3, 2] = 51, 52, 50
    y = np.array([0, 1, 1, 1])
    for norm in ("linf", "l1", "l2"):
        got = neighbors_within(X, y, 2 * 0.1, norm=norm, device="cpu")
        idx, dist = got.row(0)
        assert idx.tolist() == [3, 1] and dist.tolist() == [50 / 255, 0.2]
        raw = neighbors_within(X, y, 51, norm=norm, raw=True, device="cpu")
        assert raw.row(0)[0].tolist() == [3, 1] and raw.units == "raw"


def test_distances_are_those_nearest_other_reports():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 30)).astype(np.float32)
    y = rng.integers(0, 3, 80)
    for norm in ("l2", "linf", 3.0):
        d, i = nearest_other(X, y, norm=norm, device="cpu")
        res = neighbors_within(X, y, float(d.max()), norm=norm, device="cpu")
        for q in range(80):
            idx, dist = res.row(q)
            assert idx[0] == i[q, 0] and dist[0] == d[q, 0]  # bit-identical


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_spills_to_disk_under_a_small_budget(tmp_path, backend):
    # every pair: more than a query block may hold (torch halves its blocks, numba reruns
    # them with room for all) and more than the memory share (spilled)
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (760, 2)).astype(np.uint8)
    info: dict = {}
    res = neighbors_within(
        X, None, math.inf, other_label=False, memory_budget="16MiB", info=info, norm="l1",
        backend=backend, device="cpu"
    )
    assert info["spilled"] and isinstance(res.indices, np.memmap)
    assert res.nnz == 760 * 759
    D = oracle.pairwise(X, X, 1.0) / 255
    rows, cols, dist = res.pairs()
    np.testing.assert_array_equal(dist, D[rows, cols])
    assert (rows != cols).all() and np.all(np.diff(res.indptr) == 759)
    folder = res.spill_path
    assert os.path.isdir(folder)
    within = res.within(0.1)
    assert within.nnz == int(((D <= 0.1).sum()) - 760)
    del res, rows, cols, dist
    gc.collect()
    assert not os.path.exists(folder)  # the temporary folder goes with the result
    kept = neighbors_within(
        X, None, math.inf, other_label=False, memory_budget="16MiB", spill_dir=tmp_path,
        norm="l1", backend=backend, device="cpu"
    )
    assert kept.spill_path == str(tmp_path) and len(list(tmp_path.iterdir())) == 2
    np.testing.assert_array_equal(kept.within(0.1).indices, within.indices)


def test_result_methods(tmp_path):
    X = np.array([[0.0], [0.0], [1.0], [3.0]])
    y = np.array([0, 1, 1, 0])
    res = neighbors_within(X, y, 2.0, norm="l2", device="cpu")
    assert res.units == "data" and res.norm == "l2"
    assert res.row(0)[0].tolist() == [1, 2] and res.row(-1)[0].tolist() == [2]
    csr = res.to_csr()
    assert csr.shape == (4, 4) and csr.nnz == res.nnz == 6  # the zero distances are kept
    assert csr[0, 1] == 0.0 and csr.has_canonical_format
    zero = res.within(0.0)
    assert zero.pairs()[0].tolist() == [0, 1] and zero.pairs()[1].tolist() == [1, 0]
    res.save(tmp_path / "r.npz")
    back = RadiusNeighbors.load(tmp_path / "r.npz")
    for name in ("indptr", "indices", "distances"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert back.shape == res.shape and back.radius == 2.0 and back.norm == "l2"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda X, y: neighbors_within(X, y, -0.1, device="cpu"), "radius"),
        (lambda X, y: neighbors_within(X, y, float("nan"), device="cpu"), "radius"),
        (lambda X, y: neighbors_within(X, y, "1", device="cpu"), "radius"),
        (lambda X, y: neighbors_within(X, y, 1.0, backend="faiss", device="cpu"), "auto, numba, torch"),
        (lambda X, y: neighbors_within(X, y, 1.0, backend="triton", device="cpu"), "auto, numba, torch"),
        (lambda X, y: neighbors_within(X, None, 1.0, device="cpu"), "reference_labels"),
        (lambda X, y: neighbors_within(X, y, 1.0, X, None, device="cpu"), "query_labels"),
        (lambda X, y: neighbors_within(X, y, 1.0, None, y, other_label=False, device="cpu"), "query_labels"),
        (lambda X, y: neighbors_within(X, y, 1.0, norm="l2", backend="numba", device="cpu"), "numba"),
        (lambda X, y: neighbors_within(X, y, 1.0, device="cpu").within(2.0), "beyond"),
        (lambda X, y: neighbors_within(X, y, 1.0, device="cpu").row(9), "row"),
    ],
)
def test_bad_input_is_one_line(call, message):
    X = np.arange(12.0).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(SepcheckError, match=message) as e:
        call(X, y)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_torch_tiles_on_every_device(device, norm):
    rng = np.random.default_rng(7)
    X = rng.integers(0, 3, (70, 40)).astype(np.uint8)  # l2: the int8 GEMM tiles
    y = rng.integers(0, 3, 70)
    Q = np.concatenate([X[:5], rng.integers(0, 3, (9, 40)).astype(np.uint8)])
    yq = rng.integers(0, 3, 14)
    p = NORMS[norm]
    for queries, labels in ((None, None), (Q, yq)):
        D = oracle.pairwise(X if queries is None else queries, X, p) / 255
        r = float(np.median(D))
        want = oracle.within(X, y, r, queries, labels, p=p, scale=255.0)
        res = neighbors_within(X, y, r, queries, labels, norm=norm, backend="torch",
                               device=device, block_size=16)
        _check(res, want, exact=True)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_progress_counts_every_query_and_info_says_how(backend):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 4, (90, 5)).astype(np.uint8)
    y = rng.integers(0, 2, 90)
    done: list[int] = []
    info: dict = {}
    res = neighbors_within(X, y, 2 / 255, norm="l1", backend=backend, progress=done.append,
                           info=info, block_size=32 if backend == "torch" else None, device="cpu")
    assert sum(done) == 90 and info["backend"] == backend and info["pairs"] == res.nnz
    assert not info["spilled"] and info["candidates"] >= res.nnz
