"""The Triton backend against the float64 oracle.

On the CPU the kernels run in triton's interpreter (``TRITON_INTERPRET=1``, set per test, so
nothing leaks into other tests); where torch sees a GPU the same tests run the compiled
kernels on CUDA. Shapes stay small: the interpreter is slow.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck.core.errors import SepcheckError
from tests import oracle

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    # triton reads TRITON_INTERPRET when it is imported: without a GPU, this module's tests
    # run the kernels in the interpreter (nothing else in the suite uses triton)
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from sepcheck.engine.backends.triton_backend import search_triton  # noqa: E402
from sepcheck.engine.kernels import triton_kernels  # noqa: E402

SUPPRESS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _rows(draw, n, d, dtype, vmax):
    if dtype == "uint8":
        return np.array(draw(st.lists(st.integers(0, vmax), min_size=n * d, max_size=n * d)), dtype=np.uint8).reshape(n, d)
    # multiples of 1/8: every l1 sum is exact, so any summation order gives the oracle's value
    vals = draw(st.lists(st.integers(-4 * vmax, 4 * vmax), min_size=n * d, max_size=n * d))
    return (np.array(vals, dtype=np.float64) / 8).astype(dtype).reshape(n, d)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(["uint8", "float32", "float64"]))
    p = draw(st.sampled_from([math.inf, 1.0] + ([2.0] if dtype == "uint8" else [])))
    n, m, d = draw(st.integers(1, 40)), draw(st.integers(1, 20)), draw(st.integers(1, 11))
    vmax = draw(st.sampled_from([1, 3, 255]))  # small ranges: many ties
    lanes, prune = "auto", draw(st.sampled_from(["auto", "none"]))
    if dtype == "uint8" and p == 2:  # the int8 GEMM: unpruned
        prune, lanes = draw(st.sampled_from(["none", "auto"])), draw(st.sampled_from(["dot", "auto"]))
    elif dtype == "uint8":
        prune = draw(st.sampled_from(["prefix", "tiles", "none", "auto"]))
        lanes = draw(st.sampled_from(["i32", "f16", "packed"] if math.isinf(p) else ["i32", "packed"]))
        if prune in ("prefix", "auto"):  # the pruned search computes on packed words
            lanes = draw(st.sampled_from(["packed", "auto"]))
    return {
        "X": _rows(draw, n, d, dtype, vmax), "y": np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))),
        "Xq": _rows(draw, m, d, dtype, vmax), "yq": np.array(draw(st.lists(st.integers(0, 2), min_size=m, max_size=m))),
        "p": p, "k": draw(st.integers(1, 4)), "lanes": lanes, "prune": prune,
        "tiles": (draw(st.sampled_from([2, 16])), draw(st.sampled_from([4, 32])), draw(st.sampled_from([1, 16])), 1),
        "block_size": draw(st.sampled_from([None, 15])),
    }


@settings(max_examples=50, **SUPPRESS)
@given(case=cases())
def test_other_label_matches_oracle(tdevice, case):
    c = case
    dist, idx, _ = search_triton(c["Xq"], c["yq"], c["X"], c["y"], p=c["p"], k=c["k"], device=tdevice,
                                 lanes=c["lanes"], tiles=c["tiles"], prune=c["prune"], block_size=c["block_size"])
    want_d, want_i = oracle.nearest_other(c["X"], c["y"], c["Xq"], c["yq"], p=c["p"], k=c["k"])
    np.testing.assert_array_equal(dist[:, 0], want_d)
    np.testing.assert_array_equal(idx[:, 0], want_i)


@settings(max_examples=20, **SUPPRESS)
@given(case=cases())
def test_by_class_matches_oracle(tdevice, case):
    c = case
    classes, slots = np.unique(c["y"], return_inverse=True)
    dist, idx, _ = search_triton(c["Xq"], c["yq"], c["X"], c["y"], p=c["p"], k=1, slot_of_row=slots,
                                 n_slots=classes.size, device=tdevice, lanes=c["lanes"], tiles=c["tiles"],
                                 prune=c["prune"], block_size=c["block_size"])
    want_d, want_i, _ = oracle.class_distances(c["X"], c["y"], c["Xq"], p=c["p"])
    np.testing.assert_array_equal(dist[:, :, 0], want_d)
    np.testing.assert_array_equal(idx[:, :, 0], want_i)


def test_missing_neighbours_are_inf_and_minus_one(tdevice):
    X = np.arange(12, dtype=np.uint8).reshape(4, 3)
    y = np.array([0, 0, 1, 1])
    dist, idx, _ = search_triton(X, y, X, y, p=math.inf, k=3, device=tdevice)
    assert np.array_equal(idx[:, 0, 2], [-1] * 4) and np.isinf(dist[:, 0, 2]).all()
    assert np.array_equal(idx[:, 0, :2], [[2, 3], [2, 3], [1, 0], [1, 0]])


def test_ties_go_to_lowest_index(tdevice):
    X = np.zeros((50, 5), dtype=np.uint8)  # every distance is 0
    y = np.arange(50) % 2
    dist, idx, _ = search_triton(X, y, X, y, p=1.0, k=2, device=tdevice, tiles=(16, 8, 4, 1))
    assert (dist == 0).all()
    assert np.array_equal(idx[:, 0], np.where(y[:, None] == 0, [1, 3], [0, 2]))


@pytest.mark.parametrize(("p", "prune"), [(math.inf, "prefix"), (math.inf, "tiles"), (1.0, "tiles"), (2.0, "none")])
def test_real_mnist_rows(tdevice, mnist_test, p, prune):
    X, y = mnist_test
    X = X.reshape(len(X), -1)
    ref, ref_y, q, q_y = X[:300], y[:300], X[5000:5032], y[5000:5032]
    dist, idx, _ = search_triton(q, q_y, ref, ref_y, p=p, k=2, device=tdevice, tiles=(32, 128, 16, 4), prune=prune)
    want_d, want_i = oracle.nearest_other(ref, ref_y, q, q_y, p=p, k=2)
    np.testing.assert_array_equal(dist[:, 0], want_d)
    np.testing.assert_array_equal(idx[:, 0], want_i)


def test_streamed_reference_equals_resident(tdevice):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, size=(90, 20), dtype=np.uint8)
    y = rng.integers(0, 3, size=90)
    whole = search_triton(X[:30], y[:30], X, y, p=math.inf, k=3, device=tdevice)
    streamed = search_triton(X[:30], y[:30], X, y, p=math.inf, k=3, device=tdevice, block_size=16)
    assert not streamed[2]["resident"] and whole[2]["resident"]
    np.testing.assert_array_equal(whole[0], streamed[0])
    np.testing.assert_array_equal(whole[1], streamed[1])


def _clustered(rng, n, d, centres=12, spread=20):
    """uint8 rows near a few centres: near neighbours, so the pruned search drops pairs."""
    base = rng.integers(0, 256, size=(centres, d))
    noise = rng.integers(-spread, spread + 1, size=(n, d))
    return np.clip(base[rng.integers(0, centres, n)] + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("p", [math.inf, 1.0])
def test_prefix_pruning_exact_on_clustered_rows(tdevice, p):
    """The pruned search on rows whose thresholds prune most pairs: any k, both groupings,
    streamed blocks, a prefix of one packed word and several extension rounds."""
    rng = np.random.default_rng(11)
    n, m, d = (3000, 500, 300) if tdevice == "cuda" else (160, 16, 50)
    X = _clustered(rng, n, d)
    X[n - 5 :] = X[:5]  # exact duplicates: ties
    y = rng.integers(0, 4, size=n)
    for k, block, tiles in ((1, None, None), (3, n // 3 + 1, (16, 32, 1, 1))):
        dist, idx, info = search_triton(X[:m], y[:m], X, y, p=p, k=k, device=tdevice, prune="prefix",
                                        block_size=block, tiles=tiles)
        want_d, want_i = oracle.nearest_other(X, y, X[:m], y[:m], p=p, k=k)
        np.testing.assert_array_equal(dist[:, 0], want_d)
        np.testing.assert_array_equal(idx[:, 0], want_i)
        assert info["prune"] == "prefix" and info["pairs_complete"] <= info["pairs_prefix"] < m * n
    classes, slots = np.unique(y, return_inverse=True)
    dist, idx, _ = search_triton(X[:m], y[:m], X, y, p=p, k=1, slot_of_row=slots, n_slots=classes.size,
                                 device=tdevice, prune="prefix")
    want_d, want_i, _ = oracle.class_distances(X, y, X[:m], p=p)
    np.testing.assert_array_equal(dist[:, :, 0], want_d)
    np.testing.assert_array_equal(idx[:, :, 0], want_i)


def _interpreter(monkeypatch):
    if not triton_kernels.interpreter_loaded():
        pytest.skip("triton was imported without TRITON_INTERPRET=1 (GPU machine)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def test_refused_on_cpu_without_interpreter(monkeypatch):
    """Refused whatever the state of triton: the variable is unset."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    X = np.zeros((3, 2), dtype=np.uint8)
    with pytest.raises(SepcheckError, match="TRITON_INTERPRET=1"):
        search_triton(X, [0, 1, 0], X, [0, 1, 0], p=math.inf, k=1, device="cpu")


