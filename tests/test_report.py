"""`sepcheck.report`: the folder it writes (HTML that parses, every referenced figure present
and non-empty, JSON numbers equal to a brute force) and its bad input."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sepcheck.core.errors import SepcheckError
from sepcheck.datasets import Dataset
from sepcheck.report import build_report
from sepcheck.report.model import check_out

from .oracle import class_distances, nearest_other, pairwise


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.refs.append(a["src"])
        if tag == "a":
            self.refs.append(a["href"])


def _synthetic(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(48, 1, 5, 5), dtype=np.uint8)
    y = rng.integers(0, 3, size=48)
    Xt = rng.integers(0, 256, size=(12, 1, 5, 5), dtype=np.uint8)
    Xt[:3] = X[:3]  # exact test-train duplicates
    yt = rng.integers(0, 3, size=12)
    return Dataset("synthetic", X, y, Xt, yt, eps=0.05)


def _check_folder(out: Path) -> dict:
    html = (out / "report.html").read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(html)
    parser.close()
    assert "table" in parser.tags and "img" in parser.tags
    for ref in parser.refs:
        f = out / ref
        assert f.is_file() and f.stat().st_size > 0, ref
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert pngs == sorted(p.stem for p in (out / "figures").glob("*.pdf"))
    assert {f"figures/{s}.png" for s in pngs} <= set(parser.refs)
    md = (out / "report.md").read_text(encoding="utf-8")
    for s in pngs:
        assert f"figures/{s}.png" in md
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temporary left
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    ds = _synthetic()
    rep = build_report(ds, eps_l2=0.5, tau=0.3, drop=2, pairs=4, device="cpu")
    out = tmp_path_factory.mktemp("rep") / "report"
    rep.write(out)
    yield ds, out, rep
    rep.close()


def test_synthetic_report_matches_brute_force(synthetic_report):
    ds, out, _ = synthetic_report
    data = _check_folder(out)
    X, y, Xt, yt = ds.X, ds.y, ds.X_test, ds.y_test
    for norm, p in (("linf", math.inf), ("l2", 2.0)):
        s = data["summary"][norm]
        d = nearest_other(X, y, p=p, scale=255.0)[0][:, 0]
        td = nearest_other(X, y, Xt, yt, p=p, scale=255.0)[0][:, 0]
        assert s["separation"] == pytest.approx(d.min(), rel=1e-12)
        assert s["test_separation"] == pytest.approx(td.min(), rel=1e-12)
        keep = np.setdiff1d(np.arange(len(y)), np.argsort(d, kind="stable")[:2])
        assert s["drop"]["separation"] == pytest.approx(nearest_other(X[keep], y[keep], p=p, scale=255.0)[0].min())
        c = data["ceiling"][norm]
        assert c["accuracy"][0] == 1.0 and len(c["eps"]) >= 2
    D = pairwise(X, X, math.inf) / 255.0
    cp = np.array(data["class_pairs"]["distances"], dtype=float)
    for a in range(3):
        for b in range(3):
            if a != b:
                assert cp[a, b] == pytest.approx(D[np.ix_(y == a, y == b)].min(), rel=1e-12)
    T = pairwise(Xt, X, math.inf) / 255.0
    h = data["hygiene"]
    assert h["test_train_duplicates"] == int(np.count_nonzero(T.min(axis=1) <= 0.3))
    cross = sum(1 for i in range(len(y)) for j in range(i + 1, len(y)) if y[i] != y[j] and D[i, j] <= 0.3)
    assert h["cross_label_pairs"] == cross
    # the 1/r classifier: 1-NN (ties: lowest index); certified at eps=0 when correct with a strict margin
    nn = np.array([np.lexsort((np.arange(len(y)), T[q]))[0] for q in range(len(yt))])
    correct = y[nn] == yt
    dc, _, _ = class_distances(X, y, Xt, p=math.inf, scale=255.0)
    own = dc[np.arange(len(yt)), y[nn]]
    other = np.where(np.arange(3)[None, :] == y[nn][:, None], np.inf, dc).min(axis=1)
    cert = data["certified"]["linf"]
    assert cert["accuracy"] == pytest.approx(correct.mean())
    assert cert["certified_accuracy"][0] == pytest.approx((correct & (other > own)).mean())


def test_mnist_subset_report(mnist_test, tmp_path):
    X, y = mnist_test
    ds = Dataset("mnist-subset", X[:300], y[:300], X[9000:9100], y[9000:9100], eps=0.1)
    rep = build_report(ds, drop=0, pairs=3, eps_grid={"linf": [0.0, 0.1, 0.45], "l2": [0.0, 1.0]}, device="cpu")
    rep.write(tmp_path / "r")
    rep.close()
    data = _check_folder(tmp_path / "r")
    d = nearest_other(ds.X, ds.y, p=math.inf, scale=255.0)[0][:, 0]
    assert data["summary"]["linf"]["separation"] == pytest.approx(d.min(), rel=1e-12)
    assert data["ceiling"]["linf"]["eps"] == [0.0, 0.1, 0.45]
    assert {"closest_pairs_linf", "test_train_linf"} <= {p.stem for p in (tmp_path / "r" / "figures").glob("*.png")}


def test_cache_is_shared_with_the_library_calls(tmp_path):
    from sepcheck.runs.cache import cached_ceiling, cached_separation

    ds = _synthetic(1)
    grid = {"linf": [0.0, 0.05, 0.1], "l2": [0.0, 0.3]}
    first = build_report(ds, drop=0, pairs=0, eps_grid=grid, cache=tmp_path, device="cpu")
    again = build_report(ds, drop=0, pairs=0, eps_grid=grid, cache=tmp_path, device="cpu")
    first.close()
    again.close()
    assert [again.data["summary"][n]["cached"] for n in ("linf", "l2")] == [True, True]
    for key in ("hygiene", "class_pairs", "certified"):
        assert again.data[key] == first.data[key]
    for norm, eps in grid.items():
        assert cached_separation(ds.X, ds.y, norm=norm, cache=tmp_path, device="cpu")[1]
        res, hit = cached_ceiling(ds.X, ds.y, eps, norm=norm, cache=tmp_path, device="cpu")
        assert hit and res.accuracy.tolist() == first.data["ceiling"][norm]["accuracy"]


def test_existing_folder_needs_force(synthetic_report, tmp_path):
    _, _, rep = synthetic_report
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SepcheckError, match="exists.*--force"):
        check_out(out, force=False)
    with pytest.raises(SepcheckError, match="exists"):
        rep.write(out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    rep.write(out, force=True)
    assert not (out / "keep.txt").exists() and (out / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"tau": -0.1}, "tau"), ({"tau": math.nan}, "tau"), ({"eps": 0.0}, "eps"), ({"eps_l2": -1.0}, "eps"),
     ({"drop": -1}, "drop")],
)
def test_bad_input(kwargs, words):
    with pytest.raises(SepcheckError, match=words):
        build_report(_synthetic(), device="cpu", **kwargs)


def test_one_class():
    ds = _synthetic()
    ds.y[:] = 0
    with pytest.raises(SepcheckError, match="single class"):
        build_report(ds, device="cpu")


def test_closest_pairs_carry_their_own_distance():
    """Each closest pair is captioned with the distance between its two points (a float64
    oracle), ascending: point 0's nearest is far, but points 1 and 2 are each other's."""
    from sepcheck import separation
    from sepcheck.report.values import closest_pairs

    X = np.array([[0.0], [10.0], [10.5], [30.0]])
    y = np.array([0, 1, 0, 1])
    res = separation(X, y, norm="linf", device="cpu")
    pairs, dist = closest_pairs(res, 3)
    truth = np.abs(X[pairs[:, 0], 0] - X[pairs[:, 1], 0])
    np.testing.assert_array_equal(dist, truth)
    assert np.all(np.diff(dist) >= 0)
    assert [tuple(p) for p in pairs] == [(1, 2), (0, 1), (2, 3)]


def test_the_marked_eps_is_on_the_ceiling_grid_and_named_for_its_source(synthetic_report):
    """The summary reads the ceiling at the marked eps itself (not a grid neighbour) and says
    whether the eps is the user's (l2 here) or the data set's typical one (linf)."""
    _, out, _ = synthetic_report
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    md = (out / "report.md").read_text(encoding="utf-8")
    assert data["eps_given"] == {"linf": False, "l2": True}
    for norm, e, source in (("linf", 0.05, "typical"), ("l2", 0.5, "given")):
        c = data["ceiling"][norm]
        k = c["eps"].index(e)  # the grid holds it exactly
        assert f"{source} ε ({norm})" in md
        assert f"ceiling at ε = {e:.4f} ({norm}) | {c['accuracy'][k]:.4f}" in md
