"""Results files and the results cache trust nothing they read --
a checksum of the file's bytes is checked before HDF5 reads it (an edited file is recomputed, never printed), special files at
the cache path are skipped, a read-only cache folder is read but never written."""

from __future__ import annotations

import os
import stat

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from sepcheck.analysis.separation import SeparationResult
from sepcheck.core.errors import SepcheckError
from sepcheck.runs.cache import cached_separation
from tests.fuzz import FLIPS, flip
from tests.oracle import nearest_other


def _data():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (30, 4)).astype(np.uint8)
    y = np.arange(30) % 3
    return X, y


def _oracle_distances(X, y):
    d, _ = nearest_other(X.astype(np.float64), y, scale=255.0)
    return d[:, 0]


def test_edited_cache_payload_is_recomputed(tmp_path):
    X, y = _data()
    res, cached = cached_separation(X, y, cache=tmp_path, device="cpu")
    assert not cached
    (path,) = tmp_path.glob("separation-*.h5")
    with h5py.File(path, "r+") as f:
        f["distances"][0] = 123.0
    again, cached = cached_separation(X, y, cache=tmp_path, device="cpu")
    assert not cached
    np.testing.assert_allclose(again.distances, _oracle_distances(X, y))
    with pytest.raises(SepcheckError, match="do not match its checksum"):
        with h5py.File(path, "r+") as f:
            f["neighbors"][0] = 7
        SeparationResult.load(path)


def test_fifo_at_the_cache_path_is_skipped(tmp_path):
    X, y = _data()
    res, _ = cached_separation(X, y, cache=tmp_path, device="cpu")
    (path,) = tmp_path.glob("separation-*.h5")
    path.unlink()
    os.mkfifo(path)
    again, cached = cached_separation(X, y, cache=tmp_path, device="cpu")
    assert not cached and stat.S_ISFIFO(path.stat().st_mode)
    np.testing.assert_array_equal(again.distances, res.distances)


def test_read_only_cache_folder_is_not_written(tmp_path):
    X, y = _data()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _, cached = cached_separation(X, y, cache=ro, device="cpu")
        assert not cached and list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_save_onto_a_directory_or_device_is_one_line(tmp_path):
    X, y = _data()
    res, _ = cached_separation(X, y, device="cpu")
    with pytest.raises(SepcheckError, match="is a directory"):
        res.save(tmp_path)
    with pytest.raises(SepcheckError, match="character device"):
        res.save("/dev/null")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(FLIPS)
def test_fuzzed_result_files_load_exactly_or_fail_in_one_line(tmp_path_factory, flips):
    X, y = _data()
    folder = tmp_path_factory.mktemp("res")
    res, _ = cached_separation(X, y, cache=folder, device="cpu")
    path = res.save(folder / "r.h5")
    data = flip(path.read_bytes(), flips)
    path.write_bytes(data)
    try:
        back = SeparationResult.load(path)
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:  # whatever loads is the exact answer
        np.testing.assert_array_equal(back.distances, res.distances)
        np.testing.assert_array_equal(back.neighbors, res.neighbors)
