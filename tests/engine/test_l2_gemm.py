"""The l2 GEMM candidate path against the oracle on adversarial near-ties, up to 3072
features: rows one unit apart in one feature, duplicated rows with different labels, large
common offsets (cancellation in ||q||^2 + ||r||^2 - 2 q.r). Both groupings; the exact
fallback must run where the GEMM bound cannot separate the rows. No global precision
setting is touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import nearest_other
from sepcheck.engine import nearest_by_class
from sepcheck.engine.backends.torch_backend import float32_matmul_is_exact
from tests import oracle


def _adversarial(rng, dtype: str, d: int, n: int, offset: bool) -> np.ndarray:
    if dtype == "uint8":
        X = np.repeat(rng.integers(0, 256, (1, d)), n, axis=0)
        X[np.arange(n), rng.integers(0, d, n)] += rng.choice([-1, 1], n)  # one unit, one feature
        X = np.clip(X, 0, 255).astype(np.uint8)
    else:
        base = rng.normal(size=(1, d)) * (1000.0 if offset else 1.0)
        X = (base + rng.normal(size=(n, d)) * 1e-3).astype(dtype)
        X[np.arange(n), rng.integers(0, d, n)] += 1e-2  # one feature apart
    X[n // 2 :: 7] = X[1]  # duplicates of row 1, under both labels
    return X


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uint8", "float32", "float64"]),
    st.sampled_from([17, 100, 784, 3072]),
    st.booleans(),
    st.integers(1, 3),
)
def test_near_ties_match_oracle(seed, dtype, d, offset, k):
    rng = np.random.default_rng(seed)
    n = 60
    X = _adversarial(rng, dtype, d, n, offset)
    y = np.arange(n) % 2  # 30 rows per class: more than the candidates kept per slot
    Q = np.concatenate([X[:5], _adversarial(rng, dtype, d, 5, offset)])
    yq = np.arange(Q.shape[0]) % 2
    scale = 255.0 if dtype == "uint8" else 1.0
    info: dict = {}
    got = nearest_other(X, y, Q, yq, norm="l2", k=k, backend="torch", device="cpu", info=info)
    binfo: dict = {}
    got_c = nearest_by_class(X, y, Q, norm="l2", backend="torch", device="cpu", info=binfo)
    want = oracle.nearest_other(X, y, Q, yq, p=2.0, k=k, scale=scale)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=0)
    want_c = oracle.class_distances(X, y, Q, p=2.0, scale=scale)
    np.testing.assert_array_equal(got_c[1], want_c[1])
    np.testing.assert_allclose(got_c[0], want_c[0], rtol=1e-12, atol=0)
    if offset and dtype == "float32":  # the bound cannot separate these rows: fallback ran
        assert info["recomputed"] > 0 and binfo["recomputed"] > 0


def test_large_offset_3072_features_runs_the_exact_fallback():
    rng = np.random.default_rng(8)
    X = _adversarial(rng, "float32", 3072, 60, True)
    y = np.arange(60) % 3
    info: dict = {}
    got = nearest_other(X, y, norm="l2", k=2, backend="torch", device="cpu", info=info)
    want = oracle.nearest_other(X, y, p=2.0, k=2)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=0)
    assert info["recomputed"] > 0


def test_precision_guard_leaves_global_settings_alone():
    """A reduced float32 matmul setting is neither changed nor trusted: the probe decides."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        rng = np.random.default_rng(9)
        X = _adversarial(rng, "float32", 300, 60, False)
        y = np.arange(60) % 2
        got = nearest_other(X, y, norm="l2", backend="torch", device="cpu")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(prev)
    want = oracle.nearest_other(X, y, p=2.0)
    np.testing.assert_array_equal(got[1], want[1])


def test_precision_probe_on_the_cpu():
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        assert float32_matmul_is_exact(torch.device("cpu"))
    finally:
        torch.set_float32_matmul_precision(prev)


@pytest.mark.parametrize("grouping", ["other", "by_class"])
def test_duplicates_across_labels_tie_to_lowest_index(grouping):
    X = np.zeros((40, 3072), dtype=np.float32)
    X[:, 0] = np.arange(40) % 4  # ten copies of each of four rows, labels alternating
    y = np.arange(40) % 2
    if grouping == "other":
        d, i = nearest_other(X, y, norm="l2", k=3, backend="torch", device="cpu")
        want = oracle.nearest_other(X, y, p=2.0, k=3)
    else:
        d, i, _ = nearest_by_class(X, y, X, norm="l2", backend="torch", device="cpu")
        want = oracle.class_distances(X, y, X, p=2.0)[:2]
    np.testing.assert_array_equal(i, want[1])
    np.testing.assert_array_equal(d, want[0])


@pytest.mark.parametrize("budget", [None, 300_000])
@pytest.mark.parametrize("d", [17, 784, 3072])
def test_int8_gemm_path_is_exact(monkeypatch, d, budget):
    """The exact int8 GEMM path (uint8 l2 wherever the device's int8 GEMM passes the probe)
    forced on: near-ties, duplicates across labels and block edges give the oracle's answer,
    both groupings, with the rows shifted once or (small budget) block by block."""
    from sepcheck.engine.backends import torch_backend

    monkeypatch.setattr(torch_backend, "int8_gemm_exact", lambda problem, device: problem.integer)
    # a budget below the data (d = 3072: 184 KB) but above the reference: rows shifted per block
    monkeypatch.setattr("sepcheck.core.validation.MIN_MEMORY_BUDGET", 1)
    monkeypatch.setattr("sepcheck.engine.dispatch.FIXED_TEMPORARIES", 0)
    rng = np.random.default_rng(d)
    X = _adversarial(rng, "uint8", d, 60, False)
    y = rng.integers(0, 3, 60)
    kw = {"backend": "torch", "device": "cpu", "block_size": 23, "memory_budget": budget}
    d_, i_ = nearest_other(X, y, norm="l2", k=2, **kw)
    wd, wi = oracle.nearest_other(X, y, p=2.0, k=2, scale=255.0)
    np.testing.assert_array_equal(i_, wi)
    np.testing.assert_array_equal(d_, wd)
    d_, i_, _ = nearest_by_class(X, y, X[:11], norm="l2", **kw)
    od, oi, _ = oracle.class_distances(X, y, X[:11], p=2.0, scale=255.0)
    np.testing.assert_array_equal(i_, oi)
    np.testing.assert_array_equal(d_, od)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.sampled_from([None, 7, 64]))
def test_uint8_many_exact_ties_match_oracle(seed, k, block):
    """Binary pixels: many rows at equal squared distance, so the k-th value of a block is
    tied; the k best must still be the lowest indices, in every grouping and block size."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (70, 20)).astype(np.uint8)
    y = rng.integers(0, 3, 70)
    got = nearest_other(X, y, norm="l2", k=k, backend="torch", device="cpu", block_size=block)
    want = oracle.nearest_other(X, y, p=2.0, k=k, scale=255.0)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    got_c = nearest_by_class(X, y, X[:9], norm="l2", backend="torch", device="cpu", block_size=block)
    want_c = oracle.class_distances(X, y, X[:9], p=2.0, scale=255.0)
    np.testing.assert_array_equal(got_c[1], want_c[1])
    np.testing.assert_array_equal(got_c[0], want_c[0])
