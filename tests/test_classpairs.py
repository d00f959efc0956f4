"""class_pair_separation against a brute force over every pair of points."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError, class_pair_separation
from tests import oracle

NORMS = {"linf": math.inf, "l1": 1.0, "l2": 2.0}


def _brute(X, y, p, scale):
    D = oracle.pairwise(X, X, p) / scale
    classes = np.unique(y)
    C = classes.size
    dist = np.full((C, C), np.nan)
    pairs = np.full((C, C, 2), -1)
    for a in range(C):
        for b in range(C):
            if a == b:
                continue
            ra, rb = np.flatnonzero(y == classes[a]), np.flatnonzero(y == classes[b])
            sub = D[np.ix_(ra, rb)]
            best = sub.min()
            i, j = np.argwhere(sub == best)[0]  # row-major: lowest (a-row, b-row)
            dist[a, b], pairs[a, b] = best, (ra[i], rb[j])
    return classes, dist, pairs


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uint8", "float64"]),
    st.sampled_from(list(NORMS)),
    st.integers(2, 5),
)
def test_matches_brute_force(seed, dtype, norm, n_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(n_classes, 40))
    X = rng.integers(0, 3, (n, 4))  # coarse: many ties
    X = X.astype(np.uint8) if dtype == "uint8" else X * 0.5
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)]) * 3
    scale = 255.0 if dtype == "uint8" else 1.0
    classes, dist, pairs = _brute(X, y, NORMS[norm], scale)
    got = class_pair_separation(X, y, norm=norm, backend="torch" if norm == "l2" else "auto", device="cpu")
    np.testing.assert_array_equal(got.classes, classes)
    np.testing.assert_array_equal(got.distances, dist)  # NaN diagonal included
    np.testing.assert_array_equal(got.pairs, pairs)
    np.testing.assert_array_equal(got.distances, got.distances.T)


def test_to_dict_and_closest():
    X = np.array([[0.0], [1.0], [5.0], [5.5], [9.0]])
    y = np.array([2, 0, 1, 0, 1])
    got = class_pair_separation(X, y, norm="l2", device="cpu")
    d = json.loads(json.dumps(got.to_dict()))
    assert d["classes"] == [0, 1, 2] and d["distances"][0][0] is None
    assert d["distances"][0][1] == 0.5 and d["pairs"][0][1] == [3, 2]
    assert d["distances"][1][2] == 5.0 and d["units"] == "data" and d["norm"] == "l2"
    assert got.closest() == (0, 1, 0.5)


def test_one_class_is_a_one_line_error():
    with pytest.raises(SepcheckError, match="single class") as e:
        class_pair_separation(np.zeros((3, 2)), [1, 1, 1], device="cpu")
    assert "\n" not in str(e.value)
