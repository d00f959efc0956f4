"""`sepcheck datasets list|info|prepare` and `sepcheck separation NAME` on registered data
sets written in their official formats (click's CliRunner)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from sepcheck.cli import main
from sepcheck.datasets import available
from sepcheck.datasets.cifar import CIFAR10 as c10
from sepcheck.datasets.download import RemoteFile
from sepcheck.datasets.idx import MNIST as mnist_table
from tests import oracle
from tests.datasets.fixtures import (
    isolate,
    make_cifar10,
    md5,
    patch_table,
    tar_gz,
    write_mnist_like,
)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    return isolate(tmp_path, monkeypatch)


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _clean_error(result, *words):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output
    for w in words:
        assert w in err, err


def _cifar(home, monkeypatch, rng, verified=True):
    members, arrays = make_cifar10(rng, per_batch=6, n_test=10)
    data = tar_gz(members, c10.FOLDER)
    (home / "cifar10").mkdir(parents=True)
    (home / "cifar10" / c10.ARCHIVE.name).write_bytes(data)
    if verified:
        monkeypatch.setattr(c10, "ARCHIVE", RemoteFile(c10.ARCHIVE.name, c10.ARCHIVE.urls, md5=md5(data)))
    return arrays


def test_available_and_list(data_home):
    info = available()
    assert list(info) == ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "restricted-imagenet", "spiral"]
    assert info["mnist"].eps == 0.1 and info["cifar10"].eps == pytest.approx(0.0314, abs=1e-4)
    assert info["svhn"].eps == info["cifar10"].eps and info["restricted-imagenet"].eps == 0.005
    assert info["cifar100"].n_classes == 100 and info["svhn"].sizes == {"train": 73257, "test": 26032}
    assert info["restricted-imagenet"].splits == ("train", "val") and not info["restricted-imagenet"].downloadable
    rep = json.loads(run("datasets", "list", "--json").stdout)
    rows = {r["name"]: r for r in rep["datasets"]}
    assert rows["cifar10"]["shape"] == [3, 32, 32] and rows["cifar10"]["status"] == {"train": "missing", "test": "missing"}
    assert rows["spiral"]["status"]["train"] == "built-in"
    human = run("datasets", "list").stdout
    for name in info:
        assert name in human
    assert "8/255" in human and "0.005" in human


def test_info_shows_files_and_state(data_home, monkeypatch):
    write_mnist_like(data_home / "mnist", np.random.default_rng(0), splits=("t10k",))
    rep = json.loads(run("datasets", "info", "mnist", "--json").stdout)
    files = {f["name"]: f for f in rep["remote_files"]}
    assert files["t10k-images-idx3-ubyte.gz"]["present"] and not files["train-images-idx3-ubyte.gz"]["present"]
    assert files["train-images-idx3-ubyte.gz"]["md5"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert rep["status"] == {"train": "missing", "test": "files"} and rep["directory"] == str(data_home / "mnist")
    human = run("datasets", "info", "cifar-10", "--data-dir", str(data_home)).stdout
    assert "c58f30108f718f92721af3b95e74349a" in human and "typical eps 8/255" in human
    _clean_error(run("datasets", "info", "cifar"), "unknown data set 'cifar'", "did you mean")


def test_prepare_cifar10_json_and_cache(data_home, monkeypatch):
    arrays = _cifar(data_home, monkeypatch, np.random.default_rng(1))
    r = run("datasets", "prepare", "cifar10", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["splits"]["train"]["n"] == 30 and rep["splits"]["test"]["n"] == 10 and rep["notes"] == []
    assert rep["splits"]["train"]["verified"] and rep["splits"]["test"]["cache"] == str(data_home / "cifar10" / "test.h5")
    assert json.loads(run("datasets", "list", "--json").stdout)["datasets"][2]["status"]["train"] == "cached"
    human = run("datasets", "prepare", "cifar10", "--no-verify").stdout
    assert "cifar10 test: 10 images 3x32x32 (verified)" in human  # the verified cache is reused
    assert arrays["test"][0].shape == (10, 3, 32, 32)


def test_prepare_no_verify_prints_the_warning_as_a_note(data_home, monkeypatch):
    _cifar(data_home, monkeypatch, np.random.default_rng(2), verified=False)
    r = run("datasets", "prepare", "cifar10", "--data-dir", str(data_home), "--no-verify")
    assert r.exit_code == 0, r.output
    assert "note: cifar10: checksums not verified" in r.stdout and "(not verified)" in r.stdout


def test_prepare_errors(data_home):
    _clean_error(run("datasets", "prepare", "mnist", "--no-download"), "train-images-idx3-ubyte.gz", "--no-download")
    _clean_error(run("datasets", "prepare", "svhn"), "train_32x32.mat", "SEPCHECK_OFFLINE",
                 "http://ufldl.stanford.edu/housenumbers/")
    _clean_error(run("datasets", "prepare", "restricted-imagenet"), "never downloads ImageNet")
    _clean_error(run("datasets", "prepare", "mnist", "--workers", "2"), "--workers applies to")
    r = run("datasets", "prepare", "spiral", "--json")
    assert r.exit_code == 0 and "nothing to prepare" in json.loads(r.stdout)["notes"][0]
    assert list(data_home.iterdir()) == []


def test_separation_cli_on_cifar10_both_splits(data_home, monkeypatch):
    arrays = _cifar(data_home, monkeypatch, np.random.default_rng(3))
    r = run("separation", "--device", "cpu", "cifar10", "--split", "both", "--no-download", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    X, y = arrays["train"]
    Xt, yt = arrays["test"]
    d, _ = oracle.nearest_other(X, y, p=math.inf, scale=255.0)
    td, _ = oracle.nearest_other(X, y, Xt, yt, p=math.inf, scale=255.0)
    assert rep["dataset"] == "cifar10" and rep["separation"] == d.min() and rep["test_separation"] == td.min()
    assert rep["typical_eps"] == pytest.approx(8 / 255) and rep["ratio"] == pytest.approx(d.min() / (16 / 255))
    human = run("separation", "--device", "cpu", "cifar10", "--split", "both").stdout
    assert "typical eps 0.0314" in human and "sep / 2eps" in human


def test_separation_cli_mnist_fallback_note(data_home, monkeypatch):
    written = write_mnist_like(data_home / "mnist", np.random.default_rng(4), n_test=40, splits=("t10k",))
    patch_table(monkeypatch, mnist_table, written["t10k"][2])
    r = run("separation", "--device", "cpu", "mnist", "--data-dir", str(data_home), "--no-download", "--split", "both")
    assert r.exit_code == 0, r.output
    assert "note: mnist: the training files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz)" in r.stdout
    assert "first 32 of the 40 test images" in r.stdout and "typical eps 0.1000" in r.stdout
    X, y = written["t10k"][0], written["t10k"][1]
    d, _ = oracle.nearest_other(X[:32], y[:32], p=math.inf, scale=255.0)
    assert f"separation  {d.min():.4f}" in r.stdout
    _clean_error(run("separation", "--device", "cpu", "fashion-mnist", "--no-download"), "fashion-mnist", "t10k-images-idx3-ubyte.gz")


def test_open_dataset_user_files_unchanged(tmp_path, data_home):
    from sepcheck import SepcheckError
    from sepcheck.datasets import open_dataset

    rng = np.random.default_rng(5)
    X, y = rng.integers(0, 256, (12, 1, 3, 3)).astype(np.uint8), np.arange(12) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=X[:4], y_test=y[:4])
    ds = open_dataset(tmp_path / "d.npz")
    assert ds.name == "d" and ds.has_test and ds.eps is None
    np.testing.assert_array_equal(ds.X, X)
    only = tmp_path / "idx"
    write_mnist_like(only, rng, n_test=10, side=4, splits=("t10k",))
    ds = open_dataset(only)
    assert ds.X.shape == (10, 1, 4, 4) and not ds.has_test and "used as the training split" in ds.notes[0]
    spiral = open_dataset("spiral")
    assert spiral.X.shape == (1000, 2) and spiral.X_test.shape == (500, 2) and spiral.eps is None
    with pytest.raises(SepcheckError, match="unknown data set 'cifar11'.*registered name"):
        open_dataset("cifar11")
