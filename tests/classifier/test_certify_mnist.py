"""Certification on real data: the real MNIST test set split as its first 8 000 images
(train) and last 2 000 (test), certified at linf eps 0.1, 0.3 and l2 eps 1.0, 2.0, every
number compared with an independent brute force in plain numpy (skipped without MNIST).

The oracle is exact: linf as a uint8 max of |a - b| (computed as max(a, b) - min(a, b)),
l2 as integer squared distances from a float64 GEMM (integers below 2**53: exact). Per
norm it is computed once (module fixtures), row by row or in row blocks (bounded memory).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sepcheck.classifier import LipschitzNNClassifier

pytestmark = pytest.mark.slow

N_TRAIN = 8000
EPS = {"linf": (0.1, 0.3), "l2": (1.0, 2.0)}


@pytest.fixture(scope="module")
def split(mnist_test):
    X, y = mnist_test
    X = np.ascontiguousarray(X.reshape(len(X), -1))
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def _linf_rows(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.maximum(A, b) - np.minimum(A, b)).max(axis=1)  # uint8, exact


def _oracle_linf(A, ya, B):
    """(test-train distances (m, n) in raw units, train separation in raw units).

    The separation scans the pairs i < j; a pair is skipped only when a lower bound (the
    max over 64 high-variance pixels) already reaches the smallest distance found so far,
    so the minimum is exact."""
    D = np.empty((len(B), len(A)), dtype=np.uint8)
    for i in range(len(B)):
        D[i] = _linf_rows(A, B[i])
    sub = np.ascontiguousarray(A[:, np.argsort(-A.var(axis=0))[:64]])
    sep = 256
    for i in range(len(A) - 1):
        rows = np.flatnonzero(ya[i + 1 :] != ya[i]) + i + 1
        low = _linf_rows(sub[rows], sub[i])
        rows = rows[low < sep]
        if rows.size:
            sep = min(sep, int(_linf_rows(A[rows], A[i]).min()))
    return D.astype(np.float64), float(sep)


def _oracle_l2(A, ya, B):
    A64 = A.astype(np.float64)
    B64 = B.astype(np.float64)
    sqA = (A64 * A64).sum(axis=1)
    sqB = (B64 * B64).sum(axis=1)
    T = sqB[:, None] + sqA[None, :] - 2.0 * (B64 @ A64.T)  # exact integers
    sep2 = np.inf
    for s in range(0, len(A), 1000):
        S = sqA[s : s + 1000, None] + sqA[None, :] - 2.0 * (A64[s : s + 1000] @ A64.T)
        S[ya[s : s + 1000, None] == ya[None, :]] = np.inf
        sep2 = min(sep2, float(S.min()))
    return np.sqrt(T), math.sqrt(sep2)


@pytest.fixture(scope="module")
def oracle(split):
    cache: dict = {}

    def get(norm: str):
        if norm not in cache:
            A, ya, B, yb = split
            D, sep = (_oracle_linf if norm == "linf" else _oracle_l2)(A, ya, B)
            cache[norm] = _expected(D / 255.0, sep / 255.0, ya, yb)
        return cache[norm]

    return get


def _expected(D, sep, ya, yb):
    classes = np.unique(ya)
    by_class = np.empty((len(D), classes.size))
    by_index = np.empty((len(D), classes.size), dtype=np.int64)
    for c, lab in enumerate(classes):
        cols = np.flatnonzero(ya == lab)
        j = D[:, cols].argmin(axis=1)  # first minimum: lowest index
        by_class[:, c] = D[np.arange(len(D)), cols[j]]
        by_index[:, c] = cols[j]
    pred = ya[D.argmin(axis=1)]  # the 1-NN with the lowest index
    own = np.where(ya[None, :] == pred[:, None], D, np.inf).min(axis=1)
    other = np.where(ya[None, :] != pred[:, None], D, np.inf).min(axis=1)
    true = by_class[np.arange(len(D)), np.searchsorted(classes, yb)]
    return {
        "sep": sep,
        "by_class": by_class,
        "by_index": by_index,
        "pred": pred,
        "radius": (other - own) / 2.0,
        "true": true,
        "correct": pred == yb,
    }


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_mnist_certify_matches_brute_force(split, oracle, norm, device):
    A, ya, B, yb = split
    clf = LipschitzNNClassifier(device=device, norm=norm).fit(A, ya)
    res = clf.certify(B, yb, EPS[norm])
    d, idx = clf.class_distances(B)
    want = oracle(norm)
    if norm == "linf":  # integer arithmetic: bit-exact
        assert clf.separation_ == want["sep"]
        np.testing.assert_array_equal(d, want["by_class"])
        np.testing.assert_array_equal(res.radius, want["radius"])
        np.testing.assert_array_equal(res.d_true, want["true"])
    else:
        assert clf.separation_ == pytest.approx(want["sep"], rel=1e-12)
        np.testing.assert_allclose(d, want["by_class"], rtol=1e-12)
        np.testing.assert_allclose(res.radius, want["radius"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.d_true, want["true"], rtol=1e-12)
    assert clf.r_ == clf.separation_ / 2
    np.testing.assert_array_equal(idx, want["by_index"])
    np.testing.assert_array_equal(res.predictions, want["pred"])
    np.testing.assert_array_equal(res.correct, want["correct"])
    assert res.accuracy == want["correct"].mean()
    r = want["sep"] / 2
    assert res.within_r == (want["true"] <= r).mean()
    for e in EPS[norm]:
        assert res.certified_accuracy[e] == (want["correct"] & (want["radius"] > e)).mean()
    assert res.certified_accuracy[EPS[norm][1]] <= res.certified_accuracy[EPS[norm][0]] <= res.accuracy
