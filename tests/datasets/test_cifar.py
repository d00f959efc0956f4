"""CIFAR-10/100: the python archives and extracted folders, pixel for pixel; the restricted
unpickler (a malicious pickle runs nothing); corrupted archives; options and the cache."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest

from sepcheck import SepcheckError
from sepcheck.analysis.separation import separation
from sepcheck.datasets import DatasetWarning, load, load_split, open_dataset
from sepcheck.datasets.cifar import CIFAR10 as c10
from sepcheck.datasets.cifar import CIFAR100 as c100
from sepcheck.datasets.download import RemoteFile
from sepcheck.datasets.safe_pickle import safe_loads
from tests import oracle
from tests.datasets.fixtures import (
    cifar_batch,
    make_cifar10,
    make_cifar100,
    md5,
    py2_style_pickle,
    tar_gz,
)


def _archive(home, monkeypatch, table, members, verified=True):
    data = tar_gz(members, table.FOLDER)
    folder = home / table.info.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / table.ARCHIVE.name).write_bytes(data)
    if verified:
        monkeypatch.setattr(table, "ARCHIVE", RemoteFile(table.ARCHIVE.name, table.ARCHIVE.urls, md5=md5(data)))
    return folder / table.ARCHIVE.name


class Boom:
    """Unpickling this creates a file (if anything it asks for were run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("py2", [False, True], ids=["protocol2", "python2-style"])
def test_cifar10_archive_pixel_exact(data_home, monkeypatch, py2):
    members, arrays = make_cifar10(np.random.default_rng(0), py2=py2)
    _archive(data_home, monkeypatch, c10, members)
    for split in ("train", "test"):
        X, y = load("cifar10", split)
        assert X.dtype == np.uint8 and X.shape[1:] == (3, 32, 32) and y.dtype == np.int64
        np.testing.assert_array_equal(X, arrays[split][0])
        np.testing.assert_array_equal(y, arrays[split][1])
    data = load_split("cifar10", "test")
    assert data.classes[:3] == ["airplane", "automobile", "bird"] and data.verified
    assert data.origin.endswith("test.h5")


def test_cifar10_channel_layout_is_rgb_planes(data_home, monkeypatch):
    # the 3072 bytes of a row are the R plane, then G, then B, each 32 x 32 row-major
    rng = np.random.default_rng(1)
    members, _ = make_cifar10(rng, per_batch=2, n_test=2)
    row = np.zeros((2, 3072), dtype=np.uint8)
    row[0, 0] = 11          # R at (0, 0)
    row[0, 1024 + 33] = 22  # G at (1, 1)
    row[0, 2048 + 1023] = 33  # B at (31, 31)
    members["test_batch"] = cifar_batch(row, np.array([1, 2]))
    _archive(data_home, monkeypatch, c10, members)
    X, _ = load("cifar10", "test")
    assert X[0, 0, 0, 0] == 11 and X[0, 1, 1, 1] == 22 and X[0, 2, 31, 31] == 33 and X.sum() == 66


def test_cifar10_extracted_folder_verified_with_member_md5s(data_home, monkeypatch):
    members, arrays = make_cifar10(np.random.default_rng(2))
    folder = data_home / "cifar10" / c10.FOLDER
    folder.mkdir(parents=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    monkeypatch.setattr(c10, "MEMBER_MD5", {n: md5(d) for n, d in members.items()})
    X, y = load("cifar10", "train")
    np.testing.assert_array_equal(X, arrays["train"][0])
    np.testing.assert_array_equal(y, arrays["train"][1])
    # a changed member fails verification against its md5
    (folder / "test_batch").write_bytes(members["data_batch_1"])
    with pytest.raises(SepcheckError, match="test_batch.*published md5"):
        load("cifar10", "test")


def test_cifar100_fine_and_coarse_have_separate_caches(data_home, monkeypatch):
    members, arrays = make_cifar100(np.random.default_rng(3))
    _archive(data_home, monkeypatch, c100, members)
    X, fine = load("cifar100", "train")
    Xc, coarse = load("cifar100", "train", label_mode="coarse")
    np.testing.assert_array_equal(X, arrays["train"][0])
    np.testing.assert_array_equal(Xc, X)
    np.testing.assert_array_equal(fine, arrays["train"][1])
    np.testing.assert_array_equal(coarse, arrays["train"][2])
    assert (data_home / "cifar100" / "train.h5").is_file()
    assert (data_home / "cifar100" / "train-coarse.h5").is_file()
    assert load_split("cifar100", "test", label_mode="coarse").classes == [f"c{i}" for i in range(20)]
    with pytest.raises(SepcheckError, match="label_mode='medium' is invalid"):
        load("cifar100", "train", label_mode="medium")


def test_malicious_pickle_in_archive_runs_nothing(data_home, monkeypatch, tmp_path):
    target = tmp_path / "pwned"
    members, _ = make_cifar10(np.random.default_rng(4))
    members["data_batch_3"] = pickle.dumps({b"data": Boom(target), b"labels": [0]}, protocol=2)
    _archive(data_home, monkeypatch, c10, members)
    with pytest.raises(SepcheckError) as e:
        load("cifar10", "train")
    assert "io.open" in str(e.value) and "data_batch_3" in str(e.value) and "never loads" in str(e.value)
    assert not target.exists()
    assert not (data_home / "cifar10" / "train.h5").exists()


@pytest.mark.parametrize("payload", ["os.system", "eval", "object", "reduce-ndarray"])
def test_restricted_unpickler_refuses_every_other_global(tmp_path, payload):
    target = tmp_path / "created"

    class Evil:
        def __reduce__(self):
            if payload == "os.system":
                return (os.system, (f"touch {target}",))
            if payload == "eval":
                return (eval, (f"open({str(target)!r}, 'w')",))
            if payload == "object":
                return (Boom, (target,))
            return (np.ndarray, ((2,),))  # calling the array constructor directly

    for proto in (0, 2, 4):
        with pytest.raises(SepcheckError, match="never loads"):
            safe_loads(pickle.dumps({b"data": Evil()}, protocol=proto), "x")
    assert not target.exists()
    with pytest.raises(SepcheckError, match="never loads"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "x")
    ok = safe_loads(py2_style_pickle({b"a": np.arange(5, dtype=np.int16), b"b": [1.5, b"x", "y"]}), "x")
    np.testing.assert_array_equal(ok[b"a"], np.arange(5))
    assert ok[b"b"] == [1.5, b"x", b"y"]  # Python 2 strings come back as bytes


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing-member", "bad-data", "not-a-dict"])
def test_corrupted_cifar_archives_give_clear_errors(data_home, monkeypatch, kind):
    members, _ = make_cifar10(np.random.default_rng(5))
    words = {"truncated": "corrupted or truncated", "garbage": "corrupted or truncated",
             "missing-member": "has no member cifar-10-batches-py/data_batch_4",
             "bad-data": "expected a uint8 (n, 3072) array", "not-a-dict": "not a CIFAR batch dict"}[kind]
    if kind == "missing-member":
        del members["data_batch_4"]
    if kind == "bad-data":
        members["data_batch_2"] = pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, protocol=2)
    if kind == "not-a-dict":
        members["data_batch_2"] = pickle.dumps([1, 2, 3], protocol=2)
    path = _archive(data_home, monkeypatch, c10, members, verified=False)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if kind == "garbage":
        path.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.warns(DatasetWarning, match="checksums not verified"), pytest.raises(SepcheckError) as e:
        load("cifar10", "train", verify=False)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (data_home / "cifar10" / "train.h5").exists()


def test_open_dataset_cifar10_and_separation_matches_oracle(data_home, monkeypatch):
    members, arrays = make_cifar10(np.random.default_rng(6), per_batch=8, n_test=12)
    _archive(data_home, monkeypatch, c10, members)
    ds = open_dataset("cifar10")
    assert ds.name == "cifar10" and ds.eps == pytest.approx(8 / 255) and ds.notes == []
    np.testing.assert_array_equal(ds.X, arrays["train"][0])
    np.testing.assert_array_equal(ds.X_test, arrays["test"][0])
    res = separation(ds.X, ds.y, ds.X_test, ds.y_test, norm="l2", device="cpu")
    d, _ = oracle.nearest_other(ds.X, ds.y, p=2, scale=255.0)
    td, _ = oracle.nearest_other(ds.X, ds.y, ds.X_test, ds.y_test, p=2, scale=255.0)
    np.testing.assert_allclose(res.distances, d[:, 0], rtol=1e-6)
    np.testing.assert_allclose(res.test_distances, td[:, 0], rtol=1e-6)
    res_inf = separation(ds.X, ds.y, norm="linf", device="cpu")
    d_inf, _ = oracle.nearest_other(ds.X, ds.y, p=math.inf, scale=255.0)
    np.testing.assert_array_equal(res_inf.distances, d_inf[:, 0])
