"""`sepcheck hygiene` and `sepcheck report`: output, files and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .helpers import assert_one_line_error, run


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(30, 1, 4, 4), dtype=np.uint8)
    y = np.arange(30) % 2
    Xt = X[:6].copy()
    yt = y[:6].copy()
    yt[0] = 1 - yt[0]  # a test duplicate with the other label
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y, X_test=Xt, y_test=yt)
    return path


def test_hygiene_json_and_csv(npz, tmp_path):
    r = run("hygiene", npz, "--tau", "0", "--json", "--csv", tmp_path / "csv", "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["test_train_duplicates"] == 6 and out["test_train_fraction"]["1tau"] == 1.0
    rows = out["test_train"]["rows"]
    assert [row["same_label"] for row in rows].count(False) == 1
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["cross_label.csv", "label_noise.csv",
                                                                     "test_train.csv"]
    r = run("hygiene", npz, "--tau", "0.5", "--top", "2", "--device", "cpu")
    assert r.exit_code == 0 and "cross-label" in r.stdout and "label noise" in r.stdout


@pytest.mark.parametrize(("args", "word"), [(["--tau", "-1"], "tau"), (["--tau", "nan"], "tau"),
                                            (["--tau", "0.1", "--k", "0"], "k"), (["--tau", "0.1", "--top", "-1"], "top"),
                                            (["--tau", "0.1", "--backend", "faiss"], "backend")])
def test_hygiene_bad_input(npz, args, word):
    assert_one_line_error(run("hygiene", npz, *args), word)


def test_report_writes_folder_and_refuses_to_overwrite(npz, tmp_path):
    out = tmp_path / "rep"
    r = run("report", npz, "--out", out, "--drop", "0", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["n"] == 30 and data["summary"]["linf"]["n"] == 30
    assert (out / "report.html").is_file() and (out / "figures" / "histogram_linf.pdf").stat().st_size > 0
    assert "separation linf" in r.stderr  # progress on stderr
    before = sorted(p.name for p in out.rglob("*"))
    assert_one_line_error(run("report", npz, "--out", out), "exists", "--force")
    assert sorted(p.name for p in out.rglob("*")) == before


@pytest.mark.parametrize(("args", "word"), [(["--tau", "-0.5"], "tau"), (["--eps", "0"], "eps"),
                                            (["--drop", "30"], "drop"), (["--time-limit", "0"], "time"),
                                            (["--device", "tpu"], "device")])
def test_report_bad_input_writes_nothing(npz, tmp_path, args, word):
    out = tmp_path / "rep"
    assert_one_line_error(run("report", npz, "--out", out, "--device", "cpu", *args), word)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
