"""nearest_by_class against the float64 brute-force oracle (tests/oracle.py::class_distances):
every backend, norm, dtype, class count, block size, ties and duplicates; the exact float l2
rerank; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError
from sepcheck.engine import nearest_by_class
from sepcheck.engine.backends import torch_backend
from tests import oracle

NORMS = {"linf": math.inf, "l1": 1.0, "l2": 2.0, 3.0: 3.0}


#: many tiny torch tiles: one thread avoids OpenMP barriers on a busy shared machine
pytestmark = pytest.mark.usefixtures("one_thread")


def _backends(p: float) -> list[str]:
    return ["numba", "torch"] if p in (1.0, math.inf) else ["torch"]


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(["uint8", "float32", "float64"]))
    norm = draw(st.sampled_from(list(NORMS)))
    p = NORMS[norm]
    n = draw(st.integers(1, 70))
    d = draw(st.integers(1, 12))
    n_classes = draw(st.integers(1, min(20, n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # coarse grids give exact ties and duplicates; continuous values otherwise
    coarse = draw(st.booleans())
    if dtype == "uint8":
        X = rng.integers(0, 4 if coarse else 256, (n, d)).astype(np.uint8)
    else:
        X = (rng.integers(-4, 5, (n, d)) * 0.25 if coarse else rng.normal(size=(n, d))).astype(
            dtype
        )
    if draw(st.booleans()) and n > 3:  # duplicate rows, possibly with another label
        X[n // 2] = X[0]
        X[n - 1] = X[1]
    y = rng.integers(0, n_classes, n) * 3 - 5  # labels need not be 0..C-1
    m = draw(st.integers(1, 30))
    if coarse:
        Q = X[rng.integers(0, n, m)].copy()
        Q[: m // 2] = (
            rng.integers(0, 4, (m // 2, d))
            if dtype == "uint8"
            else rng.integers(-4, 5, (m // 2, d)) * 0.25
        )
    elif dtype == "uint8":
        Q = rng.integers(0, 256, (m, d)).astype(np.uint8)
    else:
        Q = rng.normal(size=(m, d)).astype(dtype)
    block = draw(st.one_of(st.none(), st.integers(1, 75)))
    backend = draw(st.sampled_from(_backends(p)))
    direct_l2_max_dim = draw(st.sampled_from([0, 16]))  # 0: every l2 case takes the GEMM path
    return X, y, Q, norm, p, block, backend, direct_l2_max_dim


def _check(got, want, p: float, integer: bool) -> None:
    d, i, c = got
    od, oi, oc = want
    assert d.shape == od.shape and i.shape == oi.shape
    assert d.dtype == np.float64 and i.dtype == np.int64 and c.dtype == np.int64
    np.testing.assert_array_equal(c, oc)
    np.testing.assert_array_equal(i, oi)
    if integer and p in (1.0, 2.0, math.inf):
        np.testing.assert_array_equal(d, od)  # integer arithmetic: bit-exact
    else:
        np.testing.assert_allclose(d, od, rtol=1e-10, atol=0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_matches_oracle(case):
    X, y, Q, norm, p, block, backend, direct_l2_max_dim = case
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    want = oracle.class_distances(X, y, Q, p=p, scale=scale)
    prev = torch_backend.DIRECT_L2_MAX_DIM
    torch_backend.DIRECT_L2_MAX_DIM = direct_l2_max_dim
    try:
        got = nearest_by_class(X, y, Q, norm=norm, backend=backend, block_size=block, device="cpu")
    finally:
        torch_backend.DIRECT_L2_MAX_DIM = prev
    _check(got, want, p, X.dtype == np.uint8)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["linf", "l1", "l2"]))
def test_backends_and_block_sizes_agree(seed, norm):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, (61, 6)).astype(np.uint8)  # many exact ties
    y = rng.integers(0, 4, 61)
    Q = rng.integers(0, 3, (23, 6)).astype(np.uint8)
    runs = [
        nearest_by_class(X, y, Q, norm=norm, backend="torch", block_size=b, device="cpu")
        for b in (5, 13, 61, None)
    ]
    if norm == "l2":  # the GEMM path too (these rows are short enough for the direct one)
        prev = torch_backend.DIRECT_L2_MAX_DIM
        torch_backend.DIRECT_L2_MAX_DIM = 0
        try:
            runs += [
                nearest_by_class(X, y, Q, norm=norm, backend="torch", block_size=b, device="cpu")
                for b in (5, None)
            ]
        finally:
            torch_backend.DIRECT_L2_MAX_DIM = prev
    if norm != "l2":
        runs.append(nearest_by_class(X, y, Q, norm=norm, backend="numba"))
    for d, i, _ in runs[1:]:
        np.testing.assert_array_equal(i, runs[0][1])
        np.testing.assert_array_equal(d, runs[0][0])


def test_ties_go_to_lowest_index(device):
    X = np.array([[0.0], [2.0], [-2.0], [2.0], [-1.0], [1.0]])
    y = np.array([0, 1, 1, 1, 0, 0])
    for backend in ("numba", "torch"):
        dev = device if backend == "torch" else "cpu"
        d, i, c = nearest_by_class(
            X, y, np.array([[0.0], [1.5]]), norm="l1", backend=backend, device=dev
        )
        assert c.tolist() == [0, 1]
        assert i[0].tolist() == [0, 1] and d[0].tolist() == [0.0, 2.0]
        assert i[1].tolist() == [5, 1] and d[1].tolist() == [0.5, 0.5]


def test_single_class_is_the_plain_nearest_neighbour(device):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 3))
    Q = rng.normal(size=(9, 3))
    for backend in ("numba", "torch"):
        dev = device if backend == "torch" else "cpu"
        d, i, c = nearest_by_class(X, np.full(30, 7), Q, norm="linf", backend=backend, device=dev)
        D = oracle.pairwise(Q, X, math.inf)
        assert c.tolist() == [7]
        np.testing.assert_array_equal(i[:, 0], D.argmin(axis=1))
        np.testing.assert_array_equal(d[:, 0], D.min(axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l2_rerank_is_exact_on_near_ties(dtype):
    """Rows far from the origin and very close to each other (GEMM cancellation), exact
    duplicates across blocks: the candidate rerank and its exact fallback must agree with
    the oracle, and the fallback must actually run."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1, 40)) * 1000
    X = (base + rng.normal(size=(90, 40)) * 1e-3).astype(dtype)
    X[60:75] = X[5]  # 15 duplicates of row 5, spread over blocks
    y = rng.integers(0, 3, 90)
    y[[5] + list(range(60, 75))] = 1
    Q = np.concatenate([X[[5, 7, 70]], (base + rng.normal(size=(6, 40)) * 1e-3).astype(dtype)])
    want = oracle.class_distances(X, y, Q, p=2.0)
    for block in (None, 4, 13):
        info: dict = {}
        got = nearest_by_class(
            X, y, Q, norm="l2", backend="torch", block_size=block, info=info, device="cpu"
        )
        _check(got, want, 2.0, False)
        if block != 4:  # a block of 4 rows is reranked whole (4 <= L2_CANDIDATES)
            assert info["recomputed"] > 0


