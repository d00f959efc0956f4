"""Row sources (sepcheck.engine.sources): arrays, .npy and HDF5 read in blocks, lazy row
views, chunk-aligned blocks, the digest of a source, and one-line errors for bad files."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from sepcheck import SepcheckError, open_source
from sepcheck.core.hashing import array_digest
from sepcheck.engine.sources import ArraySource, is_source


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (23, 2, 3, 2)).astype(np.uint8)


@pytest.fixture
def sources(tmp_path, images):
    np.save(tmp_path / "x.npy", images)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=images, chunks=(4, 2, 3, 2))
        f.create_dataset("other", data=images[:5].astype(">f4"))
    return {"array": ArraySource(images), "npy": open_source(tmp_path / "x.npy"),
            "h5": open_source(str(tmp_path / "x.h5")), "h5-name": open_source(f"{tmp_path / 'x.h5'}:X")}


@pytest.mark.parametrize("kind", ["array", "npy", "h5", "h5-name"])
def test_rows_blocks_and_views(sources, images, kind):
    src = sources[kind]
    flat = images.reshape(23, -1)
    assert src.shape == (23, 12) and len(src) == 23 and src.image_shape == (2, 3, 2)
    assert src.dtype == np.uint8 and src.nbytes == flat.nbytes
    got = src.read(3, 11)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, flat[3:11])
    view = src.rows(5, 19)
    assert view.shape == (14, 12)
    np.testing.assert_array_equal(view.read(0, 14), flat[5:19])
    blocks = list(view.iter_blocks(6))
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in blocks]), flat[5:19])
    assert [(a, b) for a, b, _ in blocks] == [(a, b) for a, b in view.block_bounds(6)]
    assert blocks[0][0] == 0 and blocks[-1][1] == 14
    assert array_digest(src) == array_digest(flat)  # the same digest as the (n, d) array
    assert array_digest(view) == array_digest(flat[5:19])
    with pytest.raises(SepcheckError, match="outside"):
        src.read(20, 30)


def test_hdf5_blocks_fall_on_chunk_boundaries(sources):
    src = sources["h5"]  # 4 rows per chunk
    assert src.block_bounds(6) == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 23)]
    assert src.rows(2, 23).block_bounds(9) == [(0, 6), (6, 14), (14, 21)]  # rows 8, 16 are chunk starts


def test_describe_pickle_and_h5py_dataset(tmp_path, sources, images):
    d = sources["h5"].describe()
    assert d["kind"] == "hdf5" and d["dataset"] == "X" and d["shape"] == [23, 12] and d["file_size"] > 0
    assert sources["npy"].describe()["kind"] == "npy" and sources["array"].describe()["path"] is None
    again = pickle.loads(pickle.dumps(sources["h5"].rows(2, 9)))  # reopened by path
    np.testing.assert_array_equal(again.read(0, 7), images.reshape(23, -1)[2:9])
    with h5py.File(tmp_path / "x.h5", "r") as f:
        src = open_source(f["other"])  # big-endian floats come back in native order
        assert src.dtype == np.float32 and src.dtype.isnative
        np.testing.assert_array_equal(src.read(0, 5), images[:5].reshape(5, -1).astype(np.float32))
        assert is_source(f["other"])
    assert is_source(sources["array"]) and is_source(tmp_path / "x.npy") and is_source("a.h5:X")
    assert not is_source(images) and not is_source("data.npz")
    assert open_source(sources["npy"]) is sources["npy"]


def _one_line_error(obj, match, **kw):
    with pytest.raises(SepcheckError, match=match) as err:
        open_source(obj, **kw)
    assert "\n" not in str(err.value)


def test_bad_files_are_one_line_errors(tmp_path, images):
    _one_line_error(tmp_path / "missing.npy", "does not exist")
    _one_line_error(tmp_path / "missing.h5", "does not exist")
    np.save(tmp_path / "x.npy", images)
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(raw[:-10])
    _one_line_error(tmp_path / "short.npy", "truncated")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    _one_line_error(tmp_path / "junk.npy", "not a valid .npy")
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    _one_line_error(tmp_path / "obj.npy", "Python objects")
    np.save(tmp_path / "fortran.npy", np.asfortranarray(images.reshape(23, -1)))
    _one_line_error(tmp_path / "fortran.npy", "Fortran order")
    np.save(tmp_path / "flat.npy", np.arange(5))
    _one_line_error(tmp_path / "flat.npy", r"shape \(5,\)")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    _one_line_error(tmp_path / "text.npy", "numeric")
    (tmp_path / "bad.h5").write_bytes(np.random.default_rng(1).bytes(4096))
    _one_line_error(tmp_path / "bad.h5", "corrupted or not HDF5")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=images)
        f.create_dataset("labels", data=np.arange(23))
        f["ext"] = h5py.ExternalLink("elsewhere.h5", "/X")
    _one_line_error(tmp_path / "x.h5", r"no dataset 'Y' \(it holds X, ext, labels\)", dataset="Y")
    _one_line_error(f"{tmp_path / 'x.h5'}:labels", "shape")
    _one_line_error(f"{tmp_path / 'x.h5'}:ext", "external link")
    _one_line_error(tmp_path / "x.txt", "neither .npy nor .h5")
    _one_line_error(np.zeros((0, 3)), "empty")
