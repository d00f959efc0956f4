"""Extreme and malformed inputs to the search, its input validation and separation results,
such as overflowing or underflowing values, huge p, integers beyond 2**53, labels that are not
exact integers, bad memory budgets, ragged lists, bad quantile and histogram arguments:
each gives the exact answer or a one-line error, never a silent wrong answer or a raw error.

Expected answers come from scale-safe float64 / integer arithmetic here, never from sepcheck.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sepcheck import nearest_other
from sepcheck.core.errors import SepcheckError
from tests import oracle

BACKENDS = ["numba", "torch", "faiss"]
L2_BACKENDS = ["torch", "faiss"]  # numba computes linf and l1 only


def _search(X, y, backend, **kw):
    if backend == "faiss":
        pytest.importorskip("faiss")
    return nearest_other(X, y, backend=backend, device="cpu", **kw)


@pytest.mark.parametrize("backend", L2_BACKENDS)
def test_l2_overflow_gives_finite_exact_distances(backend):
    X = [[1e200, 0.0], [-1e200, 0.0], [0.0, 1.0]]
    d, i = _search(X, [0, 1, 1], backend, norm="l2", raw=True)
    assert i[0, 0] == 2
    assert math.isclose(d[0, 0], math.hypot(1e200, 1.0), rel_tol=1e-12)


@pytest.mark.parametrize("backend", L2_BACKENDS)
def test_l2_underflow_keeps_tiny_distances(backend):
    X = [[1e-200, 0.0], [0.0, 0.0]]
    d, _ = _search(X, [0, 1], backend, norm="l2", raw=True)
    assert math.isclose(d[0, 0], 1e-200, rel_tol=1e-12)


@pytest.mark.parametrize("backend", ["torch"])
def test_huge_p_is_the_max_norm_not_zero(backend):
    rng = np.random.default_rng(0)
    X = rng.random((6, 3))
    y = np.arange(6) % 2
    d, _ = _search(X, y, backend, norm=1e300, raw=True)
    expected = [min(np.abs(X[i] - X[j]).max() for j in range(6) if y[j] != y[i]) for i in range(6)]
    np.testing.assert_allclose(d[:, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int64_beyond_2_53_is_exact_or_refused(backend):
    X = np.array([[2**53], [2**53 + 1]], dtype=np.int64)
    try:
        d, _ = _search(X, [0, 1], backend, norm="linf", raw=True)
    except SepcheckError:
        return
    assert d[0, 0] == 1.0  # not a conflict at distance 0


def test_huge_float_labels_stay_distinct_or_are_refused():
    try:
        d, _ = _search([[0.0], [1.0]], [1e20, 2e20], "numba", raw=True)
    except SepcheckError:
        return
    np.testing.assert_array_equal(d[:, 0], [1.0, 1.0])


@pytest.mark.parametrize("labels", [[0.5, 1.5], [float("nan"), 1.0]], ids=["fractional", "nan"])
def test_non_integer_labels_are_refused(labels):
    with pytest.raises(SepcheckError, match="label"):
        _search([[0.0], [1.0]], labels, "numba")


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), "lots", "1 XB", 1, True, 2**20])
def test_invalid_memory_budgets_are_one_line_errors(budget):
    with pytest.raises(SepcheckError, match="memory_budget"):
        _search([[0.0], [1.0]], [0, 1], "numba", memory_budget=budget)


@pytest.mark.parametrize("budget", ["512MiB", "1GB", "2 GiB", 64 * 2**20])
def test_memory_budget_accepts_unit_strings(budget):
    d, _ = _search([[0.0], [1.0]], [0, 1], "numba", memory_budget=budget, raw=True)
    np.testing.assert_array_equal(d[:, 0], [1.0, 1.0])


def test_ragged_lists_are_one_line_errors():
    with pytest.raises(SepcheckError):
        _search([[0.0, 1.0], [1.0]], [0, 1], "numba")


@pytest.mark.parametrize("norm", ["linf", "l1", 3.0])
def test_overflowing_linf_l1_lp_give_finite_exact_distances(norm):
    X = [[1e307, 0.0], [-1e307, 0.0], [0.0, 0.5e307]]
    d, i = _search(X, [0, 1, 1], "torch", norm=norm, raw=True)
    assert i[0, 0] == 2
    p = {"linf": math.inf, "l1": 1.0}.get(norm, norm)
    expected = 1e307 if math.isinf(p) else 1e307 * (1 + 0.5**p) ** (1 / p)
    assert math.isclose(d[0, 0], expected, rel_tol=1e-12)


def test_p_between_the_limit_and_linf_is_refused():
    with pytest.raises(SepcheckError, match="linf"):
        _search([[0.0, 0.5], [1.0, 0.25]], [0, 1], "torch", norm=1000.0)


@pytest.mark.parametrize("labels", [np.array([0, 2**64 - 1], dtype=np.uint64), [0.0, 2.0**60]])
def test_labels_beyond_int64_or_float64_are_refused(labels):
    with pytest.raises(SepcheckError, match="label"):
        _search([[0.0], [1.0]], labels, "numba")


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_faiss_indexes_the_reference_in_chunks_within_the_budget(norm):
    """16 MiB holds about 550 uint8 rows of 3 072 features (float32 copies): 1 200 rows are
    indexed in three chunks, and the answer is still exact."""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (1200, 3072), dtype=np.uint8)
    y = rng.integers(0, 3, 1200)
    Q, yq = X[:40], y[:40]
    p = 2.0 if norm == "l2" else 1.0
    d, i = _search(X, y, "faiss", queries=Q, query_labels=yq, norm=norm, k=2,
                   memory_budget="16MiB", raw=True)
    d0, i0 = oracle.nearest_other(X, y, Q, yq, p=p, k=2)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12)


def test_quantiles_and_histogram_arguments_are_one_line_errors():
    from sepcheck import separation

    res = separation([[0.0], [1.0], [3.0]], [0, 1, 0], device="cpu")
    for call in (lambda: res.quantiles([2]), lambda: res.quantiles([float("nan")]),
                 lambda: res.histogram(bins=0), lambda: res.histogram(range=(2.0, 1.0))):
        with pytest.raises(SepcheckError) as err:
            call()
        assert "\n" not in str(err.value)


def test_read_only_input_gives_no_torch_warning():
    import warnings

    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    X.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d, _ = _search(X, np.arange(20) % 2, "torch", norm="l2", raw=True)
    assert np.isfinite(d).all()


def test_numba_copy_beyond_an_explicit_budget_is_refused_or_avoided():
    X = np.zeros((6000, 3072), dtype=np.uint8)  # 17.6 MiB: its linf copy exceeds 16 MiB
    X[:, 0] = np.arange(6000) % 200
    y = np.arange(6000) % 2
    with pytest.raises(SepcheckError, match="memory_budget"):
        _search(X, y, "numba", memory_budget="16MiB")
    info = {}
    d, _ = _search(X, y, "auto", queries=X[:3], query_labels=y[:3], memory_budget="16MiB",
                   info=info, raw=True)
    assert info["backend"] == "torch"
    np.testing.assert_array_equal(d[:, 0], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("backend", L2_BACKENDS)
@pytest.mark.parametrize("value", [3e38, 1e-42], ids=["float32-max", "float32-subnormal"])
def test_float32_extremes_give_exact_l2(backend, value):
    X = np.array([[value, 0.0], [-value, 0.0], [0.0, value / 2]], dtype=np.float32)
    d, i = _search(X, [0, 1, 1], backend, norm="l2", raw=True)
    v = float(X[0, 0])
    assert i[0, 0] == 2
    assert math.isclose(d[0, 0], math.hypot(v, float(X[2, 1])), rel_tol=1e-12)
