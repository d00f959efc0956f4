"""SVHN: the official .mat layout (X (32, 32, 3, n), y (n, 1) with 10 for digit 0), pixel
for pixel; corrupted and incomplete .mat files; separation against the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sepcheck import SepcheckError
from sepcheck.analysis.separation import separation
from sepcheck.datasets import DatasetWarning, load, open_dataset
from sepcheck.datasets.download import RemoteFile
from sepcheck.datasets.svhn import SVHN
from tests import oracle
from tests.datasets.fixtures import md5, write_svhn_mat


def _write(home, monkeypatch, rng, n=(30, 12)):
    arrays, sums = {}, {}
    for split, count in zip(("train", "test"), n, strict=True):
        X = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(count) % 10
        data = write_svhn_mat(home / "svhn" / f"{split}_32x32.mat", X, digits)
        arrays[split] = (X, digits.astype(np.int64))
        sums[split] = md5(data)
    files = {s: RemoteFile(f.name, (), md5=sums[s]) for s, f in SVHN.FILES.items()}
    monkeypatch.setattr(SVHN, "FILES", files)
    return arrays


def test_svhn_pixel_exact_and_label_10_is_zero(data_home, monkeypatch):
    arrays = _write(data_home, monkeypatch, np.random.default_rng(0))
    for split in ("train", "test"):
        X, y = load("svhn", split)
        assert X.shape[1:] == (3, 32, 32) and X.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(X, arrays[split][0])
        np.testing.assert_array_equal(y, arrays[split][1])
        assert 0 in y and y.max() == 9
    # the file itself stores 10 for digit 0, (H, W, C, n) layout
    from scipy.io import loadmat

    raw = loadmat(data_home / "svhn" / "test_32x32.mat")
    assert raw["y"][0, 0] == 10 and raw["X"].shape == (32, 32, 3, 12)
    assert raw["X"][5, 7, 2, 3] == arrays["test"][0][3, 2, 5, 7]


@pytest.mark.parametrize("kind", ["no-X", "no-y", "truncated", "garbage", "bad-labels", "count"])
def test_bad_mat_files_give_clear_errors(data_home, monkeypatch, kind):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    digits = np.arange(6) % 10
    path = data_home / "svhn" / "test_32x32.mat"
    words = {"no-X": "no variable 'X'", "no-y": "no variable 'y'", "truncated": "not a readable .mat",
             "garbage": "not a readable .mat", "bad-labels": "labels must be 1..10", "count": "6 images but 5 labels"}[kind]
    if kind in ("no-X", "no-y"):
        from scipy.io import savemat

        path.parent.mkdir(parents=True)
        savemat(path, {"y": digits[:, None]} if kind == "no-X" else {"X": X.transpose(2, 3, 1, 0)})
    elif kind == "bad-labels":
        write_svhn_mat(path, X, digits)
        from scipy.io import savemat

        savemat(path, {"X": X.transpose(2, 3, 1, 0), "y": (digits + 20)[:, None]})
    elif kind == "count":
        from scipy.io import savemat

        path.parent.mkdir(parents=True)
        savemat(path, {"X": X.transpose(2, 3, 1, 0), "y": (digits + 1)[:5, None]})
    else:
        data = write_svhn_mat(path, X, digits)
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"MATLAB garbage" * 20)
    with pytest.warns(DatasetWarning, match="not verified"), pytest.raises(SepcheckError) as e:
        load("svhn", "test", verify=False)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (data_home / "svhn" / "test.h5").exists()


def test_svhn_open_dataset_and_oracle(data_home, monkeypatch):
    arrays = _write(data_home, monkeypatch, np.random.default_rng(2), n=(40, 15))
    ds = open_dataset("svhn")
    assert ds.eps == pytest.approx(8 / 255) and ds.has_test
    np.testing.assert_array_equal(ds.X_test, arrays["test"][0])
    res = separation(ds.X, ds.y, ds.X_test, ds.y_test, norm="linf", device="cpu")
    d, _ = oracle.nearest_other(ds.X, ds.y, p=math.inf, scale=255.0)
    td, _ = oracle.nearest_other(ds.X, ds.y, ds.X_test, ds.y_test, p=math.inf, scale=255.0)
    np.testing.assert_array_equal(res.distances, d[:, 0])
    np.testing.assert_array_equal(res.test_distances, td[:, 0])
