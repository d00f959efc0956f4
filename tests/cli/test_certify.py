"""`sepcheck certify` and `sepcheck plot-classifier` end to end (click's CliRunner): numbers
against the brute force, the separation cache, JSON, and every bad-input path (one line,
exit code 2, nothing written)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sepcheck.datasets import make_spiral
from tests import oracle
from tests.cli.helpers import assert_one_line_error, run


def _npz(tmp_path, name="d.npz", test=True, shape=(3, 3)):
    rng = np.random.default_rng(0)
    arrays = {
        "X": rng.integers(0, 256, (60, 1, *shape)).astype(np.uint8),
        "y": np.arange(60) % 3,
    }
    if test:
        arrays.update(X_test=rng.integers(0, 256, (25, 1, *shape)).astype(np.uint8), y_test=np.arange(25) % 4)
    path = tmp_path / name
    np.savez(path, **arrays)
    return path, arrays


def _expected(arrays, p, eps):
    """Brute force of the certify table for uint8 arrays (pixel scale)."""
    X = arrays["X"].reshape(len(arrays["X"]), -1)
    Xt = arrays["X_test"].reshape(len(arrays["X_test"]), -1)
    y, yt = arrays["y"], arrays["y_test"]
    D = oracle.pairwise(X, X, p) / 255.0
    r = D[y[:, None] != y[None, :]].min() / 2
    T = oracle.pairwise(Xt, X, p) / 255.0
    pred = y[T.argmin(axis=1)]
    own = np.where(y[None, :] == pred[:, None], T, np.inf).min(axis=1)
    other = np.where(y[None, :] != pred[:, None], T, np.inf).min(axis=1)
    radius = (other - own) / 2
    correct = pred == yt
    true = np.array([T[i, y == yt[i]].min() if np.any(y == yt[i]) else np.inf for i in range(len(yt))])
    return {
        "r": r,
        "accuracy": correct.mean(),
        "certified": {e: (correct & (radius > e)).mean() for e in eps},
        "within_r": (true <= r).mean(),
    }


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_certify_json_matches_brute_force(tmp_path, norm):
    path, arrays = _npz(tmp_path)
    eps = [0.0, 0.05, 0.2]
    res = run("certify", "--device", "cpu", path, "--norm", norm, *sum((["--eps", e] for e in eps), []), "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    want = _expected(arrays, {"linf": math.inf, "l2": 2.0}[norm], eps)
    assert rep["r"] == pytest.approx(want["r"], rel=1e-12)
    assert rep["lipschitz_constant"] == pytest.approx(1 / want["r"], rel=1e-12)
    assert rep["accuracy"] == want["accuracy"] and rep["within_r"] == want["within_r"]
    assert [row["eps"] for row in rep["rows"]] == eps
    for row in rep["rows"]:
        assert row["certified_accuracy"] == want["certified"][row["eps"]]
        assert row["accuracy"] == want["accuracy"] and row["r"] == rep["r"]
    assert rep["units"] == "pixel" and rep["n_test"] == 25 and rep["n_train"] == 60
    assert rep["eps_source"] == "given"


def test_certify_human_table_and_cache():
    first = run("certify", "--device", "cpu", "spiral", "--eps", "0.01", "--eps", "0.05")
    assert first.exit_code == 0, first.output
    out = first.stdout
    assert "clean acc" in out and "certified acc" in out and "1/r" in out and "within r" in out
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if "certified acc" in ln)
    rows = [ln.split() for ln in lines[head + 1 : head + 3]]
    assert [r[0] for r in rows] == ["0.01", "0.05"] and all(len(r) == 6 for r in rows)
    assert "(training set)" in out  # computed
    X, y = make_spiral("train")
    r = oracle.nearest_other(X, y, p=math.inf)[0].min() / 2
    assert float(rows[0][3]) == pytest.approx(r, abs=5e-5)
    assert float(rows[0][4]) == pytest.approx(1 / r, abs=5e-5)
    again = run("certify", "--device", "cpu", "spiral", "--json")  # the training separation now comes from the cache
    rep = json.loads(again.stdout)
    assert rep["cached"] is True and rep["eps_source"] == "default"
    assert [row["eps"] for row in rep["rows"]] == [rep["r"]]  # no typical eps for spiral: eps = r


def test_certify_reuses_the_separation_command_cache():
    assert run("separation", "--device", "cpu", "spiral", "--norm", "l2", "--json").exit_code == 0
    rep = json.loads(run("certify", "--device", "cpu", "spiral", "--norm", "l2", "--json").stdout)
    assert rep["cached"] is True


def test_certify_errors(tmp_path):
    path, _ = _npz(tmp_path, test=False)
    assert_one_line_error(run("certify", "--device", "cpu", path), "has no test split")
    assert_one_line_error(run("certify", "--device", "cpu", "spiral", "--eps", "-1"), "eps=-1.0")
    assert_one_line_error(run("certify", "--device", "cpu", "spiral", "--eps", "nan"), "eps=nan")
    assert_one_line_error(run("certify", "--device", "cpu", "spiral", "--backend", "faiss"), "use auto, numba, torch or triton")
    assert_one_line_error(run("certify", "spiral", "--device", "gpu"), "unknown device")
    assert_one_line_error(run("certify", "--device", "cpu", tmp_path / "missing.npz"), "missing.npz")
    bad = run("certify", "--device", "cpu", "spiral", "--norm", "l7")
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_plot_classifier(tmp_path):
    out = tmp_path / "figs" / "spiral.png"
    res = run("plot-classifier", "--device", "cpu", "spiral", "--out", out, "--resolution", 80, "--test", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep["out"] == str(out) and rep["r"] > 0 and rep["norm"] == "linf"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]
    pdf = tmp_path / "spiral.pdf"
    assert run("plot-classifier", "--device", "cpu", "spiral", "--out", pdf, "--norm", "l2", "--resolution", 40).exit_code == 0
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_plot_classifier_errors(tmp_path):
    path, _ = _npz(tmp_path)
    assert_one_line_error(run("plot-classifier", "--device", "cpu", path, "--out", tmp_path / "a.png"), "has 9 features per row")
    as_dir = run("plot-classifier", "--device", "cpu", "spiral", "--out", tmp_path)  # click's own usage error
    assert as_dir.exit_code == 2 and "is a directory" in as_dir.output and "Traceback" not in as_dir.output
    assert_one_line_error(run("plot-classifier", "--device", "cpu", "spiral", "--out", tmp_path / "a.gif"), "unknown image type")
    assert_one_line_error(run("plot-classifier", "--device", "cpu", "spiral", "--out", tmp_path / "a.png", "--resolution", 3), "--resolution 3")
    assert not list(tmp_path.glob("*.png"))
    twod = tmp_path / "u8.npz"
    np.savez(twod, X=np.array([[0, 0], [9, 9]], dtype=np.uint8), y=np.array([0, 1]))
    assert_one_line_error(run("plot-classifier", "--device", "cpu", twod, "--out", tmp_path / "b.png"), "needs float coordinates")


def test_example_script(tmp_path, monkeypatch):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "spiral.py"
    out = tmp_path / "ex.png"
    monkeypatch.setattr(sys, "argv", ["spiral.py", "--norm", "l2", "--out", str(out), "--device", "cpu"])
    import sepcheck.classifier as c

    monkeypatch.setattr(c, "plot_classifier", _low_res(c.plot_classifier))
    runpy.run_path(str(script), run_name="__main__")
    assert out.read_bytes()[:4] == b"\x89PNG"


def _low_res(fn):
    def wrapper(*args, **kwargs):
        kwargs.setdefault("resolution", 60)
        return fn(*args, **kwargs)

    return wrapper
