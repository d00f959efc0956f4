"""nearest_other against the float64 brute-force oracle: every backend, norm, dtype, k,
label count, block size, ties and duplicates."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import nearest_other
from tests import oracle

NORMS = {"linf": math.inf, "l1": 1.0, "l2": 2.0, 3.0: 3.0, 1.5: 1.5}
try:  # faiss-cpu is a dependency, but a GPU image may lack it: the others still run there
    import faiss  # noqa: F401

    BACKENDS = ["torch", "faiss", "numba"]
except ImportError:
    BACKENDS = ["torch", "numba"]


def _backend_ok(backend: str, p: float) -> bool:
    return backend != "numba" or p in (1.0, math.inf)


def _dev(backend: str, device: str) -> str:
    """The fixture's device for torch; the CPU-only backends under 'auto' (the CPU)."""
    return device if backend == "torch" else "auto"


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(["uint8", "float32", "float64"]))
    norm = draw(st.sampled_from(list(NORMS)))
    p = NORMS[norm]
    n = draw(st.integers(2, 60))
    d = draw(st.integers(1, 12))
    n_labels = draw(st.integers(2, min(20, n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # coarse grids force exact ties and duplicate points; p=1.5 uses continuous values so
    # that float rounding cannot make a near-tie (summation order differs from the oracle)
    coarse = draw(st.booleans()) and p != 1.5
    if dtype == "uint8":
        X = rng.integers(0, 4 if coarse else 256, (n, d)).astype(np.uint8)
    else:
        X = (rng.integers(-4, 5, (n, d)) * 0.25 if coarse else rng.normal(size=(n, d))).astype(
            dtype
        )
    if draw(st.booleans()) and n > 3:  # exact duplicate rows, sometimes with another label
        X[n // 2] = X[0]
        X[n - 1] = X[1]
    y = rng.integers(0, n_labels, n)
    y[:2] = [0, 1]  # at least two classes
    cross = draw(st.booleans())
    if cross:
        m = draw(st.integers(1, 30))
        Xq = X[rng.integers(0, n, m)].copy() if coarse else rng.normal(size=(m, d)).astype(dtype)
        if dtype == "uint8" and not coarse:
            Xq = rng.integers(0, 256, (m, d)).astype(np.uint8)
        yq = rng.integers(0, n_labels + 1, m)  # a label absent from the reference too
    else:
        Xq = yq = None
    k = draw(st.integers(1, 5))
    block = draw(st.one_of(st.none(), st.integers(1, 70)))
    backend = draw(st.sampled_from([b for b in BACKENDS if _backend_ok(b, p)]))
    return X, y, Xq, yq, norm, p, k, block, backend


def _check(got, want, p, integer):
    d, i = got
    od, oi = want
    assert d.shape == od.shape and i.shape == oi.shape
    assert d.dtype == np.float64 and i.dtype == np.int64
    np.testing.assert_array_equal(i, oi)
    if integer and p in (1.0, math.inf):
        np.testing.assert_array_equal(d, od)  # bit-exact
    else:
        np.testing.assert_allclose(d, od, rtol=1e-10, atol=0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_matches_oracle(case):
    X, y, Xq, yq, norm, p, k, block, backend = case
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    want = oracle.nearest_other(X, y, Xq, yq, p=p, k=k, scale=scale)
    got = nearest_other(
        X, y, Xq, yq, norm=norm, k=k, backend=backend, block_size=block, device="cpu"
    )
    _check(got, want, p, X.dtype == np.uint8)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["linf", "l1", "l2", 3.0]), st.booleans())
def test_backends_and_block_sizes_agree(seed, norm, integer):
    """Bit-identical distances and indices from every backend and block size."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, (97, 5)).astype(np.uint8)  # many ties
    if not integer:
        X = rng.normal(size=(97, 5)).astype(np.float32)
    y = rng.integers(0, 3, 97)
    results = [
        nearest_other(X, y, norm=norm, k=3, backend="torch", block_size=b, device="cpu")
        for b in (1, 7, 97, None)
    ]
    results.append(nearest_other(X, y, norm=norm, k=3, backend="faiss", block_size=13))
    if norm in ("linf", "l1"):
        results.append(nearest_other(X, y, norm=norm, k=3, backend="numba"))
    for d, i in results[1:]:
        np.testing.assert_array_equal(i, results[0][1])
        np.testing.assert_array_equal(d, results[0][0])


def test_ties_go_to_lowest_index(device):
    X = np.array([[0.0], [1.0], [-1.0], [1.0], [-1.0]])
    y = np.array([0, 1, 1, 1, 1])
    for backend in BACKENDS:
        d, i = nearest_other(X, y, norm="l1", k=4, backend=backend, device=_dev(backend, device))
        np.testing.assert_array_equal(i[0], [1, 2, 3, 4])
        np.testing.assert_array_equal(d[0], [1, 1, 1, 1])
        assert i[1, 0] == 0


def test_fewer_than_k_other_rows_pads(device):
    X = np.arange(6, dtype=np.float64).reshape(6, 1)
    y = np.array([0, 0, 0, 0, 0, 1])
    for backend in BACKENDS:
        d, i = nearest_other(X, y, k=3, backend=backend, device=_dev(backend, device))
        assert i[0].tolist() == [5, -1, -1] and np.isinf(d[0, 1:]).all()
        assert i[5].tolist() == [4, 3, 2]


def test_uint8_scale_and_raw_units(device):
    X = np.array([[0, 0], [255, 10], [3, 200]], dtype=np.uint8)
    y = np.array([0, 1, 1])
    d, _ = nearest_other(X, y, norm="linf", device=device)
    r, _ = nearest_other(X, y, norm="linf", raw=True, device=device)
    np.testing.assert_array_equal(r[:, 0], [200.0, 255.0, 200.0])
    np.testing.assert_array_equal(d[:, 0], np.array([200.0, 255.0, 200.0]) / 255.0)


def test_images_are_flattened_and_torch_tensors_accepted(device):
    import torch

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (40, 1, 4, 4)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    y[:3] = [0, 1, 2]
    want = oracle.nearest_other(X.reshape(40, -1), y, scale=255.0)
    got = nearest_other(torch.from_numpy(X), torch.from_numpy(y), device=device)
    _check(got, want, math.inf, True)


def test_auto_backend_choice():
    X = np.random.default_rng(2).random((20, 3))
    y = np.arange(20) % 2
    for norm, expect in [("linf", "numba"), ("l1", "numba"), ("l2", "torch"), (3, "torch")]:
        info: dict = {}
        nearest_other(X, y, norm=norm, device="cpu", info=info)
        assert info["backend"] == expect and info["device"] == "cpu"


def test_l2_near_duplicates_are_exact():
    """GEMM cancellation: rows far from the origin and very close to each other."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1, 50)) * 1000
    X = (base + rng.normal(size=(60, 50)) * 1e-3).astype(np.float64)
    y = rng.integers(0, 3, 60)
    y[:3] = [0, 1, 2]
    info: dict = {}
    got = nearest_other(X, y, norm="l2", k=2, backend="torch", info=info, device="cpu")
    _check(got, oracle.nearest_other(X, y, p=2, k=2), 2.0, False)
    X32 = X.astype(np.float32)
    got = nearest_other(X32, y, norm="l2", k=2, backend="faiss")
    _check(got, oracle.nearest_other(X32, y, p=2, k=2), 2.0, False)


def test_memory_budget_blocks_are_bounded():
    from sepcheck.engine.backends.torch_backend import block_sizes
    from sepcheck.engine.problem import make_problem

    X = np.zeros((100_000, 3072), dtype=np.uint8)
    X[0, 0] = 1
    y = np.zeros(100_000, dtype=np.int64)
    y[0] = 1
    prob = make_problem(X, y)
    budget = 256 * 2**20
    bq, br = block_sizes(prob, budget, None, 4)
    assert bq * br * 24 + (bq + br) * 3072 * 4 <= budget
    prob3 = make_problem(X, y, k=3)
    bq, br = block_sizes(prob3, budget, None, 8)
    assert bq * br * 48 + (bq + br) * 3072 * 8 <= budget
    assert br < 100_000
