"""The uint8 l1 fine bound of search_simd (floor means of groups of FINE features) against
the brute-force oracle: data made of near-duplicates, so that group sums cross the floor
boundaries and the bound is tight or nearly so, where a wrong slack drops a row that enters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck.engine.kernels.simd import FINE, fine_means, radius_simd, search_simd
from tests import oracle


def _near_duplicates(rng, n, m, d, step):
    """Queries and reference rows that are copies of a few base rows changed by +-1..step on
    a few features: many pairs at small distances, many ties, group sums just across the
    multiples of FINE."""
    base = rng.integers(step, 256 - step, (3, d)).astype(np.int64)

    def rows(count):
        out = base[rng.integers(0, 3, count)].copy()
        for row in out:
            pos = rng.choice(d, min(d, int(rng.integers(0, 9))), replace=False)
            row[pos] += rng.integers(-step, step + 1, pos.size)
        return out.astype(np.uint8)

    return rows(n), rows(m)


@st.composite
def fine_problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d = draw(st.one_of(st.integers(1, 9), st.integers(250, 262), st.integers(1020, 1030)))
    n = draw(st.integers(1, 70))
    m = draw(st.integers(1, 12))
    X, Xq = _near_duplicates(rng, n, m, d, draw(st.sampled_from([1, 2, 5])))
    n_classes = draw(st.integers(1, 3))
    return X, rng.integers(0, n_classes, n), Xq, rng.integers(0, n_classes, m), draw(st.integers(1, 4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fine_problems())
def test_other_label_near_duplicates(prob):
    X, y, Xq, yq, k = prob
    dist, idx, _ = search_simd(Xq, yq, X, y, p=1.0, k=k)
    want_d, want_i = oracle.nearest_other(X, y, Xq, yq, p=1.0, k=k)
    np.testing.assert_array_equal(idx[:, 0], want_i)
    np.testing.assert_array_equal(dist[:, 0], want_d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fine_problems())
def test_by_class_near_duplicates(prob):
    X, y, Xq, _, _ = prob
    classes, codes = np.unique(y, return_inverse=True)
    dist, idx, _ = search_simd(Xq, None, X, y, p=1.0, k=1, slot_of_row=codes.astype(np.int64),
                               n_slots=classes.size)
    want_d, want_i, _ = oracle.class_distances(X, y, Xq, p=1.0)
    np.testing.assert_array_equal(idx[:, :, 0], want_i)
    np.testing.assert_array_equal(dist[:, :, 0], want_d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fine_problems(), st.integers(0, 3))
def test_seed_near_duplicates(prob, shift):
    # a seed from earlier blocks: only rows strictly closer are searched for, the rest of the
    # k places padded with (seed, -1)
    X, y, Xq, yq, k = prob
    D = oracle.pairwise(Xq, X, 1.0)
    other = y[None, :] != yq[:, None]
    seed = np.where(other, D, np.inf).min(axis=1) + shift
    seed[np.isinf(seed)] = 7.0
    dist, idx, _ = search_simd(Xq, yq, X, y, p=1.0, k=k, seed=seed[:, None])
    for i in range(len(Xq)):
        rows = np.flatnonzero(other[i] & (D[i] < seed[i]))
        rows = rows[np.lexsort((rows, D[i, rows]))][:k]
        want_i = np.concatenate([rows, np.full(k - rows.size, -1)])
        want_d = np.concatenate([D[i, rows], np.full(k - rows.size, seed[i])])
        np.testing.assert_array_equal(idx[i, 0], want_i)
        np.testing.assert_array_equal(dist[i, 0], want_d)


@pytest.mark.parametrize("d", [4, 7, 256, 259, 1024, 3072])
def test_fine_bound_exactly_tight(d):
    # every group sum of the query is 4m + 3 and the row's 4m + 4: the floor means differ by
    # one in every group, the group sums by one. The fine bound FINE * SAD - (FINE - 1) x
    # groups equals the distance exactly; an earlier row one further sets the threshold, so a
    # bound one too high would drop the nearest row.
    groups = -(-d // FINE)
    q = np.zeros(d, dtype=np.uint8)
    q[FINE - 1 :: FINE] = 3  # each group sums to 3 (the last, maybe partial, too when it has 4)
    if d % FINE:
        q[groups * FINE - FINE :] = 0
        q[-1] = 3
    near = q.copy()
    near[FINE - 1 :: FINE] = 4
    if d % FINE:
        near[-1] = 4
    far = near.copy()
    far[0] += 1
    X = np.vstack([far, near, near])  # the nearest first found at index 1, its tie at 2 after
    y = np.array([1, 1, 1])
    dist, idx, _ = search_simd(q[None], np.array([0]), X, y, p=1.0, k=2)
    np.testing.assert_array_equal(idx[0, 0], [1, 2])
    np.testing.assert_array_equal(dist[0, 0], [groups, groups])
    # the bound is exactly tight: it is what the kernel sees
    assert FINE * np.abs(fine_means(q[None]).astype(int) - fine_means(near[None])).sum() \
        - (FINE - 1) * groups == groups


def test_radius_near_duplicates():
    rng = np.random.default_rng(4)
    X, _ = _near_duplicates(rng, 150, 1, 301, 2)
    y = rng.integers(0, 3, 150)
    D = oracle.pairwise(X, X, 1.0)
    r = float(np.median(D[D > 0]))
    got: dict[tuple[int, int], float] = {}

    def on_batch(qs, n, rows, cols, values):
        got.update({(int(a), int(b)): float(v) for a, b, v in zip(rows, cols, values, strict=True)})

    radius_simd(X, y, X, y, p=1.0, threshold=r, on_batch=on_batch, max_pairs=10)
    want = {(i, j): D[i, j] for i in range(150) for j in range(150) if y[i] != y[j] and D[i, j] <= r}
    assert got == want


@pytest.mark.parametrize("d", [1, 3, 4, 5, 255, 1021])
def test_fine_means_are_floor_means_padded(d):
    rng = np.random.default_rng(d)
    x = rng.integers(0, 256, (9, d)).astype(np.uint8)
    got = fine_means(x)
    groups = -(-d // FINE)
    assert got.dtype == np.uint8 and got.shape[1] % 256 == 0 and got.shape[1] >= groups
    for g in range(groups):
        want = x[:, g * FINE : (g + 1) * FINE].astype(np.int64).sum(axis=1) // FINE
        np.testing.assert_array_equal(got[:, g], want)
    assert not got[:, groups:].any()


def test_pairs_counters_name_the_fine_bound():
    # random walks along the features: smooth rows, like images
    rng = np.random.default_rng(2)
    X = np.cumsum(rng.integers(-3, 4, (200, 300)), axis=1)
    X = (X - X.min()).clip(0, 255).astype(np.uint8)
    y = rng.integers(0, 2, 200)
    _, _, info = search_simd(X, y, X, y, p=1.0, k=1)
    pairs = info["pairs"]
    assert sum(pairs[key] for key in ("label", "first_bound", "group", "abandoned", "full")) == 200 * 200
    assert pairs["group"] > 0  # the fine bound prunes
    assert math.isfinite(info["extra_bytes"])
