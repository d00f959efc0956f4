"""MNIST / Fashion-MNIST: the IDX reader, the registered loaders, their checksums, the
HDF5 cache, the t10k-only fallback and the real MNIST test set."""

from __future__ import annotations

import gzip
import json
import math
import os
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError
from sepcheck.analysis.separation import separation
from sepcheck.datasets import (
    DatasetWarning,
    DataUnavailableError,
    load,
    load_split,
    open_dataset,
    read_idx,
    read_idx_pair,
)
from sepcheck.datasets.idx import MNIST as mnist_table
from sepcheck.datasets.idx import FashionMNIST as fashion_table
from sepcheck.datasets.idx import parse_idx
from tests import oracle
from tests.conftest import MNIST_FILES
from tests.datasets.fixtures import idx_bytes, md5, patch_table, write_idx_gz, write_mnist_like

DTYPES = [np.uint8, np.int8, np.dtype(">i2"), np.dtype(">i4"), np.dtype(">f4"), np.dtype(">f8")]


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_idx_round_trip_any_shape_and_type(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    out = parse_idx(idx_bytes(arr))
    assert out.shape == tuple(shape) and out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, arr)


def test_idx_files_gz_and_plain(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    y = np.arange(7, dtype=np.uint8)
    write_idx_gz(tmp_path / "a-images-idx3-ubyte.gz", X)
    (tmp_path / "a-labels-idx1-ubyte").write_bytes(idx_bytes(y))
    np.testing.assert_array_equal(read_idx(tmp_path / "a-images-idx3-ubyte.gz"), X)
    Xl, yl = read_idx_pair(tmp_path / "a-images-idx3-ubyte.gz", tmp_path / "a-labels-idx1-ubyte")
    assert Xl.shape == (7, 1, 5, 3) and yl.dtype == np.int64
    np.testing.assert_array_equal(Xl[:, 0], X)


_GOOD = idx_bytes(np.zeros((2, 2), dtype=np.uint8))  # 12 header bytes + 4 payload bytes
CORRUPT = {
    "magic": (b"\x08\x00" + _GOOD[2:], "wrong magic"),
    "header": (_GOOD[:6], "truncated inside its header"),
    "payload": (_GOOD[:-1], "truncated or corrupted"),
    "rows": (_GOOD[:4] + (3).to_bytes(4, "big") + _GOOD[8:], "needs 18"),
    "empty": (b"", "no header"),
    "gz": (gzip.compress(_GOOD * 100)[:40], "corrupted or truncated"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_idx_corruptions_give_one_line_errors(tmp_path, kind):
    data, words = CORRUPT[kind]
    path = tmp_path / ("x.gz" if kind == "gz" else "x")
    path.write_bytes(data)
    with pytest.raises(SepcheckError) as e:
        read_idx(path)
    assert words in str(e.value) and "\n" not in str(e.value)


# ----- the registered loader ----------------------------------------------------------

@pytest.mark.parametrize("table", [mnist_table, fashion_table], ids=["mnist", "fashion-mnist"])
def test_registered_idx_loader_pixel_exact_verified_and_cached(data_home, monkeypatch, table):
    name = table.info.name
    rng = np.random.default_rng(1)
    written = write_mnist_like(data_home / name, rng)
    patch_table(monkeypatch, table, {**written["train"][2], **written["t10k"][2]})
    for split, prefix in (("train", "train"), ("test", "t10k")):
        X, y = load(name, split)
        assert X.dtype == np.uint8 and y.dtype == np.int64 and X.shape[1:] == (1, 28, 28)
        np.testing.assert_array_equal(X, written[prefix][0])
        np.testing.assert_array_equal(y, written[prefix][1])
    cache = data_home / name / "train.h5"
    with h5py.File(cache, "r") as f:
        assert f["X"].chunks is not None and f["X"].dtype == np.uint8
        assert f.attrs["verified"] and "md5" in f.attrs["sources"]
    data = load_split(name, "train")
    assert data.origin == str(cache) and data.verified
    np.testing.assert_array_equal(data.X, written["train"][0])


def test_wrong_checksum_is_an_error_and_no_verify_warns(data_home, monkeypatch):
    written = write_mnist_like(data_home / "mnist", np.random.default_rng(2))
    bad = {k: "0" * 32 for k in written["t10k"][2]}
    patch_table(monkeypatch, mnist_table, bad)
    with pytest.raises(SepcheckError) as e:
        load("mnist", "test")
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "published md5" in msg and "--no-verify" in msg
    assert not (data_home / "mnist" / "test.h5").exists()
    with pytest.warns(DatasetWarning, match="checksums not verified"):
        X, _ = load("mnist", "test", verify=False)
    np.testing.assert_array_equal(X, written["t10k"][0])
    # a cache made without verification is not trusted when verification is asked for
    with pytest.raises(SepcheckError, match="published md5"):
        load("mnist", "test")


def test_changed_source_file_invalidates_the_cache(data_home, monkeypatch):
    folder = data_home / "mnist"
    written = write_mnist_like(folder, np.random.default_rng(3), splits=("t10k",))
    patch_table(monkeypatch, mnist_table, written["t10k"][2])
    load("mnist", "test")
    cache = folder / "test.h5"
    first = cache.stat().st_mtime_ns
    load("mnist", "test")
    assert cache.stat().st_mtime_ns == first  # read, not rewritten
    new = write_mnist_like(folder, np.random.default_rng(4), splits=("t10k",))
    patch_table(monkeypatch, mnist_table, new["t10k"][2])
    X, y = load("mnist", "test")
    np.testing.assert_array_equal(X, new["t10k"][0])
    np.testing.assert_array_equal(y, new["t10k"][1])
    # a corrupted cache is ignored and rewritten
    cache.write_bytes(b"not hdf5")
    X2, _ = load("mnist", "test")
    np.testing.assert_array_equal(X2, new["t10k"][0])
    with h5py.File(cache, "r") as f:
        assert f["X"].shape == X2.shape
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_cache_alone_is_used_when_sources_are_gone(data_home, monkeypatch):
    folder = data_home / "mnist"
    written = write_mnist_like(folder, np.random.default_rng(5), splits=("t10k",))
    patch_table(monkeypatch, mnist_table, written["t10k"][2])
    load("mnist", "test")
    for name in written["t10k"][2]:
        (folder / name).unlink()
    X, _ = load("mnist", "test", download=False)
    np.testing.assert_array_equal(X, written["t10k"][0])


def test_missing_files_error_names_everything(data_home):
    with pytest.raises(DataUnavailableError) as e:
        load("mnist", "train")
    msg = str(e.value)
    for word in ("mnist", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", str(data_home / "mnist"),
                 "SEPCHECK_OFFLINE", "https://ossci-datasets.s3.amazonaws.com/mnist/"):
        assert word in msg, msg
    assert "\n" not in msg
    with pytest.raises(DataUnavailableError, match="--no-download"):
        load("fashion-mnist", "test", download=False)
    with pytest.raises(SepcheckError, match="no split 'val'"):
        load("mnist", "val")
    with pytest.raises(SepcheckError, match="no option 'size'"):
        load("mnist", "test", size=3)


def test_t10k_only_fallback_split_and_note(data_home, monkeypatch):
    written = write_mnist_like(data_home / "mnist", np.random.default_rng(6), n_test=50, splits=("t10k",))
    patch_table(monkeypatch, mnist_table, written["t10k"][2])
    X, y = load("mnist", "test")  # the test split alone works
    np.testing.assert_array_equal(X, written["t10k"][0])
    with pytest.raises(DataUnavailableError):
        load("mnist", "train")
    ds = open_dataset("mnist", download=False)
    assert ds.name == "mnist" and ds.eps == 0.1
    np.testing.assert_array_equal(ds.X, X[:40])
    np.testing.assert_array_equal(ds.X_test, X[40:])
    np.testing.assert_array_equal(ds.y_test, y[40:])
    assert any("first 40 of the 50 test images" in n and "last 10" in n for n in ds.notes), ds.notes


def test_registered_names_win_and_paths_still_work(data_home, monkeypatch, tmp_path):
    written = write_mnist_like(data_home / "mnist", np.random.default_rng(7))
    patch_table(monkeypatch, mnist_table, {**written["train"][2], **written["t10k"][2]})
    ds = open_dataset("MNIST")
    assert ds.name == "mnist" and ds.classes == [str(i) for i in range(10)]
    assert ds.meta["train"]["verified"] and ds.meta["test"]["n"] == 20
    # the same files as a directory path: the IDX-directory reader, same arrays
    by_path = open_dataset(str(data_home / "mnist"))
    np.testing.assert_array_equal(by_path.X, ds.X)
    np.testing.assert_array_equal(by_path.X_test, ds.X_test)


def test_separation_on_loaded_idx_matches_oracle(data_home, monkeypatch):
    written = write_mnist_like(data_home / "fashion-mnist", np.random.default_rng(8), n_train=60, n_test=25)
    patch_table(monkeypatch, fashion_table, {**written["train"][2], **written["t10k"][2]})
    X, y = load("fashion-mnist", "train")
    Xt, yt = load("fashion-mnist", "test")
    res = separation(X, y, Xt, yt, norm="linf", device="cpu")
    d, _ = oracle.nearest_other(X, y, p=math.inf, scale=255.0)
    td, _ = oracle.nearest_other(X, y, Xt, yt, p=math.inf, scale=255.0)
    np.testing.assert_array_equal(res.distances, d[:, 0])
    np.testing.assert_array_equal(res.test_distances, td[:, 0])
    assert res.separation == d.min()


# ----- the real MNIST test set --------------------------------------------------------

def test_real_mnist_test_set_through_the_loader(mnist_dir, data_home):
    folder = data_home / "mnist"
    folder.mkdir()
    shared_before = sorted(p.name for p in mnist_dir.iterdir())  # it may hold others' files
    for name in MNIST_FILES:  # symlinks: the shared folder is never written to
        os.symlink(mnist_dir / name, folder / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        data = load_split("mnist", "test", download=False, verify=True)
    assert data.verified and data.X.shape == (10000, 1, 28, 28) and data.X.dtype == np.uint8
    assert {s["name"]: s["md5"] for s in data.sources} == MNIST_FILES
    assert np.bincount(data.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    ref_X, ref_y = read_idx_pair(mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(data.X, ref_X)
    np.testing.assert_array_equal(data.y, ref_y)
    assert (folder / "test.h5").is_file() and sorted(p.name for p in mnist_dir.iterdir()) == shared_before
    ds = open_dataset("mnist", download=False)
    assert ds.X.shape[0] == 8000 and ds.X_test.shape[0] == 2000 and ds.notes
    np.testing.assert_array_equal(ds.X_test, ref_X[8000:])


def test_read_only_data_folder_is_never_written(data_home, monkeypatch):
    folder = data_home / "mnist"
    written = write_mnist_like(folder, np.random.default_rng(9), splits=("t10k",))
    patch_table(monkeypatch, mnist_table, written["t10k"][2])
    folder.chmod(0o555)
    try:
        with pytest.warns(DatasetWarning, match="cache not written.*read-only"):
            X, _ = load("mnist", "test")
        assert sorted(p.name for p in folder.iterdir()) == sorted(written["t10k"][2])
    finally:
        folder.chmod(0o755)
    np.testing.assert_array_equal(X, written["t10k"][0])


# ----- re-compressed files: verified by the md5 of their decompressed content ---------------

def _recompress(path, level=1):
    """The same IDX content in a .gz with other bytes (as a lossless reconstruction has)."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw, compresslevel=level, mtime=12345))
    return md5(raw)


def test_recompressed_gz_is_verified_by_its_content_with_a_note(data_home, monkeypatch):
    folder = data_home / "mnist"
    written = write_mnist_like(folder, np.random.default_rng(10), splits=("t10k",))
    sums = written["t10k"][2]  # the md5s of the "published" archives
    content = {n: _recompress(folder / n) for n in sums}
    assert all(md5((folder / n).read_bytes()) != sums[n] for n in sums)
    patch_table(monkeypatch, mnist_table, sums, content=content)
    for attempt in ("built", "cached"):
        with pytest.warns(DatasetWarning, match="not byte-identical.*md5 of the decompressed content") as rec:
            data = load_split("mnist", "test", download=False)
        assert data.verified and len(rec) == 1, attempt
        np.testing.assert_array_equal(data.X, written["t10k"][0])
    assert data.origin.endswith("test.h5")
    assert {s["name"]: s["content_md5"] for s in data.sources} == content
    # the content decides: a file whose pixels differ fails, naming both checks
    X = written["t10k"][0][:, 0].copy()
    X[0, 0, 0] ^= 1
    write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", X)
    with pytest.raises(SepcheckError) as e:
        load("mnist", "test", download=False)
    msg = str(e.value)
    assert "published md5" in msg and "decompressed content has md5" in msg and "\n" not in msg


def test_t10k_only_folder_is_the_test_split(tmp_path, data_home):
    rng = np.random.default_rng(11)
    written = write_mnist_like(tmp_path / "t10k", rng, n_test=30, side=5, splits=("t10k",))
    X, y = written["t10k"][:2]
    ds = open_dataset(tmp_path / "t10k")
    assert ds.test_only and not ds.has_test and "they are the test split" in ds.notes[0]
    Xs, ys, Xt, _ = ds.split_arrays("test")
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    assert Xt is None
    with pytest.raises(SepcheckError, match="holds only a test split.*--split test"):
        ds.split_arrays("both")
    # a folder with both splits keeps them apart
    full = write_mnist_like(tmp_path / "full", rng, n_train=12, n_test=8, side=5)
    both = open_dataset(tmp_path / "full")
    Xa, _, Xb, _ = both.split_arrays("both")
    np.testing.assert_array_equal(Xa, full["train"][0])
    np.testing.assert_array_equal(Xb, full["t10k"][0])
    assert not both.test_only and both.notes == [] and both.eps is None  # not a registered data set's files


def test_separation_cli_on_a_t10k_folder(tmp_path, data_home):
    from click.testing import CliRunner

    from sepcheck.cli import main

    written = write_mnist_like(tmp_path / "t10k", np.random.default_rng(12), n_test=40, side=6, splits=("t10k",))
    X, y = written["t10k"][:2]
    d, _ = oracle.nearest_other(X, y, p=math.inf, scale=255.0)
    for split in ("test", "train"):
        r = CliRunner().invoke(main, ["separation", "--device", "cpu", str(tmp_path / "t10k"), "--split", split, "--json"])
        assert r.exit_code == 0, r.output
        rep = json.loads(r.stdout)
        assert rep["separation"] == d.min() and rep["n"] == 40
        assert any("only the t10k (test) files" in n and "--split train" in n for n in rep["notes"])
    r = CliRunner().invoke(main, ["separation", "--device", "cpu", str(tmp_path / "t10k"), "--split", "both"])
    assert r.exit_code == 2 and "holds only a test split" in r.stderr


def test_real_mnist_folders(mnist_dir, mnist_full_dir, data_home):
    # the official t10k folder: the test split, recognised by its content
    t10k = open_dataset(mnist_dir)
    assert t10k.test_only and t10k.X.shape == (10000, 1, 28, 28)
    assert any("the official mnist files" in n and "t10k-images" in n for n in t10k.notes), t10k.notes
    assert t10k.eps == 0.1  # recognised as MNIST: the paper's typical eps applies
    full = open_dataset(mnist_full_dir)
    assert full.eps == 0.1 and full.X.shape == (60000, 1, 28, 28)
    # the reconstructed training files through the registered loader, without --no-verify
    folder = data_home / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        os.symlink(mnist_full_dir / name, folder / name)
    with pytest.warns(DatasetWarning, match="train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz are not"):
        data = load_split("mnist", "train", download=False, cache=False)
    assert data.verified and data.X.shape == (60000, 1, 28, 28)
    assert np.bincount(data.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert all(s["content_md5"] == mnist_table.files[s["name"]].content_md5 for s in data.sources)
