"""separation() and SeparationResult against the oracle; persistence; conflicts; plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import SeparationResult, SepcheckError, separation
from sepcheck.core.hashing import array_digest
from sepcheck.datasets import make_spiral
from sepcheck.runs.cache import cached_separation
from tests import oracle


def _data(seed: int, n: int = 80, d: int = 6, classes: int = 4, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, d)).astype(dtype)
    y = rng.integers(0, classes, n)
    y[:2] = [0, 1]
    return X, y


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["linf", "l2", "l1"]))
def test_distances_match_oracle(seed, norm):
    p = {"linf": math.inf, "l2": 2.0, "l1": 1.0}[norm]
    X, y = _data(seed)
    Xt, yt = _data(seed + 1, n=30)
    res = separation(X, y, Xt, yt, norm=norm, device="cpu")
    od, oi = oracle.nearest_other(X, y, p=p, scale=255.0)
    td, ti = oracle.nearest_other(X, y, Xt, yt, p=p, scale=255.0)
    np.testing.assert_allclose(res.distances, od[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(res.neighbors, oi[:, 0])
    np.testing.assert_allclose(res.test_distances, td[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(res.test_neighbors, ti[:, 0])
    assert res.separation == od.min() and res.r == od.min() / 2
    assert res.test_separation == td.min()


def test_summary_numbers_on_spiral():
    X, y = make_spiral("train")
    res = separation(X, y, norm="l2", dataset="spiral", device="cpu")
    od, _ = oracle.nearest_other(X, y, p=2.0)
    d = od[:, 0]
    np.testing.assert_allclose(res.quantiles([0.1, 0.5]), np.quantile(d, [0.1, 0.5]))
    assert res.robust_separation(0) == pytest.approx(np.sort(d)[0], rel=1e-12)
    assert res.robust_separation(5) == pytest.approx(np.sort(d)[5], rel=1e-12)
    frac, edges = res.histogram(bins=10)
    assert frac.sum() == pytest.approx(1.0) and edges.size == 11
    np.testing.assert_allclose(frac, np.histogram(d, bins=10)[0] / d.size)
    assert res.n == 1000 and res.n_classes == 2 and res.dim == 2 and res.units == "data"
    with pytest.raises(SepcheckError, match="drop"):
        res.robust_separation(1000)
    with pytest.raises(SepcheckError, match="no test set"):
        res.quantiles(test=True)


def test_conflicts_are_all_identical_pairs_with_different_labels():
    X = np.array([[1, 2], [1, 2], [1, 2], [5, 5], [5, 5], [9, 9], [0, 0]], dtype=np.uint8)
    y = np.array([0, 1, 2, 3, 3, 1, 0])
    res = separation(X, y, device="cpu")
    assert res.conflicts.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert res.separation == 0.0
    assert res.summary()["conflict_points"] == 3
    Xt = np.array([[1, 2], [5, 5], [7, 7]], dtype=np.uint8)
    yt = np.array([0, 3, 0])
    res = separation(X, y, Xt, yt, device="cpu")
    assert res.test_conflicts.tolist() == [[0, 1], [0, 2]]
    assert res.summary()["test_conflict_points"] == 1


def test_conflicts_float_negative_zero():
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [3.0, 3.0]])
    y = np.array([0, 1, 1])
    assert separation(X, y, device="cpu").conflicts.tolist() == [[0, 1]]


def test_save_load_roundtrip(tmp_path):
    X, y = _data(3)
    Xt, yt = _data(4, n=20)
    res = separation(X, y, Xt, yt, norm="l2", dataset="toy", device="cpu")
    path = res.save(tmp_path / "r.h5")
    back = SeparationResult.load(path)
    for name in ("distances", "neighbors", "test_distances", "test_neighbors", "conflicts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert (back.norm, back.dataset, back.content_hash, back.units) == ("l2", "toy", res.content_hash, "pixel")
    assert back.n == 80 and back.n_test == 20 and back.version == res.version
    assert not list(tmp_path.glob("*.part"))


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(SepcheckError, match="corrupted"):
        SeparationResult.load(bad)
    with pytest.raises(SepcheckError, match="does not exist"):
        SeparationResult.load(tmp_path / "missing.h5")


def test_cache_reuses_and_keys_on_content(tmp_path):
    X, y = _data(5)
    r1, c1 = cached_separation(X, y, norm="linf", cache=tmp_path, device="cpu")
    r2, c2 = cached_separation(X, y, norm="linf", cache=tmp_path, device="cpu")
    assert (c1, c2) == (False, True)
    np.testing.assert_array_equal(r1.distances, r2.distances)
    X2 = X.copy()
    X2[0, 0] ^= 1
    _, c3 = cached_separation(X2, y, norm="linf", cache=tmp_path, device="cpu")
    _, c4 = cached_separation(X, y, norm="l2", cache=tmp_path, device="cpu")
    _, c5 = cached_separation(X, y, norm="linf", device="cpu")  # no cache given: computed, nothing stored
    assert not c3 and not c4 and not c5
    assert len(list(tmp_path.glob("separation-*.h5"))) == 3
    digest = array_digest(X, y, None, None)
    r6, c6 = cached_separation(X, y, norm="linf", cache=tmp_path, content_hash=digest, device="cpu")
    assert c6 and r6.content_hash == digest  # a given content hash is the same key


def test_plot_draws_min_and_two_eps(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    X, y = make_spiral("train")
    res = separation(X, y, device="cpu")
    ax = res.plot(eps=0.05)
    xs = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert xs == pytest.approx(sorted([res.separation, 0.1]))
    ax.figure.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_real_mnist_two_backends_identical(mnist_test):
    """Real MNIST test set: the compiled kernel (all 10 000 against each other) and the torch
    backend (a sample of rows as queries) give identical per-point linf distances; a float64
    oracle checks a smaller sample independently."""
    from sepcheck import nearest_other

    X, y = mnist_test
    X2 = X.reshape(len(X), -1)
    d_all, i_all = nearest_other(X2, y, norm="linf", backend="numba", device="cpu")
    rows = np.random.default_rng(0).choice(len(X), 300, replace=False)
    d_t, i_t = nearest_other(X2, y, X2[rows], y[rows], norm="linf", backend="torch", device="cpu")
    np.testing.assert_array_equal(d_t, d_all[rows])
    np.testing.assert_array_equal(i_t, i_all[rows])
    few = rows[:40]
    od, oi = oracle.nearest_other(X2, y, X2[few], y[few], p=math.inf, scale=255.0)
    np.testing.assert_array_equal(d_all[few], od)
    np.testing.assert_array_equal(i_all[few], oi)
    assert d_all.min() == pytest.approx(224 / 255)  # separation in raw units is an integer
