"""Hygiene lists (test-train and cross-label near-duplicates, label-noise candidates) against
a float64 brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import hygiene
from sepcheck.core.errors import SepcheckError

from .oracle import pairwise


def _data(seed, n, m, dtype):
    rng = np.random.default_rng(seed)
    hi = 4 if dtype == np.float64 else 256
    X = rng.integers(0, hi, size=(n, 3)).astype(dtype)  # small grid (float): ties and duplicates
    y = rng.integers(0, 3, size=n)
    y[0], y[1] = 0, 1
    Xt = rng.integers(0, hi, size=(m, 3)).astype(dtype)
    Xt[: m // 2] = X[rng.integers(0, n, size=m // 2)]  # some exact test-train duplicates
    yt = rng.integers(0, 3, size=m)
    return X, y, Xt, yt


def _oracle(X, y, Xt, yt, tau, p, k, scale):
    D = pairwise(X, X, p) / scale
    n = len(y)
    # test-train: nearest of any label, lowest index on ties
    T = pairwise(Xt, X, p) / scale
    tt = []
    for q in range(len(yt)):
        j = int(np.lexsort((np.arange(n), T[q]))[0])
        if T[q, j] <= tau:
            tt.append((T[q, j], q, j, int(yt[q]), int(y[j]), bool(yt[q] == y[j])))
    tt.sort(key=lambda r: (r[0], r[1]))
    cross = sorted((D[i, j], i, j) for i in range(n) for j in range(i + 1, n) if y[i] != y[j] and D[i, j] <= tau)
    # margins and k-NN flags
    margin, flag = np.empty(n), np.zeros(n, dtype=bool)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        d_other = min(D[i, j] for j in others if y[j] != y[i])
        same = [D[i, j] for j in others if y[j] == y[i]]
        margin[i] = d_other - (min(same) if same else math.inf)
        knn = sorted(others, key=lambda j: (D[i, j], j))[: min(k, n - 1)]
        flag[i] = all(y[j] != y[i] for j in knn)
    cand = [i for i in range(n) if margin[i] < 0 or flag[i]]
    cand.sort(key=lambda i: (margin[i], i))
    return tt, cross, margin, cand


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000), n=st.integers(4, 25), m=st.integers(1, 12),
    p=st.sampled_from([math.inf, 2.0, 1.0]), tau=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    k=st.integers(1, 4), uint8=st.booleans(),
)
def test_lists_match_brute_force(seed, n, m, p, tau, k, uint8):
    X, y, Xt, yt = _data(seed, n, m, np.uint8 if uint8 else np.float64)
    scale = 255.0 if uint8 else 1.0
    if uint8:
        tau = tau * 40 / 255  # a radius on the pixel scale that catches some pairs
    rep = hygiene(X, y, Xt, yt, tau=tau, norm=p, k=k, device="cpu")
    tt, cross, margin, cand = _oracle(X, y, Xt, yt, tau, p, k, scale)

    t = rep.test_train
    assert t["test_index"].tolist() == [r[1] for r in tt]
    assert t["train_index"].tolist() == [r[2] for r in tt]
    assert t["train_label"].tolist() == [r[4] for r in tt]
    assert t["same_label"].tolist() == [r[5] for r in tt]
    np.testing.assert_allclose(t["distance"], [r[0] for r in tt], rtol=1e-12)

    c = rep.cross_label
    assert list(zip(c["i"].tolist(), c["j"].tolist(), strict=True)) == [(i, j) for _, i, j in cross]
    np.testing.assert_allclose(c["distance"], [d for d, _, _ in cross], rtol=1e-12)
    assert (c["label_i"] != c["label_j"]).all()

    np.testing.assert_allclose(rep.margin, margin, rtol=1e-12, atol=1e-12)
    assert rep.label_noise["index"].tolist() == cand


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.sampled_from([math.inf, 2.0, 1.0]), uint8=st.booleans())
def test_nearest_other_label_matches_brute_force(seed, p, uint8):
    from sepcheck.analysis.hygiene import nearest_other_label
    from sepcheck.engine import nearest_by_class

    from .oracle import nearest_other

    X, y, Xt, yt = _data(seed, 30, 12, np.uint8 if uint8 else np.float64)
    yt[-1] = 7  # a label the training data lacks: every training row counts
    d, i, classes = nearest_by_class(X, y, Xt, norm=p, device="cpu")
    got_d, got_i = nearest_other_label(d, i, classes, yt)
    want_d, want_i = nearest_other(X, y, Xt, yt, p=p, scale=255.0 if uint8 else 1.0)
    np.testing.assert_array_equal(got_i, want_i[:, 0])
    np.testing.assert_allclose(got_d, want_d[:, 0], rtol=1e-12)


def test_exact_at_tau_and_fraction_within():
    X = np.array([[0.0], [1.0], [3.0]])
    y = np.array([0, 1, 1])
    Xt = np.array([[0.5], [3.0], [10.0]])
    yt = np.array([1, 1, 0])
    rep = hygiene(X, y, Xt, yt, tau=1.0, k=1, device="cpu")
    assert rep.cross_label.to_records() == [{"i": 0, "j": 1, "label_i": 0, "label_j": 1, "distance": 1.0}]
    # test 0 is at 0.5 from rows 0 and 1: the tie goes to row 0 (another label)
    assert [(r["test_index"], r["train_index"], r["same_label"]) for r in rep.test_train.to_records()] == [
        (1, 2, True), (0, 0, False)]
    assert rep.fraction_within(1.0) == pytest.approx(2 / 3)
    assert rep.fraction_within(0.0) == pytest.approx(1 / 3)
    # row 1 is 1 from row 0 (other label) and 2 from row 2 (own): margin -1, the only candidate
    assert rep.label_noise["index"].tolist() == [0, 1] and rep.margin.tolist() == [-math.inf, -1.0, 1.0]


def test_csv_and_json(tmp_path):
    X = np.array([[0.0], [0.0], [5.0], [5.5]])
    y = np.array([0, 1, 0, 1])
    rep = hygiene(X, y, X[:2] + 0.1, y[:2], tau=0.6, device="cpu")
    paths = rep.to_csv(tmp_path)
    assert sorted(p.name for p in paths) == ["cross_label.csv", "label_noise.csv", "test_train.csv"]
    lines = (tmp_path / "cross_label.csv").read_text().splitlines()
    assert lines[0] == "i,j,label_i,label_j,distance"
    assert lines[1:] == ["0,1,0,1,0.0", "2,3,0,1,0.5"]
    d = rep.to_dict(top=1)
    assert d["cross_label_pairs"] == 2 and len(d["cross_label"]["rows"]) == 1
    import json

    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize("tau", [-0.1, math.nan, math.inf, "0.1", None])
def test_bad_tau(tau):
    with pytest.raises(SepcheckError, match="tau"):
        hygiene(np.zeros((2, 1)), [0, 1], tau=tau, device="cpu")


def test_one_class_and_bad_k():
    with pytest.raises(SepcheckError, match="single class"):
        hygiene(np.zeros((3, 1)), [0, 0, 0], tau=0.1, device="cpu")
    with pytest.raises(SepcheckError, match="k=0"):
        hygiene(np.zeros((2, 1)), [0, 1], tau=0.1, k=0, device="cpu")
