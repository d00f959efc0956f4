"""search_simd (the vectorised linf / l1 kernel) against the brute-force oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck.core.errors import SepcheckError
from sepcheck.engine.kernels.simd import search_simd
from tests import oracle

NORMS = [math.inf, 1.0]
DTYPES = [np.uint8, np.float32, np.float64]


def _data(draw, n, m, d, dtype, high):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.integers(0, high + 1, (n, d)).astype(dtype)
    if n > 1 and draw(st.booleans()):  # duplicated rows: exact ties
        X[rng.integers(0, n, n // 2)] = X[rng.integers(0, n, n // 2)]
    Xq = rng.integers(0, high + 1, (m, d)).astype(dtype)
    if draw(st.booleans()):  # queries equal to reference rows
        Xq[: min(m, n)] = X[: min(m, n)]
    n_classes = draw(st.integers(1, 4))
    return X, rng.integers(0, n_classes, n), Xq, rng.integers(0, n_classes, m)


@st.composite
def problems(draw):
    d = draw(st.one_of(st.integers(1, 80), st.integers(250, 300), st.just(3072)))
    n = draw(st.integers(1, 90 if d <= 300 else 12))
    m = draw(st.integers(1, 20 if d <= 300 else 3))
    dtype = draw(st.sampled_from(DTYPES))
    high = draw(st.sampled_from([1, 3, 255]))  # small ranges: many equal distances
    return (*_data(draw, n, m, d, dtype, high), draw(st.sampled_from(NORMS)), draw(st.integers(1, 4)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_other_label_matches_oracle(prob):
    X, y, Xq, yq, p, k = prob
    dist, idx, _ = search_simd(Xq, yq, X, y, p=p, k=k)
    want_d, want_i = oracle.nearest_other(X, y, Xq, yq, p=p, k=k)
    assert dist.shape == (len(Xq), 1, k)
    np.testing.assert_array_equal(idx[:, 0], want_i)
    np.testing.assert_array_equal(dist[:, 0], want_d)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2))
def test_by_class_matches_oracle(prob, extra_slots):
    X, y, Xq, _, p, _ = prob
    classes, codes = np.unique(y, return_inverse=True)
    S = classes.size + extra_slots
    dist, idx, _ = search_simd(Xq, None, X, y, p=p, k=1, slot_of_row=codes.astype(np.int64), n_slots=S)
    want_d, want_i, _ = oracle.class_distances(X, y, Xq, p=p)
    np.testing.assert_array_equal(idx[:, : classes.size, 0], want_i)
    np.testing.assert_array_equal(dist[:, : classes.size, 0], want_d)
    # slots without rows: +inf / -1
    assert np.all(np.isinf(dist[:, classes.size :])) and np.all(idx[:, classes.size :] == -1)


@pytest.mark.parametrize("p", NORMS)
def test_self_search(p):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (150, 3 * 17)).astype(np.uint8)
    y = rng.integers(0, 3, 150)
    dist, idx, _ = search_simd(X, y, X, y, p=p, k=2)
    want_d, want_i = oracle.nearest_other(X, y, p=p, k=2)
    np.testing.assert_array_equal(idx[:, 0], want_i)
    np.testing.assert_array_equal(dist[:, 0], want_d)
    # by class: a query's own class is at distance 0 (its own row, lowest index on ties)
    d2, i2, _ = search_simd(X, None, X, y, p=p, k=1, slot_of_row=y, n_slots=3)
    assert np.all(d2[np.arange(150), y, 0] == 0)
    assert np.all(i2[np.arange(150), y, 0] <= np.arange(150))


def test_float_l1_continuous_values():
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((120, 333)).astype(dtype)
        Xq = rng.standard_normal((15, 333)).astype(dtype)
        y, yq = rng.integers(0, 3, 120), rng.integers(0, 3, 15)
        dist, idx, _ = search_simd(Xq, yq, X, y, p=1.0, k=3)
        want_d, want_i = oracle.nearest_other(X, y, Xq, yq, p=1.0, k=3)
        np.testing.assert_array_equal(idx[:, 0], want_i)
        np.testing.assert_allclose(dist[:, 0], want_d, rtol=1e-12)


def test_fewer_rows_than_k_are_padded():
    X = np.array([[0], [5], [9]], dtype=np.uint8)
    dist, idx, _ = search_simd(X, np.array([0, 0, 1]), X, np.array([0, 0, 1]), p=math.inf, k=3)
    np.testing.assert_array_equal(idx[0, 0], [2, -1, -1])
    np.testing.assert_array_equal(dist[0, 0], [9, np.inf, np.inf])
    np.testing.assert_array_equal(idx[2, 0], [1, 0, -1])


@pytest.mark.parametrize("p", NORMS)
def test_real_mnist_rows(mnist_test, p):
    X, y = mnist_test
    X = np.ascontiguousarray(X[:400].reshape(400, -1))
    y = np.asarray(y[:400], dtype=np.int64)
    dist, idx, _ = search_simd(X[:60], y[:60], X, y, p=p, k=2)
    want_d, want_i = oracle.nearest_other(X, y, X[:60], y[:60], p=p, k=2)
    np.testing.assert_array_equal(idx[:, 0], want_i)
    np.testing.assert_array_equal(dist[:, 0], want_d)
    d2, i2, _ = search_simd(X[:60], None, X, y, p=p, k=1, slot_of_row=y, n_slots=10)
    cd, ci, _ = oracle.class_distances(X, y, X[:60], p=p)
    np.testing.assert_array_equal(i2[:, :, 0], ci)
    np.testing.assert_array_equal(d2[:, :, 0], cd)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"p": 2.0}, "p=inf or p=1"),
        ({"k": 0}, "positive integer"),
        ({"queries": np.zeros((2, 4), dtype=np.float32)}, "same dtype"),
        ({"queries": np.zeros((2, 5), dtype=np.uint8)}, "same features"),
        ({"queries": np.zeros((2, 4), dtype=np.int32)}, "convert it"),
        ({"slot_of_row": np.array([0, 5, 0]), "n_slots": 2}, "0..1"),
    ],
)
def test_bad_input_is_one_line_error(change, message):
    args = {"queries": np.zeros((2, 4), dtype=np.uint8), "query_labels": np.zeros(2, dtype=np.int64),
            "reference": np.zeros((3, 4), dtype=np.uint8), "reference_labels": np.array([0, 1, 1]),
            "p": math.inf, "k": 1}
    args.update(change)
    with pytest.raises(SepcheckError, match=message) as err:
        search_simd(args.pop("queries"), args.pop("query_labels"), args.pop("reference"),
                    args.pop("reference_labels"), **args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("p", NORMS)
def test_many_queries_across_batches(p):
    # more queries than one kernel call takes, more rows than one row block
    rng = np.random.default_rng(11)
    X = rng.integers(0, 8, (70, 9)).astype(np.uint8)
    Xq = rng.integers(0, 8, (1100, 9)).astype(np.uint8)
    y, yq = rng.integers(0, 2, 70), rng.integers(0, 2, 1100)
    dist, idx, _ = search_simd(Xq, yq, X, y, p=p, k=2)
    want_d, want_i = oracle.nearest_other(X, y, Xq, yq, p=p, k=2)
    np.testing.assert_array_equal(idx[:, 0], want_i)
    np.testing.assert_array_equal(dist[:, 0], want_d)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([600, 3072]), st.integers(1, 2))
def test_l1_ties_where_every_bound_is_zero(seed, d, k):
    # each row differs from the query by +a/-a on neighbouring features of one group: every
    # group sum equals the query's, so the group bounds are 0 and only the chunked scan (with
    # early abandon) decides; a few distinct totals give many exact ties, spread over chunks
    rng = np.random.default_rng(seed)
    n = 24
    q = np.full(d, 128, dtype=np.uint8)
    X = np.tile(q, (n, 1))
    for row in X:
        total = int(rng.choice([40, 60, 80]))
        pos = rng.choice(d // 2, total // 20, replace=False) * 2
        row[pos] += 10
        row[pos + 1] -= 10
    y = rng.integers(0, 2, n)
    Xq, yq = np.vstack([q, X[:3]]), np.array([0, 1, 0, 1])
    dist, idx, _ = search_simd(Xq, yq, X, y, p=1.0, k=k)
    want_d, want_i = oracle.nearest_other(X, y, Xq, yq, p=1.0, k=k)
    np.testing.assert_array_equal(idx[:, 0], want_i)
    np.testing.assert_array_equal(dist[:, 0], want_d)
