"""robust_ceiling against independent brute force: enumerated independent sets (3+ classes,
n <= 16) and networkx maximum matchings (two classes), on random and real MNIST subsets."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck.analysis.ceiling import CeilingResult, robust_ceiling
from sepcheck.core.errors import SepcheckError

from .oracle import pairwise

NORMS = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


# ----- independent oracles ---------------------------------------------------------------
def conflict_edges(X, y, eps, p, scale=1.0):
    """Unordered different-label pairs at float64 distance / scale <= 2 eps (closed balls)."""
    dist = pairwise(X, X, p) / scale
    i, j = np.nonzero(np.triu((dist <= 2 * eps) & (y[:, None] != y[None, :]), 1))
    return list(zip(i.tolist(), j.tolist(), strict=True))


def mis_enumerated(n, edges):
    """Maximum independent set size by enumerating all 2**n subsets."""
    masks = np.arange(1 << n, dtype=np.int64)
    bad = np.zeros(masks.size, dtype=bool)
    for u, v in edges:
        bad |= ((masks >> u) & 1).astype(bool) & ((masks >> v) & 1).astype(bool)
    sizes = np.array([bin(m).count("1") for m in range(1 << n)])
    return int(sizes[~bad].max())


def mis_bipartite(n, edges):
    """n - maximum matching (Konig), by networkx."""
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    return n - len(nx.max_weight_matching(g, maxcardinality=True))


def check_solution(res, i, n, edges):
    """The points kept are an independent set of the size reported."""
    lost = set(res.sacrificed[i].tolist())
    assert not any(u not in lost and v not in lost for u, v in edges)
    assert n - len(lost) == round(res.accuracy[i] * n)


# ----- exact values ----------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 13),
    d=st.integers(1, 3),
    k=st.integers(2, 4),
    norm=st.sampled_from(sorted(NORMS)),
    seed=st.integers(0, 2**16),
)
def test_small_random_against_enumeration(n, d, k, norm, seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 5, size=(n, d)) * 0.25  # a coarse grid: distances tie at exactly 2 eps
    y = rng.integers(0, k, size=n)
    y[:2] = [0, 1]
    eps = np.array([0.0, 0.125, 0.25, 0.5, 0.75])
    res = robust_ceiling(X, y, eps, norm=norm, device="cpu")
    assert np.all(np.diff(res.accuracy) <= 0) and np.all(res.accuracy >= res.class_share)
    for i, e in enumerate(eps):
        edges = conflict_edges(X, y, e, NORMS[norm])
        assert res.exact[i]
        assert res.accuracy[i] == res.upper[i] == mis_enumerated(n, edges) / n
        assert res.n_edges[i] == len(edges)
        check_solution(res, i, n, edges)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 70), norm=st.sampled_from(["linf", "l2"]), seed=st.integers(0, 2**16))
def test_two_classes_against_networkx_matching(n, norm, seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 6), dtype=np.uint8)
    y = rng.integers(0, 2, size=n) * 7 + 3  # labels 3 and 10
    y[:2] = [3, 10]
    eps = np.array([0.1, 0.3, 0.5, 0.05])
    res = robust_ceiling(X, y, eps, norm=norm, device="cpu")
    for i, e in enumerate(eps):
        edges = conflict_edges(X, y, e, NORMS[norm], scale=255.0)
        assert res.exact[i] and res.details[i]["components"]["milp"] == 0
        assert round(res.accuracy[i] * n) == mis_bipartite(n, edges)
        check_solution(res, i, n, edges)


def test_real_mnist_subsets(mnist_test):
    X, y = mnist_test
    X = X.reshape(len(X), -1)
    # two classes (4 and 9, the closest pair): bipartite, against networkx
    two = np.flatnonzero((y == 4) | (y == 9))[:150]
    eps = np.array([0.45, 0.4975, 0.5])  # MNIST linf distances crowd just below 1
    res = robust_ceiling(X[two], y[two], eps, norm="linf", device="cpu")
    for i, e in enumerate(eps):
        edges = conflict_edges(X[two], y[two], e, math.inf, scale=255.0)
        assert round(res.accuracy[i] * two.size) == mis_bipartite(two.size, edges)
        check_solution(res, i, two.size, edges)
    assert res.n_edges[-1] > 0
    # ten classes, 14 points: integer programs, against enumeration
    few = np.arange(14)
    res = robust_ceiling(X[few], y[few], [4.0, 4.5, 5.0], norm="l2", device="cpu")
    for i, e in enumerate(res.eps):
        edges = conflict_edges(X[few], y[few], e, 2.0, scale=255.0)
        assert res.accuracy[i] == mis_enumerated(14, edges) / 14
    assert res.details[-1]["components"]["milp"] >= 1


# ----- the two ends of the curve ---------------------------------------------------------
def test_eps_zero_is_one_without_duplicates_and_sees_identical_points():
    rng = np.random.default_rng(1)
    X = rng.random((30, 4))
    y = np.arange(30) % 3
    assert robust_ceiling(X, y, 0.0, device="cpu").accuracy.tolist() == [1.0]
    X[5] = X[7]  # same input, labels 2 and 1: a conflict at distance 0 (closed balls)
    res = robust_ceiling(X, y, [0.0], device="cpu")
    assert res.accuracy[0] == 29 / 30 and res.n_edges[0] == 1 and res.sacrificed[0].size == 1


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_beyond_the_diameter_is_the_largest_class_share(norm):
    rng = np.random.default_rng(2)
    X = rng.random((40, 3))
    y = rng.choice(4, size=40, p=[0.4, 0.3, 0.2, 0.1])
    dist = pairwise(X, X, NORMS[norm])
    widest = float(dist[y[:, None] != y[None, :]].max())  # every pair conflicts, inside the diameter bound
    res = robust_ceiling(X, y, [widest / 2, 10.0], norm=norm, device="cpu")
    share = np.bincount(y).max() / 40
    assert res.class_share == share and res.accuracy.tolist() == [share, share] and res.exact.all()
    assert res.n_components.tolist() == [1, 1] and res.n_edges[0] == res.n_edges[1] == (1600 - (np.bincount(y) ** 2).sum()) // 2
    assert res.sacrificed[0].size == res.sacrificed[1].size == 40 - np.bincount(y).max()


def test_time_limit_gives_bounds_around_the_truth():
    rng = np.random.default_rng(5)  # a dense random 3-label graph: HiGHS cannot finish in 1 ns
    n = 16
    X = rng.random((n, 8))
    y = np.arange(n) % 3
    D = pairwise(X, X, math.inf)
    eps = float(np.quantile(D[np.triu_indices(n, 1)], 0.6)) / 2
    res = robust_ceiling(X, y, eps, time_limit=1e-9, device="cpu")
    truth = mis_enumerated(n, conflict_edges(X, y, eps, math.inf)) / n
    assert not res.exact[0] and res.details[0]["components"]["milp_inexact"] == 1
    assert res.accuracy[0] <= truth <= res.upper[0]
    assert res.accuracy[0] < res.upper[0]
    check_solution(res, 0, n, conflict_edges(X, y, eps, math.inf))


def test_given_nearest_distances_give_the_same_answer():
    from .oracle import nearest_other

    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, size=(60, 4), dtype=np.uint8)
    y = np.arange(60) % 3
    d1 = nearest_other(X, y, p=2.0, scale=255.0)[0][:, 0]
    eps = [0.05, 0.1, 0.2]
    assert same_answer(robust_ceiling(X, y, eps, norm="l2", nearest_distances=d1, device="cpu"), robust_ceiling(X, y, eps, norm="l2", device="cpu"))
    with pytest.raises(SepcheckError, match="nearest_distances"):
        robust_ceiling(X, y, eps, nearest_distances=d1[:-1], device="cpu")


# ----- result, plot ----------------------------------------------------------------------
def test_result_round_trips_through_json(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, size=(50, 5), dtype=np.uint8)
    y = np.arange(50) % 3
    res = robust_ceiling(X, y, [0.0, 0.2, 0.4], norm="l2", dataset="toy", device="cpu")
    back = CeilingResult.load(res.save(tmp_path / "c.json"))
    assert back.to_dict() == res.to_dict() and back.units == "pixel" and back.norm == "l2"
    assert res.accuracy[0] == 1.0 and np.all(np.diff(res.accuracy) <= 0)
    assert res.at(0.2) == 1
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SepcheckError, match="not a JSON object"):
        CeilingResult.load(tmp_path / "bad.json")


def test_plot_draws_the_curve_and_the_band():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(3)
    X = rng.random((16, 8))
    y = np.arange(16) % 3
    res = robust_ceiling(X, y, np.linspace(0, 0.5, 6), time_limit=1e-9, device="cpu")
    ax = res.plot(typical_eps=0.1, runs=[{"eps": 0.1, "accuracy": 0.5, "label": "AT"}])
    assert ax.get_xlabel() and ax.get_ylabel() and ax.lines
    ax.figure.clf()


# ----- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -0.1}, "finite and >= 0"),
        ({"eps": [0.1, float("nan")]}, "finite and >= 0"),
        ({"eps": []}, "non-empty"),
        ({"eps": [[0.1]]}, "1-D"),
        ({"eps": "a"}, "radius"),
        ({"eps": 0.1, "time_limit": 0}, "time_limit"),
        ({"eps": 0.1, "time_limit": -1.0}, "time_limit"),
        ({"eps": 0.1, "time_limit": float("nan")}, "time_limit"),
        ({"eps": 0.1, "norm": "l0.5"}, "not a norm"),
    ],
)
def test_bad_input_is_one_line(kwargs, match):
    X = np.random.default_rng(0).random((5, 2))
    with pytest.raises(SepcheckError, match=match) as err:
        robust_ceiling(X, [0, 1, 0, 1, 2], **kwargs)
    assert "\n" not in str(err.value)


def test_one_class_and_mismatched_labels():
    X = np.zeros((4, 2))
    with pytest.raises(SepcheckError, match="single class.*ceiling"):
        robust_ceiling(X, [1, 1, 1, 1], 0.1, device="cpu")
    with pytest.raises(SepcheckError, match="3 labels but X has 4 rows"):
        robust_ceiling(X, [0, 1, 0], 0.1, device="cpu")


def same_answer(a, b):
    """Everything but timings and names."""
    skip = ("details", "extra", "dataset")
    da, db = a.to_dict(), b.to_dict()
    return {k: v for k, v in da.items() if k not in skip} == {k: v for k, v in db.items() if k not in skip}


def test_cache_is_keyed_by_data_grid_and_time_limit(tmp_path):
    from sepcheck.runs.cache import cached_ceiling

    rng = np.random.default_rng(6)
    X = rng.random((40, 3))
    y = np.arange(40) % 4
    first, hit = cached_ceiling(X, y, [0.0, 0.2], cache=tmp_path, device="cpu")
    again, hit2 = cached_ceiling(X, y, [0.0, 0.2], cache=tmp_path, dataset="named", device="cpu")
    assert (hit, hit2) == (False, True)
    assert same_answer(again, first) and again.dataset == "named"
    assert not cached_ceiling(X, y, [0.0, 0.3], cache=tmp_path, device="cpu")[1]
    assert not cached_ceiling(X, y, [0.0, 0.2], time_limit=5.0, cache=tmp_path, device="cpu")[1]
    assert not cached_ceiling(X[::-1], y, [0.0, 0.2], cache=tmp_path, device="cpu")[1]
    for f in tmp_path.glob("ceiling-*.json"):
        f.write_text("{not json")
    res, hit3 = cached_ceiling(X, y, [0.0, 0.2], cache=tmp_path, device="cpu")
    assert not hit3 and same_answer(res, first)
    assert not cached_ceiling(X, y, [0.0, 0.2], device="cpu")[1]  # no cache given: nothing read or written
    from sepcheck.core.hashing import array_digest

    assert cached_ceiling(X, y, [0.0, 0.2], cache=tmp_path, content_hash=array_digest(X, y), device="cpu")[1]


def test_cached_ceiling_uses_given_nearest_distances(tmp_path):
    from sepcheck.runs.cache import cached_ceiling

    from .oracle import nearest_other

    rng = np.random.default_rng(8)
    n = 14
    X = rng.random((n, 3))
    y = np.arange(n) % 3
    d1 = nearest_other(X, y, p=math.inf)[0][:, 0]
    res, _ = cached_ceiling(X, y, [0.1, 0.2], nearest_distances=d1, device="cpu")
    for k, eps in enumerate((0.1, 0.2)):
        assert res.exact[k] and res.accuracy[k] == mis_enumerated(n, conflict_edges(X, y, eps, math.inf)) / n
    cached_ceiling(X, y, [0.1], nearest_distances=d1, cache=tmp_path, device="cpu")
    assert not list(tmp_path.glob("separation-*"))  # given distances: no separation search or cache entry
    with pytest.raises(SepcheckError, match="nearest_distances"):
        cached_ceiling(X, y, [0.1], nearest_distances=d1[:-1], device="cpu")
