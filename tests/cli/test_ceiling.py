"""`sepcheck ceiling` end to end: the curve as a table and JSON (against the library call, which
tests/test_ceiling.py checks against brute force), files, the cache, trained runs placed
against the ceiling, and every bad-input path (one line, exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sepcheck.analysis.ceiling import CeilingResult, robust_ceiling
from tests.cli.helpers import assert_one_line_error, run
from tests.train.tiny import stripes


@pytest.fixture()
def npz(tmp_path):
    X, y = stripes(45)
    Xt, yt = stripes(30, seed=1)
    path = tmp_path / "stripes.npz"
    np.savez(path, X=X, y=y, X_test=Xt, y_test=yt)
    return path


def test_table_json_files_and_cache(tmp_path, npz):
    out, plot = tmp_path / "c.json", tmp_path / "c.png"
    r = run("ceiling", npz, "--norm", "l2", "--eps-grid", "0:2:5", "--split", "test", "--json", "--out", out,
            "--plot", plot, "--device", "cpu")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    with np.load(npz) as z:
        want = robust_ceiling(z["X_test"], z["y_test"], [0, 0.5, 1.0, 1.5, 2.0], norm="l2", device="cpu")
    assert rep["eps"] == [0, 0.5, 1.0, 1.5, 2.0] and rep["accuracy"] == want.accuracy.tolist()
    assert rep["n_edges"] == want.n_edges.tolist() and rep["split"] == "test" and not rep["cached"]
    assert rep["accuracy"][0] == 1.0 and rep["accuracy"][-1] < 1.0
    assert CeilingResult.load(out).accuracy.tolist() == rep["accuracy"]
    assert plot.stat().st_size > 1000
    r = run("ceiling", npz, "--device", "cpu", "--norm", "l2", "--eps", 0, "--eps", 0.5, "--eps", 1, "--eps", 1.5, "--eps", 2,
            "--split", "test", "--device", "cpu")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "robust-accuracy ceiling" in lines[0] and "(cached result)" in r.stdout
    row = next(ln for ln in lines if ln.strip().startswith("1.0000"))
    assert row.split()[1] == f"{want.accuracy[2]:.4f}" and "exact" in row


def test_runs_against_the_ceiling(tmp_path, npz):
    runs = tmp_path / "runs"
    r = run("train", "natural", "--dataset", npz, "--eps", 0.4, "--epochs", 1, "--batch-size", 15, "--out",
            runs / "nat", "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    r = run("eval", runs / "nat", "--device", "cpu", "--subset", 20, "--attack-steps", 2, "--no-bound", "--json")
    assert r.exit_code == 0, r.output
    r = run("ceiling", npz, "--eps", 0.4, "--runs", runs / "nat", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.output
    (point,) = json.loads(r.stdout)["runs"]
    with np.load(npz) as z:
        idx = np.sort(np.random.default_rng(0).choice(30, size=20, replace=False))  # eval's seeded subset
        want = robust_ceiling(z["X_test"][idx], z["y_test"][idx], 0.4, device="cpu")
    assert point["ceiling"] == want.accuracy[0] and point["n_points"] == 20 and point["subset"]
    assert point["attack"] == "PGD" and not point["above"]
    # a robust accuracy above the ceiling is impossible: flagged loudly
    ev = runs / "nat" / "eval.json"
    row = json.loads(ev.read_text())
    ev.write_text(json.dumps({**row, "adv_test_acc": 1.0}))
    assert want.upper[0] < 1.0
    r = run("ceiling", npz, "--eps", 0.4, "--runs", runs / "nat", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "ABOVE THE CEILING" in r.stdout and r.stderr.startswith("WARNING:") and "impossible" in r.stderr
    # the data set the caller has open is used, not opened again (here: its file is gone)
    from sepcheck.datasets import open_dataset
    from sepcheck.train.ceiling_points import run_points

    spec = str(npz.resolve())
    ds = open_dataset(spec)
    npz.unlink()
    points = run_points([runs / "nat"], opened=(spec, ds), device="cpu")
    assert [p["ceiling"] for p in points] == [want.accuracy[0]] and points[0]["above"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--eps", -0.1), ("--eps -0.1", ">= 0")),
        (("--eps", "nan"), ("--eps nan",)),
        ((), ("--eps E",)),
        (("--eps", 0.1, "--eps-grid", "0:1:3"), ("not both",)),
        (("--eps-grid", "0:1"), ("--eps-grid '0:1'",)),
        (("--eps-grid", "0:1:0"), ("START:STOP:NUM",)),
        (("--eps-grid", "-1:1:3"), ("START:STOP:NUM",)),
        (("--eps-grid", "a:b:c"), ("START:STOP:NUM",)),
        (("--eps", 0.1, "--time-limit", 0), ("--time-limit 0",)),
        (("--eps", 0.1, "--norm", "l0.5"), ("not a norm",)),
        (("--eps", 0.1, "--backend", "faiss"), ("faiss",)),
        (("--eps", 0.1, "extra"), ("unexpected argument",)),
    ],
)
def test_bad_input_one_line(tmp_path, npz, args, words):
    out, plot = tmp_path / "o.json", tmp_path / "o.png"
    r = run("ceiling", npz, *args, "--device", "cpu", "--out", out, "--plot", plot, catch_exceptions=True)
    assert_one_line_error(r, *words)
    assert not out.exists() and not plot.exists()


def test_one_class_unwritable_outputs_missing_runs(tmp_path, npz):
    path = tmp_path / "one.npz"
    np.savez(path, X=np.zeros((5, 2)), y=np.ones(5, dtype=np.int64))
    assert_one_line_error(run("ceiling", path, "--eps", 0.1, "--device", "cpu"), "single class", "ceiling")
    (tmp_path / "file").write_text("")
    assert_one_line_error(run("ceiling", path, "--eps", 0.1, "--out", tmp_path / "file" / "o.json"), "--out")
    assert_one_line_error(run("ceiling", npz, "--eps", 0.1, "--runs", tmp_path / "nope", "--device", "cpu"),
                          "does not exist")
