"""Separation after dropping the K closest points, against a brute-force oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import LipschitzNNClassifier
from sepcheck.analysis.separation import separation_after_drop
from sepcheck.core.errors import SepcheckError

from .oracle import nearest_other


def _oracle(X, y, k, p):
    d = nearest_other(X, y, p=p)[0][:, 0]
    dropped = np.sort(np.argsort(d, kind="stable")[:k])
    keep = np.setdiff1d(np.arange(len(y)), dropped)
    return float(nearest_other(X[keep], y[keep], p=p)[0][:, 0].min()), dropped


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 30), k=st.integers(0, 4), p=st.sampled_from([math.inf, 2.0]))
def test_drop_matches_the_oracle(seed, n, k, p):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, size=(n, 3)).astype(np.float64)  # small grid: ties and duplicates
    y = rng.integers(0, 3, size=n)
    if np.unique(y).size < 2:
        y[0], y[1] = 0, 1
    want, dropped_want = _oracle(X, y, k, p)
    if np.unique(np.delete(y, dropped_want)).size < 2:
        return
    res, dropped = separation_after_drop(X, y, k, norm=p, device="cpu")
    np.testing.assert_array_equal(dropped, dropped_want)
    assert res.separation == want


def test_classifier_fits_after_drop_when_raw_separation_is_zero():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [3.0, 3.0], [0.2, 0.0]])
    y = np.array([0, 1, 0, 1, 0])
    with pytest.raises(SepcheckError, match="drop"):
        LipschitzNNClassifier(device="cpu").fit(X, y)
    clf = LipschitzNNClassifier(drop=1, device="cpu").fit(X, y)
    assert clf.raw_separation_ == 0 and clf.dropped_.tolist() == [0]
    assert clf.separation_ == pytest.approx(0.2) and clf.r_ == pytest.approx(0.1)
    assert clf.X_train_.shape[0] == 4
