"""`sepcheck separation` end to end (click's CliRunner), and every bad-input path of the
engine and the CLI: one-line errors, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import gzip
import json
import math

import h5py
import numpy as np
import pytest

from sepcheck import SepcheckError, nearest_other, separation
from sepcheck.datasets import make_spiral
from tests import oracle
from tests.cli.helpers import assert_one_line_error, run


def _npz(tmp_path, name="d.npz", test=True, **override):
    rng = np.random.default_rng(0)
    arrays = {"X": rng.integers(0, 256, (50, 1, 3, 3)).astype(np.uint8), "y": np.arange(50) % 3}
    if test:
        arrays.update(X_test=rng.integers(0, 256, (20, 1, 3, 3)).astype(np.uint8), y_test=np.arange(20) % 3)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / name
    np.savez(path, **arrays)
    return path, arrays


def _write_idx(path, arr):
    dims = arr.shape
    header = bytes([0, 0, 8, len(dims)]) + b"".join(int(s).to_bytes(4, "big") for s in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_spiral_json_matches_oracle(tmp_path):
    out, plot = tmp_path / "r.h5", tmp_path / "h.png"
    r = run("separation", "--device", "cpu", "spiral", "--split", "both", "--json", "--out", str(out), "--plot", str(plot))
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    X, y = make_spiral("train")
    Xt, yt = make_spiral("test")
    od, _ = oracle.nearest_other(X, y, p=math.inf)
    td, _ = oracle.nearest_other(X, y, Xt, yt, p=math.inf)
    assert rep["dataset"] == "spiral" and rep["norm"] == "linf" and rep["n"] == 1000
    assert rep["separation"] == pytest.approx(od.min(), rel=1e-12)
    assert rep["r"] == pytest.approx(od.min() / 2, rel=1e-12)
    assert rep["test_separation"] == pytest.approx(td.min(), rel=1e-12)
    assert out.exists() and plot.stat().st_size > 1000


def test_human_output_and_cache(tmp_path):
    path, arrays = _npz(tmp_path)
    r1 = run("separation", "--device", "cpu", str(path), "--norm", "l2", "--split", "both", "--eps", "0.1")
    assert r1.exit_code == 0, r1.output
    d, _ = oracle.nearest_other(arrays["X"], arrays["y"], p=2, scale=255.0)
    for word in ("separation", "r ", "test-train", "quantiles", "conflicts", "sep / 2eps", "classes", "dimension"):
        assert word in r1.stdout
    assert f"{d.min():.4f}" in r1.stdout
    assert f"{d.min() / 0.2:.2f}" in r1.stdout
    r2 = run("separation", "--device", "cpu", str(path), "--norm", "l2", "--split", "both", "--json")
    assert json.loads(r2.stdout)["cached"] is True


@pytest.mark.parametrize("split", ["train", "test"])
def test_splits(tmp_path, split):
    path, a = _npz(tmp_path)
    r = run("separation", "--device", "cpu", str(path), "--split", split, "--json", "--norm", "l1")
    rep = json.loads(r.stdout)
    X, y = (a["X"], a["y"]) if split == "train" else (a["X_test"], a["y_test"])
    d, _ = oracle.nearest_other(X, y, p=1, scale=255.0)
    assert rep["n"] == len(X) and rep["separation"] == d.min()
    assert "test_separation" not in rep


def test_raw_units_and_p_norm(tmp_path):
    path, a = _npz(tmp_path, test=False)
    rep = json.loads(run("separation", "--device", "cpu", str(path), "--raw", "--norm", "3", "--json").stdout)
    d, _ = oracle.nearest_other(a["X"], a["y"], p=3.0)
    assert rep["separation"] == pytest.approx(d.min(), rel=1e-12) and rep["norm"] == "l3"


def test_idx_directory_and_h5(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (30, 4, 4)).astype(np.uint8)
    y = (np.arange(30) % 2).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", X)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    rep = json.loads(run("separation", "--device", "cpu", str(tmp_path), "--json").stdout)
    d, _ = oracle.nearest_other(X, y, scale=255.0)
    assert rep["separation"] == d.min() and rep["n"] == 30
    h5 = tmp_path / "d.h5"
    with h5py.File(h5, "w") as f:
        f["X"], f["y"] = X, y
    assert json.loads(run("separation", "--device", "cpu", str(h5), "--json").stdout)["separation"] == d.min()


# ----- bad input --------------------------------------------------------------------

API_CASES = {
    "nan": (dict(X=np.array([[0.0, np.nan], [1.0, 1.0]]), y=[0, 1]), "NaN"),
    "inf": (dict(X=np.array([[0.0, np.inf], [1.0, 1.0]]), y=[0, 1]), "inf"),
    "count": (dict(X=np.zeros((3, 2)), y=[0, 1]), "2 labels"),
    "single": (dict(X=np.eye(3), y=[4, 4, 4]), "single class"),
    "empty": (dict(X=np.zeros((0, 3)), y=np.zeros(0, dtype=int)), "empty"),
    "nonint": (dict(X=np.eye(2), y=[0.5, 1.0]), "non-integer"),
    "strings": (dict(X=np.eye(2), y=np.array(["a", "b"])), "integers"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_errors(case):
    kwargs, words = API_CASES[case]
    with pytest.raises(SepcheckError, match=words) as exc:
        nearest_other(kwargs["X"], kwargs["y"], device="cpu")
    assert "\n" not in str(exc.value)


def test_api_errors_norm_dims_k():
    X, y = np.eye(3), [0, 1, 1]
    with pytest.raises(SepcheckError, match="unknown norm"):
        nearest_other(X, y, norm="l_two", device="cpu")
    with pytest.raises(SepcheckError, match="p must be >= 1"):
        nearest_other(X, y, norm=0.5, device="cpu")
    with pytest.raises(SepcheckError, match="features per row"):
        separation(X, y, np.eye(4), [0, 1, 1, 0], device="cpu")
    with pytest.raises(SepcheckError, match="k=0"):
        nearest_other(X, y, k=0, device="cpu")
    with pytest.raises(SepcheckError, match="unknown backend"):
        nearest_other(X, y, backend="gpu-magic", device="cpu")
    with pytest.raises(SepcheckError, match="linf and l1 only"):
        nearest_other(X, y, norm="l2", backend="numba", device="cpu")
    with pytest.raises(SepcheckError, match="go together"):
        nearest_other(X, y, queries=X, device="cpu")


CLI_NPZ_CASES = {
    "nan": (dict(X=np.array([[0.0, np.nan], [1.0, 1.0]]), y=np.array([0, 1])), ["NaN"]),
    "count": (dict(X=np.zeros((3, 2)), y=np.array([0, 1])), ["2 labels", "3 rows"]),
    "single": (dict(X=np.eye(3), y=np.array([1, 1, 1])), ["single class"]),
    "empty": (dict(X=np.zeros((0, 2)), y=np.zeros(0, dtype=int)), ["empty"]),
    "nonint": (dict(X=np.eye(2), y=np.array([0.5, 1.0])), ["non-integer"]),
    "dims": (dict(X=np.eye(2), y=np.array([0, 1]), X_test=np.eye(3), y_test=np.array([0, 1, 0])), ["features per row"]),
    "nokey": (dict(X=np.eye(2)), ["no array 'y'"]),
}


@pytest.mark.parametrize("case", sorted(CLI_NPZ_CASES))
def test_cli_bad_arrays(tmp_path, case):
    arrays, words = CLI_NPZ_CASES[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    out, plot = tmp_path / "o.h5", tmp_path / "p.png"
    r = run("separation", "--device", "cpu", str(path), "--split", "both" if "X_test" in arrays else "train",
            "--out", str(out), "--plot", str(plot))
    assert_one_line_error(r, *words)
    assert not out.exists() and not plot.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_cli_bad_options(tmp_path):
    path, _ = _npz(tmp_path)
    assert_one_line_error(run("separation", "--device", "cpu", str(path), "--norm", "lfoo"), "unknown norm")
    assert_one_line_error(run("separation", "--device", "cpu", str(path), "--norm", "0.5"), "p must be >= 1")
    assert_one_line_error(run("separation", "--device", "cpu", str(path), "--eps", "-1"), "--eps")
    assert_one_line_error(run("separation", "--device", "cpu", str(path), "--backend", "magic"), "unknown backend")
    assert_one_line_error(run("separation", "--device", "cpu", str(path), "--backend", "numba", "--norm", "l2"), "linf and l1 only")
    assert_one_line_error(run("separation", str(path), "--device", "tpu"), "unknown device")
    import torch

    if not torch.cuda.is_available():
        assert_one_line_error(run("separation", str(path), "--device", "cuda", "--no-cache"), "no CUDA GPU")
    p2, _ = _npz(tmp_path, name="notest.npz", test=False)
    assert_one_line_error(run("separation", "--device", "cpu", str(p2), "--split", "both"), "no test split")
    assert_one_line_error(run("separation", "--device", "cpu", "no-such-set"), "unknown data set")
    assert_one_line_error(run("separation", "--device", "cpu", str(tmp_path / "missing.npz")), "does not exist")


def test_cli_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([object(), 1], dtype=object), y=np.array([0, 1]))
    assert_one_line_error(run("separation", "--device", "cpu", str(path)), "never loads")


@pytest.mark.parametrize("kind", ["npz-truncated", "npz-garbage", "h5-garbage", "h5-truncated"])
def test_cli_corrupted_files(tmp_path, kind):
    good, _ = _npz(tmp_path)
    if kind.startswith("npz"):
        path = tmp_path / "c.npz"
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2] if kind == "npz-truncated" else b"PK\x03\x04garbage")
    else:
        path = tmp_path / "c.h5"
        if kind == "h5-garbage":
            path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
        else:
            with h5py.File(tmp_path / "full.h5", "w") as f:
                f["X"] = np.random.default_rng(0).random((500, 50))
                f["y"] = np.arange(500) % 2
            path.write_bytes((tmp_path / "full.h5").read_bytes()[:3000])
    out = tmp_path / "o.h5"
    assert_one_line_error(run("separation", "--device", "cpu", str(path), "--out", str(out)), "corrupted")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["magic", "truncated", "gzip", "count", "nolabels"])
def test_cli_bad_idx(tmp_path, kind):
    X = np.random.default_rng(0).integers(0, 256, (10, 4, 4)).astype(np.uint8)
    y = (np.arange(10) % 2).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", X)
    if kind != "nolabels":
        _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y if kind != "count" else y[:7])
    img = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(img.read_bytes())
    if kind == "magic":
        img.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
    elif kind == "truncated":
        img.write_bytes(gzip.compress(raw[:-5]))
    elif kind == "gzip":
        img.write_bytes(img.read_bytes()[:40])
    words = {"magic": "magic number", "truncated": "truncated", "gzip": "corrupted or truncated",
             "count": "do not belong together", "nolabels": "no labels file"}[kind]
    assert_one_line_error(run("separation", "--device", "cpu", str(tmp_path)), words)


def test_drop_next_to_raw_minimum_and_conflicts(tmp_path):
    X = np.array([[0, 0], [0, 0], [10, 10], [200, 200], [20, 0], [90, 90]], dtype=np.uint8)
    y = np.array([0, 1, 0, 1, 0, 1])
    path = tmp_path / "c.npz"
    np.savez(path, X=X, y=y)
    r = run("separation", "--device", "cpu", path, "--drop", 1, "--json", "--no-cache")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["separation"] == 0 and rep["conflicts"] == 1
    d = oracle.nearest_other(X.astype(float), y)[0][:, 0]
    keep = np.setdiff1d(np.arange(6), [0])  # the closest point, ties to the lowest index
    want = oracle.nearest_other(X[keep].astype(float), y[keep])[0][:, 0].min() / 255
    assert rep["drop"]["dropped"] == [int(np.argsort(d, kind="stable")[0])] == [0]
    assert rep["drop"]["separation"] == pytest.approx(want)
    human = run("separation", "--device", "cpu", path, "--drop", 1, "--no-cache").stdout
    assert "drop 1" in human and "conflicts" in human
    assert_one_line_error(run("separation", "--device", "cpu", path, "--drop", 6, "--no-cache"), "--drop 6")
