"""Downloads against a local HTTP server on 127.0.0.1 (never the internet): checksum match
and mismatch, interrupted transfers, HTTP errors, mirrors, offline mode, and the
registered loaders fetching their files."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from sepcheck.core.errors import DownloadError
from sepcheck.datasets import DatasetWarning, DataUnavailableError, load, open_dataset
from sepcheck.datasets.cifar import CIFAR10 as c10
from sepcheck.datasets.download import RemoteFile, download
from sepcheck.datasets.idx import MNIST as mnist_table
from tests.datasets.fixtures import (
    http_server,
    make_cifar10,
    md5,
    patch_table,
    tar_gz,
    write_mnist_like,
)

BODY = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def data_home(data_home, monkeypatch):
    """The package's data_home, with downloads on (from 127.0.0.1 only)."""
    monkeypatch.delenv("SEPCHECK_OFFLINE")
    return data_home


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_checksum_match(tmp_path, data_home):
    with http_server({"/f.bin": BODY}) as (base, hits):
        out = download(f"{base}/f.bin", tmp_path / "d" / "f.bin", checksum=("md5", md5(BODY)), progress=False)
    assert out.read_bytes() == BODY and hits == ["/f.bin"]
    assert _leftovers(tmp_path / "d") == ["f.bin"]
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others, like a plain file


@pytest.mark.parametrize("case", ["mismatch", "interrupted", "404"])
def test_failed_downloads_leave_nothing(tmp_path, data_home, case):
    routes = {"/f.bin": BODY}
    with http_server(routes, truncate=frozenset({"/f.bin"}) if case == "interrupted" else frozenset()) as (base, _):
        url = f"{base}/{'nope' if case == '404' else 'f.bin'}"
        checksum = ("md5", "0" * 32) if case == "mismatch" else ("md5", md5(BODY))
        with pytest.raises(DownloadError) as e:
            download(url, tmp_path / "f.bin", checksum=checksum, progress=False)
    words = {"mismatch": "published one is 000", "interrupted": "interrupted after 524288 of 1048576 bytes",
             "404": "HTTP 404"}[case]
    assert words in str(e.value)
    assert _leftovers(tmp_path) == ["data"]  # no f.bin, no .part


def test_registered_loader_downloads_verifies_and_loads(tmp_path, data_home, monkeypatch):
    src = tmp_path / "served"
    written = write_mnist_like(src, np.random.default_rng(0))
    sums = {**written["train"][2], **written["t10k"][2]}
    routes = {f"/mnist/{n}": (src / n).read_bytes() for n in sums}
    with http_server(routes) as (base, hits):
        patch_table(monkeypatch, mnist_table, sums, base_url=f"{base}/mnist")
        X, y = load("mnist", "train")
        Xt, _ = load("mnist", "test")
    np.testing.assert_array_equal(X, written["train"][0])
    np.testing.assert_array_equal(y, written["train"][1])
    np.testing.assert_array_equal(Xt, written["t10k"][0])
    assert sorted(hits) == sorted(routes)
    assert _leftovers(data_home / "mnist") == sorted([*sums, "test.h5", "train.h5"])


def test_mirror_first_then_canonical_urls(tmp_path, data_home, monkeypatch):
    written = write_mnist_like(tmp_path / "served", np.random.default_rng(1), splits=("t10k",))
    sums = written["t10k"][2]
    routes = {f"/canonical/{n}": (tmp_path / "served" / n).read_bytes() for n in sums}
    with http_server(routes) as (base, hits):
        patch_table(monkeypatch, mnist_table, sums, base_url=f"{base}/canonical")
        monkeypatch.setenv("SEPCHECK_MIRROR", f"{base}/mirror/")
        X, _ = load("mnist", "test")
    np.testing.assert_array_equal(X, written["t10k"][0])
    assert hits[:2] == ["/mirror/mnist/t10k-images-idx3-ubyte.gz", "/canonical/t10k-images-idx3-ubyte.gz"]


def test_checksum_mismatch_on_download_is_an_error_without_a_file(tmp_path, data_home, monkeypatch):
    written = write_mnist_like(tmp_path / "served", np.random.default_rng(2), splits=("t10k",))
    routes = {f"/m/{n}": (tmp_path / "served" / n).read_bytes() for n in written["t10k"][2]}
    with http_server(routes) as (base, _):
        patch_table(monkeypatch, mnist_table, {n: "f" * 32 for n in routes}, base_url=f"{base}/m")
        with pytest.raises(DataUnavailableError) as e:
            load("mnist", "test")
        assert "could not download t10k-images-idx3-ubyte.gz" in str(e.value) and "md5" in str(e.value)
        assert not (data_home / "mnist").exists() or _leftovers(data_home / "mnist") == []
        # --no-verify (a trusted mirror): saved and loaded with a warning
        with pytest.warns(DatasetWarning, match="not verified"):
            X, _ = load("mnist", "test", verify=False)
    np.testing.assert_array_equal(X, written["t10k"][0])


def test_offline_and_no_download_send_no_request(data_home, monkeypatch):
    with http_server({}) as (base, hits):
        patch_table(monkeypatch, mnist_table, {}, base_url=base)
        monkeypatch.setenv("SEPCHECK_OFFLINE", "1")
        with pytest.raises(DataUnavailableError, match="SEPCHECK_OFFLINE"):
            load("mnist", "test")
        monkeypatch.setenv("SEPCHECK_OFFLINE", "0")
        with pytest.raises(DataUnavailableError, match="--no-download"):
            load("mnist", "test", download=False)
    assert hits == []


def test_failed_train_download_falls_back_to_t10k_with_a_note(tmp_path, data_home, monkeypatch):
    folder = data_home / "mnist"
    written = write_mnist_like(folder, np.random.default_rng(3), n_test=30, splits=("t10k",))
    with http_server({}) as (base, hits):  # every file is a 404
        patch_table(monkeypatch, mnist_table, written["t10k"][2], base_url=base)
        ds = open_dataset("mnist")
    assert hits and all(h.startswith("/train-") for h in hits)
    assert "the download failed" in ds.notes[0] and "HTTP 404" in ds.notes[0] and "first 24 of the 30" in ds.notes[0]
    np.testing.assert_array_equal(ds.X, written["t10k"][0][:24])
    assert not [p for p in folder.iterdir() if p.name.startswith("train-")]


def test_cifar_archive_download(tmp_path, data_home, monkeypatch):
    members, arrays = make_cifar10(np.random.default_rng(4), per_batch=3, n_test=4)
    archive = tar_gz(members, c10.FOLDER)
    with http_server({"/c/cifar-10-python.tar.gz": archive}, ) as (base, hits):
        monkeypatch.setattr(c10, "ARCHIVE", RemoteFile(c10.ARCHIVE.name, (f"{base}/c/cifar-10-python.tar.gz",),
                                                       md5=md5(archive)))
        X, y = load("cifar10", "test")
        load("cifar10", "train")
    assert hits == ["/c/cifar-10-python.tar.gz"]  # downloaded once, for both splits
    np.testing.assert_array_equal(X, arrays["test"][0])
    np.testing.assert_array_equal(y, arrays["test"][1])
