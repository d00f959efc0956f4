"""LipschitzNNClassifier against an independent float64 brute force (tests/oracle.py):
scores, predictions, tie-breaking, certified radii, certified accuracy, the Lipschitz
property, the torch forward, parameters, errors and the separation cache."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError
from sepcheck.classifier import LipschitzNNClassifier, NotFittedError, TheoremWarning
from sepcheck.datasets import make_spiral
from tests import oracle

P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


pytestmark = pytest.mark.usefixtures("one_thread")


def brute(X, y, Xq, yq, p, scale, r=None):
    """Everything the classifier reports, from the full float64 distance matrices."""
    X2 = np.asarray(X).reshape(len(X), -1)
    Xq2 = np.asarray(Xq).reshape(len(Xq), -1)
    y = np.asarray(y)
    classes = np.unique(y)
    Dtrain = oracle.pairwise(X2, X2, p) / scale
    sep = Dtrain[y[:, None] != y[None, :]].min()
    r = sep / 2 if r is None else r
    D = oracle.pairwise(Xq2, X2, p) / scale
    nn = D.argmin(axis=1)  # first minimum: the lowest training index
    pred = y[nn]
    by_class = np.stack([D[:, y == c].min(axis=1) for c in classes], axis=1)
    own = np.where(y[None, :] == pred[:, None], D, np.inf).min(axis=1)
    other = np.where(y[None, :] != pred[:, None], D, np.inf).min(axis=1)
    true = np.array([D[i, y == yq[i]].min() if np.any(y == yq[i]) else np.inf for i in range(len(yq))])
    return {
        "separation": sep,
        "r": r,
        "scores": 1.0 - by_class / r,
        "pred": pred,
        "radius": (other - own) / 2,
        "own": own,
        "other": other,
        "true": true,
        "correct": pred == yq,
    }


@st.composite
def datasets(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from(["uint8", "float64", "float32"]))
    norm = draw(st.sampled_from(list(P)))
    n = draw(st.integers(4, 50))
    d = draw(st.integers(1, 8))
    k = draw(st.integers(2, 6))
    coarse = draw(st.booleans())  # grids: ties in distance between classes
    if dtype == "uint8":
        X = rng.integers(0, 6 if coarse else 256, (n, d)).astype(np.uint8)
        m = draw(st.integers(1, 25))
        Xq = rng.integers(0, 6 if coarse else 256, (m, d)).astype(np.uint8)
    else:
        def draw_x(rows):
            return (rng.integers(-3, 4, (rows, d)) * 0.5 if coarse else rng.normal(size=(rows, d))).astype(dtype)

        X = draw_x(n)
        m = draw(st.integers(1, 25))
        Xq = draw_x(m)
    y = rng.integers(0, k, n) * 2 + 1
    y[:2] = [1, 3]
    # make the training set separated (no identical rows with different labels)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        same = np.all(X[:i] == X[i], axis=1) & keep[:i]
        if np.any(same & (y[:i] != y[i])):
            keep[i] = False
    X, y = X[keep], y[keep]
    assume(np.unique(y).size >= 2)
    yq = rng.integers(0, k + 1, m) * 2 + 1  # one label that may be absent from training
    return X, y, Xq, yq, norm, dtype


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(datasets(), st.sampled_from(["auto", "torch"]))
def test_matches_brute_force(device, case, backend):
    X, y, Xq, yq, norm, dtype = case
    p = P[norm]
    scale = 255.0 if dtype == "uint8" else 1.0
    clf = LipschitzNNClassifier(device=device, norm=norm, backend=backend).fit(X, y)
    want = brute(X, y, Xq, yq, p, scale)
    exact = dtype == "uint8" and norm != "l2"
    cmp = np.testing.assert_array_equal if exact else lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    cmp(clf.separation_, want["separation"])
    cmp(clf.r_, want["r"])
    assert clf.lipschitz_constant_ == 1.0 / clf.r_
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    cmp(clf.decision_function(Xq), want["scores"])
    np.testing.assert_array_equal(clf.predict(Xq), want["pred"])
    cmp(clf.certified_radius(Xq), want["radius"])
    eps = sorted({0.0, float(np.median(want["radius"])), float(want["radius"].max()), clf.r_ / 3})
    if not exact:  # rounded radii: keep eps off the radii (exact data tests eps == radius)
        eps = [e * (1 + 1e-7) for e in eps]
    res = clf.certify(Xq, yq, eps)
    assert res.accuracy == np.mean(want["correct"])
    for e in eps:  # eps equal to a radius: strict >, so that point is not certified
        assert res.certified_accuracy[e] == np.mean(want["correct"] & (want["radius"] > e))
    assert res.within_r == np.mean(want["true"] <= want["r"])
    np.testing.assert_array_equal(res.predictions, want["pred"])
    np.testing.assert_array_equal(res.correct, want["correct"])
    cmp(res.radius, want["radius"])
    cmp(res.d_own, want["own"])
    cmp(res.d_other, want["other"])
    cmp(res.d_true, want["true"])


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_spiral_matches_brute_force(norm, device):
    X, y = make_spiral("train")
    Xt, yt = make_spiral("test")
    Xt, yt = Xt[::5], yt[::5]
    clf = LipschitzNNClassifier(device=device, norm=norm).fit(X, y)
    want = brute(X, y, Xt, yt, P[norm], 1.0)
    assert clf.r_ == pytest.approx(want["r"], rel=1e-12)
    np.testing.assert_allclose(clf.decision_function(Xt), want["scores"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(Xt), want["pred"])
    eps = [0.0, 0.01, 0.03, clf.r_ / 2, clf.r_]
    res = clf.certify(Xt, yt, eps)
    np.testing.assert_allclose(res.radius, want["radius"], rtol=1e-12, atol=1e-15)
    assert res.accuracy == np.mean(want["correct"])
    for e in eps:
        assert res.certified_accuracy[e] == np.mean(want["correct"] & (want["radius"] > e))
    assert res.within_r == np.mean(want["true"] <= want["r"])
    d = res.to_dict()
    assert d["r"] == clf.r_ and len(d["rows"]) == len(eps) and d["norm"] == norm


def test_ties_go_to_the_lowest_training_index(device):
    # query 0 is at distance 1 from row 0 (class 5) and row 1 (class 2): the class of the
    # lowest index wins, although class 2 comes first among the score columns
    X = np.array([[1.0], [-1.0], [4.0], [-4.0]])
    y = np.array([5, 2, 5, 2])
    clf = LipschitzNNClassifier(device=device, norm="l2").fit(X, y)
    Xq = np.array([[0.0], [0.25], [-0.25]])
    s = clf.decision_function(Xq)
    assert s[0, 0] == s[0, 1]
    assert clf.predict(Xq).tolist() == [5, 5, 2]
    assert clf.certified_radius(Xq).tolist() == [0.0, 0.25, 0.25]
    res = clf.certify(Xq, [5, 5, 2], eps=0.0)
    assert res.certified_accuracy[0.0] == pytest.approx(2 / 3)  # the tie is not certified
    assert res.accuracy == 1.0


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_lipschitz_property(norm, device):
    """|f_i(x) - f_i(x')| <= ||x - x'|| / r on many random pairs (far and near)."""
    p = P[norm]
    rng = np.random.default_rng(11)
    X, y = make_spiral("train")
    for clip in (False, True):
        clf = LipschitzNNClassifier(device=device, norm=norm, clip=clip).fit(X, y)
        a = rng.uniform(-1.2, 1.2, (1500, 2))
        b = np.concatenate([rng.uniform(-1.2, 1.2, (500, 2)), a[500:] + rng.normal(size=(1000, 2)) * clf.r_])
        fa, fb = clf.decision_function(a), clf.decision_function(b)
        dist = np.array([oracle.pairwise(a[i : i + 1], b[i : i + 1], p)[0, 0] for i in range(len(a))])
        assert np.all(np.abs(fa - fb) <= dist[:, None] / clf.r_ + 1e-9)
        # and the bound is nearly attained: the constant is not loose
        assert np.max(np.abs(fa - fb)[:, 0] / np.maximum(dist, 1e-12)) > 0.9 / clf.r_
    # uint8 images on the pixel scale
    Xu = rng.integers(0, 256, (60, 12)).astype(np.uint8)
    yu = rng.integers(0, 3, 60)
    clf = LipschitzNNClassifier(device=device, norm=norm).fit(Xu, yu)
    a = rng.integers(0, 256, (300, 12)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    dist = np.array([oracle.pairwise(a[i : i + 1], b[i : i + 1], p)[0, 0] for i in range(len(a))]) / 255.0
    diff = np.abs(clf.decision_function(a) - clf.decision_function(b))
    assert np.all(diff <= dist[:, None] / clf.r_ + 1e-9)


def test_user_r_clip_and_warning():
    X, y = make_spiral("train")
    Xt, _ = make_spiral("test")
    auto = LipschitzNNClassifier(device="cpu").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = LipschitzNNClassifier(device="cpu", r=auto.r_ / 2).fit(X, y)  # no warning
    assert small.r_ == auto.r_ / 2 and small.separation_ == auto.separation_
    with pytest.warns(TheoremWarning, match="guarantee no longer holds"):
        big = LipschitzNNClassifier(device="cpu", r=1.0).fit(X, y)
    d, _ = auto.class_distances(Xt)
    np.testing.assert_allclose(big.decision_function(Xt), 1.0 - d, rtol=1e-15)
    clipped = LipschitzNNClassifier(device="cpu", clip=True).fit(X, y)
    s = clipped.decision_function(Xt)
    np.testing.assert_array_equal(s, np.maximum(0.0, 1.0 - d / auto.r_))
    assert s.min() == 0.0
    np.testing.assert_array_equal(clipped.predict(Xt), auto.predict(Xt))  # argmax of unclipped


def test_conflicting_duplicates():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1])
    with pytest.raises(SepcheckError, match="separation 0") as exc:
        LipschitzNNClassifier(device="cpu").fit(X, y)
    assert "\n" not in str(exc.value)
    with pytest.warns(TheoremWarning):
        clf = LipschitzNNClassifier(device="cpu", r=0.5).fit(X, y)
    assert clf.separation_ == 0.0 and clf.predict([[0.0, 0.0]]).tolist() == [0]


def test_sklearn_protocol_and_errors():
    from sklearn.base import clone

    clf = LipschitzNNClassifier(norm="l2", r=0.1, clip=True, backend="torch")
    assert clf.get_params() == {"norm": "l2", "r": 0.1, "clip": True, "drop": 0, "backend": "torch"}
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf
    assert clf.set_params(r="auto", device="cpu") is clf and clf.r == "auto"
    assert not hasattr(clf, "r_")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        clf.predict([[0.0, 0.0]])
    assert issubclass(NotFittedError, SepcheckError)
    with pytest.raises(SepcheckError, match="unknown option 'bakend'"):
        LipschitzNNClassifier(bakend="torch")
    X, y = make_spiral("train")
    for bad, msg in [
        ({"r": -1}, "r=-1"),
        ({"r": "big"}, "r='big'"),
        ({"r": math.inf}, "r=inf"),
        ({"norm": "lx"}, "unknown norm"),
        ({"backend": "faiss"}, "not supported"),
        ({"clip": "yes"}, "clip="),
    ]:
        with pytest.raises(SepcheckError, match=msg):
            LipschitzNNClassifier(device="cpu", **bad).fit(X, y)
    with pytest.raises(SepcheckError, match="single class"):
        LipschitzNNClassifier(device="cpu").fit(X, np.zeros(len(X)))
    clf = LipschitzNNClassifier(device="cpu").fit(X, y)
    with pytest.raises(SepcheckError, match="3 features per row but the classifier was fitted on 2"):
        clf.predict(np.zeros((2, 3)))
    for eps in (-0.1, "x", [], [0.1, math.nan]):
        with pytest.raises(SepcheckError, match="eps"):
            clf.certify(X[:3], y[:3], eps)
    assert clf.score(X, y) == 1.0


def test_separation_cache(tmp_path):
    X, y = make_spiral("train")
    a = LipschitzNNClassifier(device="cpu", cache=tmp_path).fit(X, y)
    b = LipschitzNNClassifier(device="cpu", cache=tmp_path).fit(X, y)
    c = LipschitzNNClassifier(device="cpu").fit(X, y)  # no cache given: nothing is read or written
    assert (a.separation_from_cache_, b.separation_from_cache_, c.separation_from_cache_) == (False, True, False)
    assert a.r_ == b.r_ == c.r_
    assert len(list(tmp_path.glob("separation-*.h5"))) == 1


def test_library_calls_write_no_cache(tmp_path, monkeypatch):
    """Without ``cache=``, fit and separation_bound leave the default cache folder empty."""
    monkeypatch.setenv("SEPCHECK_CACHE", str(tmp_path / "default"))
    X, y = make_spiral("train")
    LipschitzNNClassifier(device="cpu").fit(X, y)
    assert not (tmp_path / "default").exists() or not any((tmp_path / "default").rglob("*"))


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_torch_forward_matches_and_is_differentiable(norm, device):
    import torch

    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 5))
    y = rng.integers(0, 4, 200)
    Xq = rng.normal(size=(40, 5))
    clf = LipschitzNNClassifier(device=device, norm=norm).fit(X, y)
    for block in (None, 7):
        mod = clf.as_torch_module(device=device, block_size=block)
        x = torch.from_numpy(Xq).requires_grad_(True)
        s = mod(x)
        np.testing.assert_allclose(s.detach().numpy(), clf.decision_function(Xq), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(mod.predict(x), clf.predict(Xq))
        # gradient of f_0 against central finite differences (generic points: smooth there)
        (g,) = torch.autograd.grad(s[:, 0].sum(), x)
        h = 1e-6
        for j in range(5):
            e = np.zeros(5)
            e[j] = h
            fd = (clf.decision_function(Xq + e)[:, 0] - clf.decision_function(Xq - e)[:, 0]) / (2 * h)
            np.testing.assert_allclose(g.numpy()[:, j], fd, atol=1e-4)
        # the gradient norm (dual norm) is at most 1/r
        dual = {"linf": 1.0, "l2": 2.0, "l1": math.inf}[norm]
        assert torch.linalg.vector_norm(g, ord=dual, dim=1).max() <= 1.0 / clf.r_ + 1e-9


def test_torch_forward_uint8_images(device):
    import torch

    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (80, 1, 4, 4)).astype(np.uint8)
    y = rng.integers(0, 3, 80)
    Xq = rng.integers(0, 256, (10, 1, 4, 4)).astype(np.uint8)
    clf = LipschitzNNClassifier(device=device, norm="l2").fit(X, y)
    mod = clf.as_torch_module(device=device)
    s = mod(torch.from_numpy(Xq).float() / 255.0)
    assert s.dtype == torch.float32
    np.testing.assert_allclose(s.detach().numpy(), clf.decision_function(Xq), rtol=1e-5, atol=1e-5)
    with pytest.raises(SepcheckError, match="features per row"):
        mod(torch.zeros(2, 3))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_torch_module_nearest_rows_exact_on_near_ties(norm, device):
    """Rows far from the origin that differ by 1e-2: float32 ``cdist`` in its matmul mode
    (||a||^2 + ||b||^2 - 2ab) ranks them wrongly; the module's engine search matches the
    float64 oracle, duplicates included (lowest index)."""
    import torch

    rng = np.random.default_rng(5)
    X = (256.0 + 0.01 * rng.normal(size=(120, 8))).astype(np.float32)
    y = rng.integers(0, 4, 120)
    X[7], y[7] = X[3], y[3]  # an exact duplicate inside a class: row 3 must win
    Xq = np.concatenate([(256.0 + 0.01 * rng.normal(size=(40, 8))).astype(np.float32), X[3:4]])
    clf = LipschitzNNClassifier(device=device, norm=norm).fit(X, y)
    mod = clf.as_torch_module(device=device)
    _, want, _ = oracle.class_distances(X, y, Xq, P[norm])
    got = mod.nearest_indices(torch.from_numpy(Xq)).cpu().numpy()
    np.testing.assert_array_equal(got, want)
    if norm == "l2":  # the case is hard: the old cdist search gets some rows wrong
        D = torch.cdist(torch.from_numpy(Xq), torch.from_numpy(X)).numpy()
        rows = [np.flatnonzero(y == c) for c in np.unique(y)]
        naive = np.stack([r[np.argmin(D[:, r], axis=1)] for r in rows], axis=1)
        assert np.any(naive != want)


def test_torch_module_pickles(device):
    import pickle

    import torch

    from sepcheck.classifier import LipschitzScores

    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, (60, 6)).astype(np.uint8)
    y = rng.integers(0, 3, 60)
    mod = LipschitzNNClassifier(device=device, norm="linf").fit(X, y).as_torch_module(device=device)
    x = torch.rand(5, 6)
    before = mod(x)
    back = pickle.loads(pickle.dumps(mod))
    assert type(back) is LipschitzScores and back.reference.dtype == torch.uint8
    assert torch.equal(back(x), before)
    np.testing.assert_array_equal(back.predict(x), mod.predict(x))