def test_uint8_l2_float32_gemm_path():
    """uint8 l2: float32 GEMM candidates + exact integer rerank."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (120, 300)).astype(np.uint8)
    X[100:110] = X[3]
    y = rng.integers(0, 5, 120)
    Q = np.concatenate([X[[3, 104]], rng.integers(0, 256, (20, 300)).astype(np.uint8)])
    want = oracle.class_distances(X, y, Q, p=2.0, scale=255.0)
    for block in (None, 17):
        _check(
            nearest_by_class(X, y, Q, norm="l2", backend="torch", block_size=block, device="cpu"),
            want,
            2.0,
            True,
        )


def test_raw_units_images_and_tensors(device):
    import torch

    rng = np.random.default_rng(6)
    X = rng.integers(0, 256, (40, 1, 4, 4)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    Q = rng.integers(0, 256, (5, 1, 4, 4)).astype(np.uint8)
    od, oi, _ = oracle.class_distances(X.reshape(40, -1), y, Q.reshape(5, -1), p=math.inf)
    d, i, _ = nearest_by_class(
        torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(Q), raw=True, device=device
    )
    np.testing.assert_array_equal(d, od)
    np.testing.assert_array_equal(i, oi)
    d2, _, _ = nearest_by_class(X, y, Q, device=device)
    np.testing.assert_array_equal(d2, od / 255.0)


def test_progress_and_info():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 4))
    y = rng.integers(0, 2, 50)
    Q = rng.normal(size=(600, 4))
    for norm, expect in (("linf", "numba"), ("l1", "numba"), ("l2", "torch"), (3, "torch")):
        seen: list[int] = []
        info: dict = {}
        nearest_by_class(X, y, Q, norm=norm, device="cpu", progress=seen.append, info=info)
        assert sum(seen) == 600 and info["backend"] == expect and info["device"] == "cpu"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"backend": "faiss"}, "does not search per class"),
        ({"backend": "numba", "norm": "l2"}, "linf and l1 only"),
        ({"norm": "l0.5"}, "not a norm"),
        ({"block_size": 0}, "block_size=0"),
        ({"memory_budget": 0}, "memory_budget"),
        ({"device": "tpu"}, "unknown device"),
    ],
)
def test_bad_options(kwargs, fragment):
    X = np.zeros((4, 2))
    with pytest.raises(SepcheckError, match=fragment) as exc:
        nearest_by_class(X, [0, 1, 0, 1], X, **kwargs)
    assert "\n" not in str(exc.value)


def test_bad_inputs():
    X = np.zeros((4, 2))
    with pytest.raises(SepcheckError, match="queries has 3"):
        nearest_by_class(X, [0, 1, 0, 1], np.zeros((2, 3)))
    with pytest.raises(SepcheckError, match="uint8"):
        nearest_by_class(X.astype(np.uint8), [0, 1, 0, 1], X)
    with pytest.raises(SepcheckError, match="queries is missing"):
        nearest_by_class(X, [0, 1, 0, 1], None)
    with pytest.raises(SepcheckError, match="3 labels"):
        nearest_by_class(X, [0, 1, 0], X)
    with pytest.raises(SepcheckError, match="NaN"):
        nearest_by_class(X, [0, 1, 0, 1], np.array([[0.0, np.nan]]))