def test_refused_without_cuda(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    X = np.zeros((3, 2), dtype=np.uint8)
    with pytest.raises(SepcheckError, match="needs a CUDA GPU"):
        search_triton(X, [0, 1, 0], X, [0, 1, 0], p=math.inf, k=1, device="cuda")


def test_reference_too_large_without_streaming(monkeypatch):
    _interpreter(monkeypatch)
    X = np.zeros((100, 50), dtype=np.uint8)
    y = np.arange(100) % 2
    with pytest.raises(SepcheckError, match="stream=True"):
        search_triton(X, y, X, y, p=math.inf, k=1, device="cpu", memory_budget=4000, stream=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 3.0}, "linf, l1 and uint8 l2 only"),
        ({"p": 2.0, "lanes": "packed"}, "int8 GEMM"),
        ({"p": 2.0, "prune": "tiles"}, "unpruned"),
        ({"lanes": "dot"}, "with p=2"),
        ({"k": 2, "slot_of_row": np.zeros(3, dtype=np.int64)}, "k=1"),
        ({"lanes": "f16", "p": 1.0}, "linf only"),
        ({"prune": "prefix", "lanes": "i32"}, "packed"),
        ({"prune": "fast"}, "unknown prune"),
    ],
)
def test_bad_input_is_one_line_error(monkeypatch, kwargs, match):
    _interpreter(monkeypatch)
    X = np.zeros((3, 2), dtype=np.uint8)
    args = {"p": math.inf, "k": 1, "device": "cpu", **kwargs}
    with pytest.raises(SepcheckError, match=match) as err:
        search_triton(X, [0, 1, 0], X, [0, 1, 0], **args)
    assert "\n" not in str(err.value)


