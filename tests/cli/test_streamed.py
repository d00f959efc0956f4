"""`sepcheck separation` and `sepcheck certify` on data left on disk: an .h5 file and a folder
of .npy files are streamed within --memory-budget and give the in-memory answer; bad files
are one-line errors with exit code 2."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from sepcheck import nearest_other
from tests.cli.helpers import assert_one_line_error, run


@pytest.fixture
def arrays():
    rng = np.random.default_rng(2)
    return {"X": rng.integers(0, 256, (90, 1, 4, 4)).astype(np.uint8), "y": np.arange(90) % 3,
            "X_test": rng.integers(0, 256, (25, 1, 4, 4)).astype(np.uint8), "y_test": np.arange(25) % 3}


def _h5(tmp_path, arrays):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, chunks=(7, *v.shape[1:]) if v.ndim > 1 else None)
    return path


def _npy_dir(tmp_path, arrays):
    folder = tmp_path / "npy"
    folder.mkdir()
    for k, v in arrays.items():
        np.save(folder / f"{k}.npy", v)
    return folder


@pytest.mark.parametrize("store", [_h5, _npy_dir])
def test_separation_and_certify_stream(tmp_path, arrays, store):
    data = store(tmp_path, arrays)
    r = run("separation", data, "--split", "both", "--json", "--no-cache", "--memory-budget", "16MiB", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    d, _ = nearest_other(arrays["X"], arrays["y"], device="cpu")
    td, _ = nearest_other(arrays["X"], arrays["y"], arrays["X_test"], arrays["y_test"], device="cpu")
    assert rep["streamed"] and rep["separation"] == d.min() and rep["test_separation"] == td.min()
    r = run("certify", data, "--json", "--no-cache", "--memory-budget", "16MiB", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n_train"] == 90 and rep["n"] == 25 and rep["separation"] == d.min()


def test_bad_files_exit_2(tmp_path, arrays):
    (tmp_path / "junk.h5").write_bytes(np.random.default_rng(0).bytes(2048))
    assert_one_line_error(run("separation", tmp_path / "junk.h5"), "corrupted or not HDF5")
    folder = _npy_dir(tmp_path, arrays)
    raw = (folder / "X.npy").read_bytes()
    (folder / "X.npy").write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(run("separation", folder, "--no-cache"), "truncated")
    path = _h5(tmp_path, {**arrays, "X": np.arange(90.0)})
    assert_one_line_error(run("separation", path, "--no-cache"), "shape (90,)")
