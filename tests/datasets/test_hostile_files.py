"""User files are read only from themselves (no external storage, link or virtual dataset
leads out of the file) and only as far as their headers declare (a declared size is checked
before anything is allocated or decompressed). Each known way to break a reader is a named
regression test; each reader also has a small hypothesis fuzz test (mutated valid files
give a one-line error or a well-formed result, never a traceback or a hang)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck.core.errors import SepcheckError
from sepcheck.datasets.cifar import read_members
from sepcheck.datasets.download import STALE_PART_S, clean_stale_parts
from sepcheck.datasets.idx import read_idx
from sepcheck.datasets.svhn import read_svhn_mat
from sepcheck.datasets.userfiles import list_images, load_imagefolder, read_arrays
from tests.fuzz import FLIPS, flip

FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line_error(fn, *args, match: str | None = None) -> str:
    with pytest.raises(SepcheckError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


# ----- HDF5: only the file itself --------------------------------------------------------

@pytest.mark.parametrize("target", ["file", "fifo"])
def test_h5_external_storage_is_refused(tmp_path, target):
    outside = tmp_path / "outside"
    if target == "fifo":
        os.mkfifo(outside)  # reading it would hang
    else:
        outside.write_bytes(bytes(range(64)))
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", shape=(8, 8), dtype="u1", external=[(str(outside), 0, 64)])
        f["y"] = np.arange(8) % 2
    _one_line_error(read_arrays, p, match="external storage")


LINKS = {  # how "X" is stored -> words of the error
    "external_link": (lambda f, other: f.__setitem__("X", h5py.ExternalLink(str(other), "/X")), "external link"),
    "soft_link_to_external": (lambda f, other: (f.__setitem__("ext", h5py.ExternalLink(str(other), "/X")),
                                                f.__setitem__("X", h5py.SoftLink("/ext"))), "leaves the file"),
    "dangling_soft_link": (lambda f, other: f.__setitem__("X", h5py.SoftLink("/nowhere")), "soft link"),
}


@pytest.mark.parametrize("kind", sorted(LINKS))
def test_h5_links_out_of_the_file_are_refused(tmp_path, kind):
    make, words = LINKS[kind]
    other = _h5(tmp_path / "other.h5", X=np.ones((4, 2)))
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        make(f, other)
        f["y"] = np.arange(4) % 2
    _one_line_error(read_arrays, p, match=words)


def test_h5_soft_link_inside_the_file_is_read(tmp_path):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f["data/X"] = np.arange(8.0).reshape(4, 2)
        f["X"] = h5py.SoftLink("/data/X")
        f["y"] = np.arange(4) % 2
    np.testing.assert_array_equal(read_arrays(p)["X"], np.arange(8.0).reshape(4, 2))


@pytest.mark.parametrize("source_exists", [True, False])
def test_h5_virtual_dataset_is_refused(tmp_path, source_exists):
    src = tmp_path / "src.h5"
    if source_exists:
        _h5(src, X=np.ones((4, 2)))
    layout = h5py.VirtualLayout(shape=(4, 2), dtype="f8")
    layout[:] = h5py.VirtualSource(str(src), "X", shape=(4, 2))
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_virtual_dataset("X", layout, fillvalue=0)
        f["y"] = np.arange(4) % 2
    _one_line_error(read_arrays, p, match="virtual dataset")


def test_h5_declaring_more_than_memory_is_refused_before_reading(tmp_path):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", shape=(10**8, 10**3), dtype="f8", chunks=(100, 100))  # 745 GiB, nothing stored
        f["y"] = np.arange(4) % 2
    assert p.stat().st_size < 100_000
    _one_line_error(read_arrays, p, match="GiB")


def test_h5_unwritten_data_is_not_read_as_fill_values(tmp_path):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", shape=(100, 10), dtype="f8", chunks=(10, 10))
        f["X"][:10] = 1.0  # one chunk of ten
        f["y"] = np.arange(100) % 2
    _one_line_error(read_arrays, p, match="fill values")


def test_h5_missing_filter_is_named_not_called_corruption(tmp_path):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", data=np.ones((4, 2)), chunks=(4, 2), compression=32001, allow_unknown_filter=True)
        f["y"] = np.arange(4) % 2
    msg = _one_line_error(read_arrays, p, match="not installed")
    assert "corrupt" not in msg


def test_h5_object_types_are_refused(tmp_path):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", data=np.array([b"a", b"bc"], dtype=object), dtype=h5py.string_dtype())
        f["y"] = np.arange(2)
    _one_line_error(read_arrays, p, match="HDF5 type")


def test_data_file_that_is_a_fifo_is_refused(tmp_path):
    p = tmp_path / "x.npz"
    os.mkfifo(p)
    _one_line_error(read_arrays, p, match="FIFO")


# ----- .npz -----------------------------------------------------------------------------

def test_plain_text_named_npz_is_not_called_a_pickle(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("X,y\n1,2\n")
    msg = _one_line_error(read_arrays, p, match="not an .npz")
    assert "pickle" not in msg


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_npz_header_declaring_a_huge_array_is_refused_before_allocation(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (10**9, 10**6)})
        z.writestr("X.npy", header.getvalue() + bytes(16))
        z.writestr("y.npy", _npz_member(np.arange(2)))
    p = tmp_path / "x.npz"
    p.write_bytes(buf.getvalue())
    _one_line_error(read_arrays, p, match="declares")


def test_npy_folder_header_declaring_a_huge_array_is_refused_before_allocation(tmp_path):
    from sepcheck.datasets import open_dataset

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**6)})
    (tmp_path / "X.npy").write_bytes(header.getvalue() + bytes(16))
    np.save(tmp_path / "y.npy", np.arange(2))
    _one_line_error(open_dataset, tmp_path, match="'X' declares")


def _npz_member(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_npz_broken_header_is_one_line(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("X.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8, }\n" + bytes(8))
        z.writestr("y.npy", _npz_member(np.arange(2)))
    p = tmp_path / "x.npz"
    p.write_bytes(buf.getvalue())
    _one_line_error(read_arrays, p, match="header of 'X' is broken")


def _valid_file(tmp: Path, suffix: str) -> Path:
    X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    if suffix == ".h5":
        return _h5(tmp / "d.h5", X=X, y=y)
    (tmp / "d.npz").write_bytes(_npz_bytes(X=X, y=y))
    return tmp / "d.npz"


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@FUZZ
@given(FLIPS)
def test_fuzzed_array_files(tmp_path_factory, suffix, flips):
    p = _valid_file(tmp_path_factory.mktemp("arrays"), suffix)
    p.write_bytes(flip(p.read_bytes(), flips))
    try:
        arrays = read_arrays(p)
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert {"X", "y"} <= set(arrays)


# ----- IDX ------------------------------------------------------------------------------

def _idx(shape, payload: bytes, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape) + payload


def test_idx_dimension_product_beyond_2_64_is_one_line(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(_idx((2**32 - 1,) * 3, bytes(16)))
    _one_line_error(read_idx, p, match="GiB")


def test_idx_gz_magic_is_checked_before_the_payload_is_decompressed(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:  # a wrong magic number in front of 64 MiB of zeros
        f.write(b"\x01\x02\x03\x04")
        for _ in range(64):
            f.write(bytes(2**20))
    _one_line_error(read_idx, p, match="wrong magic")


def test_idx_gz_is_decompressed_no_further_than_declared(tmp_path):
    p = tmp_path / "x-idx1-ubyte.gz"
    with gzip.open(p, "wb") as f:  # declares 4 bytes, holds 64 MiB more
        f.write(_idx((4,), bytes(4)))
        for _ in range(64):
            f.write(bytes(2**20))
    _one_line_error(read_idx, p, match="longer than the 12 bytes")


@FUZZ
@given(st.binary(max_size=40), st.booleans())
def test_fuzzed_idx_files(tmp_path_factory, tail, gz):
    good = _idx((3, 2, 2), bytes(range(12)))
    data = good[: len(tail) % len(good)] + tail
    p = tmp_path_factory.mktemp("idx") / ("x.gz" if gz else "x")
    p.write_bytes(gzip.compress(data) if gz else data)
    try:
        arr = read_idx(p)
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert arr.size * arr.itemsize + 4 + 4 * arr.ndim == len(data)


# ----- CIFAR tar, SVHN .mat -------------------------------------------------------------

def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_duplicate_member_is_refused(tmp_path):
    p = tmp_path / "a.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for data in (b"one", b"two"):
            info = tarfile.TarInfo("f/data_batch_1")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    p.write_bytes(buf.getvalue())
    _one_line_error(read_members, p, "f", ["data_batch_1"], match="twice")


def test_tar_member_bomb_is_refused_before_it_is_read(tmp_path):
    p = tmp_path / "a.tar.gz"
    header = tarfile.TarInfo("f/data_batch_1")
    header.size = 2**40
    p.write_bytes(gzip.compress(header.tobuf()))
    _one_line_error(read_members, p, "f", ["data_batch_1"], match="declares")


@FUZZ
@given(FLIPS)
def test_fuzzed_tar_archives(tmp_path_factory, flips):
    data = flip(_tar({"f/a": b"x" * 100, "f/b": b"y" * 50}), flips)
    p = tmp_path_factory.mktemp("tar") / "a.tar.gz"
    p.write_bytes(data)
    try:
        out = read_members(p, "f", ["a", "b"])
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert set(out) == {"a", "b"}


def _mat(tmp: Path, compress: bool = False, **variables) -> Path:
    from scipy.io import savemat

    p = tmp / "train_32x32.mat"
    savemat(p, variables, do_compression=compress)
    return p


def test_svhn_string_labels_are_one_line(tmp_path):
    p = _mat(tmp_path, X=np.zeros((32, 32, 3, 2), np.uint8), y=np.array(["ab"]))
    _one_line_error(read_svhn_mat, p, match="MATLAB char")


def test_svhn_compressed_bomb_is_refused_from_its_header(tmp_path):
    p = _mat(tmp_path, compress=True, X=np.zeros((32, 32, 4, 2), np.uint8), y=np.ones((2, 1)))
    _one_line_error(read_svhn_mat, p, match="declared")


@FUZZ
@given(FLIPS, st.booleans())
def test_fuzzed_svhn_mat_files(tmp_path_factory, flips, compress):
    tmp = tmp_path_factory.mktemp("mat")
    p = _mat(tmp, compress=compress, X=np.zeros((32, 32, 3, 3), np.uint8), y=np.array([[1.0], [2.0], [10.0]]))
    data = flip(p.read_bytes(), flips)
    p.write_bytes(data)
    try:
        X, y = read_svhn_mat(p)
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert X.shape[1:] == (3, 32, 32) and y.shape == (X.shape[0],)


# ----- ImageFolder ----------------------------------------------------------------------

def _png(path: Path, value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)


def test_imagefolder_symlink_loop_counts_each_image_once(tmp_path):
    for c in ("a", "b"):
        _png(tmp_path / c / "1.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    (tmp_path / "b" / "self1").symlink_to(".")
    (tmp_path / "b" / "self2").symlink_to(".")
    with pytest.warns(Warning, match="already read"):
        ds = load_imagefolder(tmp_path, workers=1, progress=False)
    assert len(ds.y) == 2
    assert any("already read" in n for n in ds.notes)


def test_imagefolder_fifo_named_png_is_skipped_not_opened(tmp_path):
    _png(tmp_path / "a" / "1.png")
    _png(tmp_path / "b" / "1.png")
    os.mkfifo(tmp_path / "a" / "x.png")
    with pytest.warns(Warning, match="not a regular file"):
        ds = load_imagefolder(tmp_path, workers=1, progress=False)
    assert len(ds.y) == 2


@FUZZ
@given(st.lists(st.sampled_from(["png", "junk", "empty", "dirlink", "filelink", "dangling"]), min_size=1,
                max_size=6))
def test_fuzzed_image_trees(tmp_path_factory, entries):
    root = tmp_path_factory.mktemp("tree")
    _png(root / "a" / "0.png")
    for i, kind in enumerate(entries):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(exist_ok=True)
        if kind == "png":
            _png(d / f"{i}.png", i)
        elif kind == "junk":
            (d / f"{i}.png").write_bytes(b"\x89PNG" + bytes(i))
        elif kind == "empty":
            (d / f"{i}.jpg").write_bytes(b"")
        elif kind == "dirlink":
            (d / f"l{i}").symlink_to(root)
        elif kind == "filelink":
            (d / f"{i}.png").symlink_to(root / "a" / "0.png")
        else:
            (d / f"{i}.png").symlink_to(root / "missing.png")
    before = len(list_images(root))
    assert before < 100  # links never multiply the images
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_imagefolder(root, workers=1, progress=False)
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(ds.y) == ds.X.shape[0] > 0


# ----- downloads ------------------------------------------------------------------------

def test_stale_part_files_are_cleaned_and_fresh_ones_kept(tmp_path):
    target = tmp_path / "train.gz"
    stale = tmp_path / ".train.gz.abc123.part"
    fresh = tmp_path / ".train.gz.def456.part"
    other = tmp_path / ".test.gz.xyz.part"
    for p in (stale, fresh, other):
        p.write_bytes(b"x")
    old = stale.stat().st_mtime - STALE_PART_S - 10
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert clean_stale_parts(target) == [stale]
    assert fresh.exists() and other.exists() and not stale.exists()


# ----- the split cache ------------------------------------------------------------------

@FUZZ
@given(FLIPS)
def test_damaged_split_cache_is_rebuilt_never_parsed(tmp_path_factory, flips):
    from sepcheck.datasets.base import SplitData
    from sepcheck.datasets.splitcache import read_cache, write_cache

    path = tmp_path_factory.mktemp("cache") / "train.h5"
    data = SplitData(X=np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4), y=np.array([0, 1]))
    assert write_cache(path, {"k": 1}, data)
    assert read_cache(path, key={"k": 1}, current_sources=None, need_verified=False) is not None
    damaged = flip(path.read_bytes(), flips)
    path.write_bytes(damaged)
    back = read_cache(path, key={"k": 1}, current_sources=None, need_verified=False)
    if back is not None:  # only a flip to the same byte leaves a usable cache
        np.testing.assert_array_equal(back.X, data.X)