def test_pruning_of_float_rows_refused(monkeypatch):
    _interpreter(monkeypatch)
    X = np.zeros((2, 2), np.float32)
    with pytest.raises(SepcheckError, match="uint8"):
        search_triton(X, [0, 1], X, [0, 1], p=math.inf, k=1, device="cpu", prune="prefix")


def test_mixed_dtypes_refused(monkeypatch):
    _interpreter(monkeypatch)
    with pytest.raises(SepcheckError, match="uint8 or float"):
        search_triton(np.zeros((2, 2), np.uint8), [0, 1], np.zeros((2, 2), np.float32), [0, 1],
                      p=math.inf, k=1, device="cpu")


@pytest.mark.parametrize("p", [math.inf, 1.0])
def test_packed_lanes_full_bytes(tdevice, p):
    """Packed words with every byte value (sign bit set too), a width that is not a multiple
    of 4 and duplicate rows; on CUDA this runs the PTX vabsdiff4 path."""
    rng = np.random.default_rng(5)
    n, q = (700, 200) if tdevice == "cuda" else (60, 20)
    X = rng.integers(0, 256, size=(n, 3 * 7), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    X[n - 10 :] = X[:10]  # duplicates: ties
    for k in (1, 4):
        dist, idx, _ = search_triton(X[:q], y[:q], X, y, p=p, k=k, lanes="packed", device=tdevice)
        want_d, want_i = oracle.nearest_other(X, y, X[:q], y[:q], p=p, k=k)
        np.testing.assert_array_equal(dist[:, 0], want_d)
        np.testing.assert_array_equal(idx[:, 0], want_i)


def test_l2_dot_lanes_full_bytes_and_wide_rows(tdevice):
    """uint8 l2 as an int8 GEMM: every byte value (the -128 shift maps 0 and 255 to the int8
    extremes), a width that is not a multiple of the dot step, duplicate rows (ties), and a
    width whose squared distances pass 2**24 (float32 would round them)."""
    rng = np.random.default_rng(6)
    n, q = (700, 200) if tdevice == "cuda" else (60, 20)
    for d in (37, 300):
        X = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
        X[: n // 4] = rng.choice(np.array([0, 255], dtype=np.uint8), size=(n // 4, d))
        y = rng.integers(0, 10, size=n)
        X[n - 10 :] = X[:10]
        for k in (1, 3):
            dist, idx, info = search_triton(X[:q], y[:q], X, y, p=2.0, k=k, device=tdevice)
            want_d, want_i = oracle.nearest_other(X, y, X[:q], y[:q], p=2.0, k=k)
            assert info["lanes"] == "dot"
            np.testing.assert_array_equal(dist[:, 0], want_d)
            np.testing.assert_array_equal(idx[:, 0], want_i)


def test_l2_dot_squared_distances_past_float32(tdevice):
    """Squared distances above 2**24 that differ by 1 (equal in float32): the nearer row, at
    the higher index, must win; the distances must be the oracle's."""
    d = 600
    X = np.zeros((3, d), dtype=np.uint8)  # row 0 the query's own class
    X[1, :599], X[1, 599] = 255, 1  # squared distance 599 * 255**2 + 1
    X[2, :599] = 255  # 599 * 255**2 (> 2**24), one less
    y = np.array([0, 1, 1])
    assert np.float32(599 * 255**2) == np.float32(599 * 255**2 + 1)
    dist, idx, _ = search_triton(X[:1], y[:1], X, y, p=2.0, k=2, device=tdevice)
    want_d, want_i = oracle.nearest_other(X, y, X[:1], y[:1], p=2.0, k=2)
    assert idx[0, 0].tolist() == [2, 1] == want_i[0].tolist()
    np.testing.assert_array_equal(dist[:, 0], want_d)
