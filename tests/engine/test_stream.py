"""The streamed search (sepcheck.engine.stream) against the float64 brute-force oracle and
the in-memory run: HDF5 (chunk rows not dividing n) and .npy inputs, block and shard sizes
not dividing n, uint8 and floats, linf/l2/l1, k >= 1, both groupings, ties, duplicated rows
and single-class reference blocks."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError, nearest_by_class, nearest_other, separation
from sepcheck.engine.options import SearchOptions
from sepcheck.engine.sources import ArraySource, open_source
from sepcheck.engine.stream import Grouping, plan_stream, stream_search
from tests import oracle

NORMS = {"linf": math.inf, "l1": 1.0, "l2": 2.0}

pytestmark = pytest.mark.usefixtures("one_thread")


def _store(folder: Path, name: str, X: np.ndarray, kind: str, chunk: int):
    """X as a source of ``kind``: an HDF5 dataset with ``chunk`` rows per chunk, an .npy file
    or an in-memory ArraySource."""
    if kind == "h5":
        path = folder / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=X, chunks=(min(chunk, len(X)), *X.shape[1:]))
        return f"{path}:data"
    if kind == "npy":
        np.save(folder / f"{name}.npy", X)
        return str(folder / f"{name}.npy")
    return ArraySource(X)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(["uint8", "float32", "float64"]))
    n = draw(st.integers(2, 60))
    d = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    coarse = draw(st.booleans())  # a coarse grid: exact ties
    if dtype == "uint8":
        X = rng.integers(0, 3 if coarse else 256, (n, d)).astype(np.uint8)
    else:
        X = (rng.integers(-2, 3, (n, d)) * 0.5 if coarse else rng.normal(size=(n, d))).astype(dtype)
    if n > 3:
        X[n - 1] = X[0]  # a duplicated row
    y = rng.integers(0, draw(st.integers(2, 4)), n)
    y[:2] = [0, 1]
    if draw(st.booleans()):
        y = np.sort(y)  # long runs of one label: single-class reference blocks
    self_mode = draw(st.booleans())
    m = draw(st.integers(1, 25))
    Q = X[rng.integers(0, n, m)].copy() if coarse else (
        rng.integers(0, 256, (m, d)).astype(np.uint8) if dtype == "uint8" else rng.normal(size=(m, d)).astype(dtype))
    yq = rng.integers(0, 4, m)
    return {
        "X": X, "y": y, "Q": None if self_mode else Q, "yq": None if self_mode else yq,
        "norm": draw(st.sampled_from(list(NORMS))), "k": draw(st.integers(1, 4)),
        "by_class": draw(st.booleans()),
        "kinds": (draw(st.sampled_from(["h5", "npy", "array"])), draw(st.sampled_from(["h5", "npy", "array"]))),
        "chunk": draw(st.integers(1, 9)),
        "block_rows": draw(st.integers(1, n + 3)), "query_rows": draw(st.integers(1, 30)),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_streamed_equals_oracle_and_in_memory(case):
    X, y, Q, yq, norm, k = case["X"], case["y"], case["Q"], case["yq"], case["norm"], case["k"]
    p = NORMS[norm]
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    sizes = {"block_rows": case["block_rows"], "query_rows": case["query_rows"]}
    with tempfile.TemporaryDirectory() as tmp:
        ref = _store(Path(tmp), "ref", X, case["kinds"][0], case["chunk"])
        if case["by_class"]:
            Qc = X if Q is None else Q
            qry = _store(Path(tmp), "qry", Qc, case["kinds"][1], case["chunk"] + 2)
            want_d, want_i, want_c = oracle.class_distances(X, y, Qc, p=p, scale=scale)
            d, i, c = stream_search(ref, y, qry, grouping=Grouping.BY_CLASS, norm=norm, options=SearchOptions(device="cpu"), **sizes)
            np.testing.assert_array_equal(c, want_c)
            np.testing.assert_array_equal(i[:, :, 0], want_i)
            mem = nearest_by_class(X, y, Qc, norm=norm, device="cpu")
            np.testing.assert_array_equal(d[:, :, 0], mem[0])  # bit for bit
            np.testing.assert_allclose(d[:, :, 0], want_d, rtol=1e-10)
            return
        qry = None if Q is None else _store(Path(tmp), "qry", Q, case["kinds"][1], case["chunk"] + 2)
        want_d, want_i = oracle.nearest_other(X, y, Q, yq, p=p, k=k, scale=scale)
        d, i, c = stream_search(ref, y, qry, yq, norm=norm, k=k, options=SearchOptions(device="cpu"), **sizes)
        assert c is None
        np.testing.assert_array_equal(i[:, 0], want_i)
        mem = nearest_other(X, y, Q, yq, norm=norm, k=k, device="cpu")
        np.testing.assert_array_equal(d[:, 0], mem[0])  # bit for bit
        np.testing.assert_array_equal(i[:, 0], mem[1])
        np.testing.assert_allclose(d[:, 0], want_d, rtol=1e-10)


def test_paths_stream_through_the_public_functions(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, (53, 2, 3)).astype(np.uint8)  # images: flattened like in memory
    y = rng.integers(0, 3, 53)
    Xt = rng.integers(0, 4, (17, 2, 3)).astype(np.uint8)
    yt = rng.integers(0, 3, 17)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("X", data=X, chunks=(5, 2, 3))
    np.save(tmp_path / "t.npy", Xt)
    info: dict = {}
    got = nearest_other(tmp_path / "d.h5", y, tmp_path / "t.npy", yt, k=2, memory_budget="16MiB", info=info, device="cpu")
    want = nearest_other(X, y, Xt, yt, k=2, device="cpu")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert info["streamed"]
    a = separation(X, y, Xt, yt, device="cpu")
    b = separation(str(tmp_path / "d.h5"), y, str(tmp_path / "t.npy"), yt, device="cpu")
    for name in ("distances", "neighbors", "test_distances", "test_neighbors", "conflicts", "test_conflicts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.content_hash == b.content_hash


def test_shards_cover_the_queries_and_any_shard_gives_the_same_rows(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.integers(0, 3, (40, 4)).astype(np.uint8)
    y = rng.integers(0, 2, 40)
    plan = plan_stream(ArraySource(X), y, k=3, query_rows=7, block_rows=9, options=SearchOptions(device="cpu"))
    shards = plan.query_blocks()
    assert shards[0][0] == 0 and shards[-1][1] == 40
    assert all(b0 == a1 for (_, b0), (a1, _) in zip(shards, shards[1:], strict=False))
    whole = nearest_other(X, y, k=3, device="cpu")
    d, i = plan.search_query_block(11, 30)
    np.testing.assert_array_equal(i[:, 0], whole[1][11:30])
    np.testing.assert_array_equal(d[:, 0], whole[0][11:30])


def test_budget_sizes_the_blocks(tmp_path):
    X = np.zeros((5000, 1000), dtype=np.uint8)
    X[::2] = 1
    y = np.arange(5000) % 2
    plan = plan_stream(ArraySource(X), y, options=SearchOptions(memory_budget="16MiB", device="cpu"))
    # a quarter of the budget for the query block, an eighth for each reference block
    assert plan.query_rows * 1000 <= 4 * 2**20 and plan.block_rows * 1000 <= 2 * 2**20
    assert plan.query_rows * 1000 > 2 * 2**20 and plan.block_rows * 1000 > 2**20


def test_errors_are_one_line(tmp_path):
    X = np.zeros((10, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(SepcheckError, match="single class"):
        nearest_other(tmp_path / "x.npy", np.zeros(10), device="cpu")
    with pytest.raises(SepcheckError, match="4 labels but reference has 10 rows"):
        nearest_other(tmp_path / "x.npy", np.zeros(4), device="cpu")
    np.save(tmp_path / "f.npy", np.zeros((10, 3), dtype=np.float32))
    with pytest.raises(SepcheckError, match="uint8"):
        nearest_other(tmp_path / "x.npy", np.arange(10) % 2, tmp_path / "f.npy", np.zeros(10), device="cpu")
    np.save(tmp_path / "w.npy", np.zeros((10, 4), dtype=np.uint8))
    with pytest.raises(SepcheckError, match="features per row"):
        nearest_by_class(tmp_path / "x.npy", np.arange(10) % 2, tmp_path / "w.npy", device="cpu")
    bad = np.zeros((10, 3))
    bad[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(SepcheckError, match="NaN"):
        nearest_other(open_source(tmp_path / "nan.npy"), np.arange(10) % 2, device="cpu")


@pytest.mark.parametrize("magnitude", [1e-200, 1e300])
def test_extreme_floats_use_the_in_memory_range_scale(tmp_path, magnitude):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(40, 5)) * magnitude
    X[-1] = X[0]
    y = np.arange(40) % 3
    np.save(tmp_path / "x.npy", X)
    for norm in ("l2", 3.0):
        got = nearest_other(tmp_path / "x.npy", y, norm=norm, k=2, memory_budget="16MiB", device="cpu")
        want = nearest_other(X, y, norm=norm, k=2, device="cpu")
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert np.isfinite(got[0]).all() and (got[0] > 0).all()


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_later_blocks_start_from_the_distances_found(norm):
    """uint8 blocks after the first start from the k-th distances already found: rows tied with
    them belong to earlier blocks (lower indices), closer rows still enter."""
    rng = np.random.default_rng(11)
    X = rng.integers(0, 3, (70, 4)).astype(np.uint8)  # coarse: ties everywhere
    y = rng.integers(0, 3, 70)
    Q = rng.integers(0, 3, (30, 4)).astype(np.uint8)
    yq = rng.integers(0, 3, 30)
    p = NORMS[norm]
    for k in (1, 3):
        d, i, _ = stream_search(ArraySource(X), y, Q, yq, norm=norm, k=k, block_rows=8, query_rows=11, options=SearchOptions(device="cpu"))
        want = oracle.nearest_other(X, y, Q, yq, p=p, k=k, scale=255.0)
        np.testing.assert_array_equal(i[:, 0], want[1])
        np.testing.assert_array_equal(d[:, 0], want[0])
    d, i, _ = stream_search(ArraySource(X), y, Q, grouping=Grouping.BY_CLASS, norm=norm, block_rows=8, options=SearchOptions(device="cpu"))
    want = oracle.class_distances(X, y, Q, p=p, scale=255.0)
    np.testing.assert_array_equal(i[:, :, 0], want[1])
    np.testing.assert_array_equal(d[:, :, 0], want[0])
