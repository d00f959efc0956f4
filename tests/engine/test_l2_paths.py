"""Every exact l2 path, forced by SEPCHECK_L2_PATH on any machine, against the float64 oracle:
projection bounds (engine/backends/projection.py), the int8 GEMM, float32 GEMM candidates. Ties
(few distinct values), dtypes, k, both groupings, self and query mode, block sizes,
projection widths; the projection's rounding margins are shown to be needed; 'auto' picks
the int8 GEMM only where the CPU has an int8 dot-product instruction."""

from __future__ import annotations

import json
import os
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError, nearest_by_class, nearest_other, neighbors_within
from sepcheck.engine.backends import l2, projection, torch_backend
from sepcheck.engine.options import SearchOptions
from sepcheck.engine.problem import make_problem
from tests import oracle

PATHS = ("projection", "int8", "float32")


def _rows(rng, dtype: str, n: int, d: int, levels: int) -> np.ndarray:
    """Rows with few distinct values (many tied distances); float rows on a large common
    offset (cancellation in the GEMM's norms)."""
    X = rng.integers(0, levels, (n, d))
    if dtype == "uint8":
        return (X * (255 // max(1, levels - 1))).astype(np.uint8)
    return (X * 0.5 + 300.0).astype(dtype)


def _data(seed: int, dtype: str, n: int, d: int, levels: int, queries: bool, m: int = 9):
    """(X, y, Q, yq): n rows of :func:`_rows` with labels 0..2 (both of the first two
    labels present), and m query rows (None without ``queries``)."""
    rng = np.random.default_rng(seed)
    X = _rows(rng, dtype, n, d, levels)
    y = rng.integers(0, 3, n)
    y[:2] = [0, 1]
    if not queries:
        return X, y, None, None
    return X, y, _rows(rng, dtype, m, d, levels), rng.integers(0, 3, m)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    path=st.sampled_from(PATHS),
    dtype=st.sampled_from(["uint8", "float32", "float64"]),
    n=st.integers(4, 120),
    d=st.sampled_from([17, 40, 100, 300]),
    levels=st.sampled_from([2, 3, 256]),
    k=st.integers(1, 4),
    queries=st.booleans(),
    block=st.sampled_from([None, 1, 7, 64]),
    dims=st.sampled_from([None, (1, 1), (4, 16), (16, 8), (32, 400)]),
    groups=st.sampled_from([1024, 1]),
)
def test_forced_paths_match_oracle(seed, path, dtype, n, d, levels, k, queries, block, dims, groups):
    X, y, Q, yq = _data(seed, dtype, n, d, levels, queries)
    if queries:
        Q[:3] = X[:3]  # exact duplicates under other labels
    scale = 255.0 if dtype == "uint8" else 1.0
    before = (X.copy(), None if Q is None else Q.copy())
    dims_patch = mock.patch.object(projection, "default_dims", lambda dd: dims or (min(dd, 32), min(dd, 128)))
    groups_patch = mock.patch.object(projection, "MAX_GROUPS", groups)  # 1: labels per pair
    with mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": path}), dims_patch, groups_patch:
        info: dict = {}
        dist, idx = nearest_other(X, y, Q, yq, norm="l2", k=k, device="cpu", block_size=block, info=info)
        want = oracle.nearest_other(X, y, Q, yq, p=2.0, k=k, scale=scale)
        np.testing.assert_array_equal(idx, want[1])
        np.testing.assert_allclose(dist, want[0], rtol=1e-12, atol=0)
        assert info["l2_path"] == ("float32" if path == "int8" and dtype != "uint8" else path)
        if Q is not None:
            binfo: dict = {}
            bd, bi, _ = nearest_by_class(X, y, Q, norm="l2", device="cpu", block_size=block, info=binfo)
            wd, wi, _ = oracle.class_distances(X, y, Q, p=2.0, scale=scale)
            np.testing.assert_array_equal(bi, wi)
            np.testing.assert_allclose(bd, wd, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(X, before[0])  # the inputs are never written to
    if Q is not None:
        np.testing.assert_array_equal(Q, before[1])


def test_projection_info_says_what_ran():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (300, 64)).astype(np.uint8)
    y = np.arange(300) % 3
    info: dict = {}
    with mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": "projection"}):
        nearest_other(X, y, norm="l2", device="cpu", info=info)
    assert info["l2_path"] == "projection"
    assert info["pairs_bounded"] == 300 * 300
    assert 0 <= info["pairs_exact"] <= info["pairs_refined"] + 300 * 4 <= info["pairs_bounded"]
    assert info["projection_dims"] == [63, 64]  # the GEMM: 63 directions and the norm column


def _tie_problem(seed: int, dtype):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (400, 48)).astype(dtype)
    if dtype == np.float32:
        X = (X * rng.choice([1, 3], size=(1, 48)) + 1000).astype(np.float32)
    y = rng.integers(0, 2, 400)
    return X, y


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_projection_margins_are_needed(dtype):
    """Without the rounding margins (margin=0) the projection prunes true neighbours tied at
    the k-th distance on some of these tie-heavy sets (float32 rounding of the projected
    rows); with them (margin=1, what every search uses) every answer is the oracle's."""
    wrong_without = 0
    for seed in range(10):
        X, y = _tie_problem(seed, dtype)
        problem = make_problem(X, y, norm="l2", k=2)
        want = oracle.nearest_other(X, y, p=2.0, k=2)[1]
        for margin in (1.0, 0.0):
            _, idx, _, done = projection.search(problem, 2**28, dims=(8, 48), margin=margin)
            assert done == 400
            wrong = int((idx[:, 0, :] != want).any(axis=1).sum())
            if margin == 1.0:
                assert wrong == 0, seed
            else:
                wrong_without += wrong
    assert wrong_without > 0


def test_projection_gives_up_where_the_bound_does_not_pay():
    """Uniform random rows have no dominant directions: an automatic projection search
    stops after its probe block and finishes by the GEMM path, exactly."""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (2500, 128)).astype(np.uint8)
    y = np.arange(2500) % 10
    with mock.patch.object(torch_backend, "int8_gemm_fast", lambda device: False):
        problem = make_problem(X[:2500], y, X[:200], y[:200], norm="l2")
        assert l2.choose_path(problem, torch.device("cpu"), 2**29) == "projection"
        dist, idx, extra = l2.search(problem, torch.device("cpu"), 2**29)
    assert extra["l2_path"].startswith("projection (first 64 queries), then float32"), extra
    want = oracle.nearest_other(X, y, X[:200], y[:200], p=2.0)[1]
    np.testing.assert_array_equal(idx[:, 0, :], want)


def test_auto_uses_int8_only_where_fast():
    X = np.zeros((4, 64), dtype=np.uint8)
    X[1::2] = 1
    problem = make_problem(X, [0, 1, 0, 1], norm="l2")
    cpu = torch.device("cpu")
    exact = torch_backend.int8_gemm_exact(problem, cpu)
    with mock.patch.object(torch_backend, "cpu_flags", lambda: frozenset({"avx2", "fma"})):
        assert not torch_backend.int8_gemm_fast(cpu)
        assert not torch_backend.use_int8(problem, cpu)
    for flag in torch_backend.INT8_FLAGS:
        with mock.patch.object(torch_backend, "cpu_flags", lambda flag=flag: frozenset({"avx2", flag})):
            assert torch_backend.int8_gemm_fast(cpu)
            assert torch_backend.use_int8(problem, cpu) == exact
    with mock.patch.object(torch_backend, "cpu_flags", lambda: None):
        assert torch_backend.int8_gemm_fast(cpu) == torch_backend._int8_timing_probe()


def test_bad_path_setting_is_one_line():
    X = np.zeros((4, 64), dtype=np.uint8)
    X[1::2] = 1
    with (
        mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": "fastest"}),
        pytest.raises(SepcheckError, match="SEPCHECK_L2_PATH='fastest' is not an l2 path: use one of"),
    ):
        nearest_other(X, [0, 1, 0, 1], norm="l2", device="cpu")


def test_projection_bound_is_a_lower_bound():
    """||P^T (q - r)|| <= sigma ||q - r|| for the fitted matrix, and the projected rows are
    within their stated error of the float64 projection."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 90)).astype(np.float32) * 40 + 7
    proj = projection.fit(X, 24)
    P = proj.matrix.astype(np.float64)
    assert np.linalg.norm(P, 2) <= proj.sigma
    assert np.linalg.norm(np.abs(P), 2) <= proj.abs_sigma
    Xp, err = projection.project(proj, X)
    exact = (X.astype(np.float64) - proj.center.astype(np.float64)) @ P
    assert np.all(np.linalg.norm(Xp - exact, axis=1) <= err)
    diff = X[:50, None, :].astype(np.float64) - X[None, 50:100, :]
    assert np.all(np.linalg.norm(diff @ P, axis=2) <= proj.sigma * np.linalg.norm(diff, axis=2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    path=st.sampled_from(PATHS),
    dtype=st.sampled_from(["uint8", "float32", "float64"]),
    n=st.integers(3, 90),
    d=st.sampled_from([17, 60]),
    quantile=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    queries=st.booleans(),
    other=st.booleans(),
    groups=st.sampled_from([1024, 1]),
)
def test_forced_paths_radius_match_oracle(seed, path, dtype, n, d, quantile, queries, other, groups):
    X, y, Q, yq = _data(seed, dtype, n, d, 3, queries, m=7)
    scale = 255.0 if dtype == "uint8" else 1.0
    D = oracle.pairwise(X if Q is None else Q, X, 2.0) / scale
    radius = float(np.quantile(D, quantile))  # a radius that equals some pairs' distances
    with (
        mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": path}),
        mock.patch.object(projection, "MAX_GROUPS", groups),  # 1: labels checked per pair
    ):
        info: dict = {}
        got = neighbors_within(X, y, radius, Q, yq, norm="l2", other_label=other, device="cpu", info=info)
    want = oracle.within(X, y, radius, Q, yq, p=2.0, scale=scale, other_label=other)
    assert info["l2_path"] == ("float32" if path == "int8" and dtype != "uint8" else path)
    for i, (wi, wd) in enumerate(want):
        gi, gd = got.row(i)
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_allclose(gd, wd, rtol=1e-12, atol=0)


@pytest.mark.parametrize("max_pairs", [1, 5, 10**6])
def test_projection_radius_hands_over_parts_of_at_most_max_pairs(max_pairs):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, (80, 30)).astype(np.uint8)
    y = np.arange(80) % 2
    problem = make_problem(X, y, norm="l2")
    threshold = 4.0  # raw units: pairs at squared distance <= 16
    seen: list = []

    def on_block(qs, n, rows, cols, values):
        assert rows.size <= max(max_pairs, np.bincount(rows - qs, minlength=n).max())
        assert np.all((rows >= qs) & (rows < qs + n))
        seen.append((qs, n, rows, cols, values))

    projection.radius_pairs(problem, 2**26, 16, max_pairs, threshold, on_block)
    starts = [s[0] for s in seen]
    assert starts == sorted(starts) and sum(s[1] for s in seen) == 80
    rows = np.concatenate([s[2] for s in seen])
    cols = np.concatenate([s[3] for s in seen])
    vals = np.concatenate([s[4] for s in seen])
    dist = oracle.pairwise(X, X, 2.0)
    want = np.argwhere((dist <= threshold) & (y[:, None] != y[None, :]))
    got = np.stack([rows, cols], axis=1)
    np.testing.assert_array_equal(got[np.lexsort((cols, rows))], want)
    np.testing.assert_array_equal(vals[np.lexsort((cols, rows))], dist[want[:, 0], want[:, 1]])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(["uint8", "float32", "float64"]),
    n=st.integers(4, 100),
    d=st.sampled_from([17, 40, 300]),
    levels=st.sampled_from([2, 3, 256]),
    k=st.integers(1, 4),
    queries=st.booleans(),
    block=st.sampled_from([None, 1, 7]),
    dims=st.sampled_from([None, (1, 1), (4, 16), (32, 400)]),
    groups=st.sampled_from([1024, 1]),
)
def test_projection_in_torch_ops_matches_oracle(seed, dtype, n, d, levels, k, queries, block, dims, groups):
    """The CUDA version of the projection search (torch operations), run on the CPU."""
    from sepcheck.engine.backends import projection_torch
    from sepcheck.engine.problem import make_by_class_problem

    X, y, Q, yq = _data(seed, dtype, n, d, levels, queries)
    cpu = torch.device("cpu")
    with mock.patch.object(projection, "MAX_GROUPS", groups):
        d2, idx, extra = projection_torch.search(make_problem(X, y, Q, yq, norm="l2", k=k), cpu, 2**26, block, dims=dims)
        want = oracle.nearest_other(X, y, Q, yq, p=2.0, k=k)
        np.testing.assert_array_equal(idx[:, 0, :], want[1])
        np.testing.assert_allclose(np.sqrt(d2[:, 0, :]), want[0], rtol=1e-12, atol=0)
        assert extra["l2_path"] == "projection"
        if Q is not None:
            d2, idx, _ = projection_torch.search(make_by_class_problem(X, y, Q, norm="l2"), cpu, 2**26, block, dims=dims)
            wd, wi, _ = oracle.class_distances(X, y, Q, p=2.0)
            np.testing.assert_array_equal(idx[:, :, 0], wi)
            np.testing.assert_allclose(np.sqrt(d2[:, :, 0]), wd, rtol=1e-12, atol=0)


def test_auto_path_choice():
    """'auto' on the CPU: projection for rows long and many enough whose arrays fit the
    budget, else the int8 GEMM where it is fast, else float32; CUDA never auto-projects."""
    cpu = torch.device("cpu")
    rng = np.random.default_rng(0)
    big = make_problem(rng.integers(0, 256, (2048, 64)).astype(np.uint8), np.arange(2048) % 2, norm="l2")
    short = make_problem(rng.integers(0, 256, (2048, 63)).astype(np.uint8), np.arange(2048) % 2, norm="l2")
    few = make_problem(rng.integers(0, 256, (2047, 64)).astype(np.uint8), np.arange(2047) % 2, norm="l2")
    floats = make_problem(rng.normal(size=(2048, 64)), np.arange(2048) % 2, norm="l2")
    assert l2.choose_path(big, cpu, 2**29) == "projection"
    assert l2.choose_path(floats, cpu, 2**29) == "projection"
    assert l2.choose_path(big, cpu, projection.memory_needed(big) - 1) != "projection"
    for fast in (True, False):
        with mock.patch.object(torch_backend, "int8_gemm_fast", lambda device, fast=fast: fast):
            want = "int8" if fast and torch_backend.int8_gemm_exact(short, cpu) else "float32"
            assert l2.choose_path(short, cpu, 2**29) == want
            assert l2.choose_path(few, cpu, 2**29) == want
    with mock.patch.object(torch_backend, "use_int8", lambda problem, device: True):
        assert l2.choose_path(big, torch.device("cuda"), 2**29) == "int8"  # never auto-projection
    with mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": "float32"}):
        assert l2.choose_path(big, cpu, 2**29) == "float32"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    path=st.sampled_from(PATHS),
    dtype=st.sampled_from(["uint8", "float32"]),
    n=st.integers(5, 70),
    k=st.integers(1, 3),
    queries=st.booleans(),
    by_class=st.booleans(),
    block_rows=st.integers(1, 40),
    query_rows=st.integers(1, 30),
)
def test_forced_paths_streamed_match_oracle(seed, path, dtype, n, k, queries, by_class, block_rows, query_rows):
    """Every l2 path on streamed .npy blocks: each block pair is its own problem (the
    projection fitted on that block), the answer the oracle's."""
    import tempfile
    from pathlib import Path

    from sepcheck.engine.problem import Grouping
    from sepcheck.engine.stream import stream_search

    X, y, Q, yq = _data(seed, dtype, n, 40, 3, queries or by_class, m=11)
    scale = 255.0 if dtype == "uint8" else 1.0
    sizes = {"block_rows": block_rows, "query_rows": query_rows}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": path}):
        np.save(Path(tmp) / "x.npy", X)
        ref = str(Path(tmp) / "x.npy")
        if by_class:
            np.save(Path(tmp) / "q.npy", Q)
            d, i, _ = stream_search(ref, y, str(Path(tmp) / "q.npy"), grouping=Grouping.BY_CLASS, norm="l2", options=SearchOptions(device="cpu"), **sizes)
            wd, wi, _ = oracle.class_distances(X, y, Q, p=2.0, scale=scale)
            np.testing.assert_array_equal(i[:, :, 0], wi)
            np.testing.assert_allclose(d[:, :, 0], wd, rtol=1e-12, atol=0)
            return
        d, i, _ = stream_search(ref, y, Q, yq, norm="l2", k=k, options=SearchOptions(device="cpu"), **sizes)
    wd, wi = oracle.nearest_other(X, y, Q, yq, p=2.0, k=k, scale=scale)
    np.testing.assert_array_equal(i[:, 0], wi)
    np.testing.assert_allclose(d[:, 0], wd, rtol=1e-12, atol=0)


def test_cli_json_names_the_l2_path(tmp_path):
    from tests.cli.helpers import run

    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (60, 8, 8)).astype(np.uint8)
    y = np.arange(60) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with mock.patch.dict(os.environ, {"SEPCHECK_L2_PATH": "projection"}):
        r = run("separation", "--device", "cpu", str(tmp_path / "d.npz"), "--norm", "l2", "--json", "--no-cache")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["l2_path"] == "projection"
    assert rep["separation"] == oracle.nearest_other(X, y, p=2.0, scale=255.0)[0].min()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 40),
    cols=st.integers(1, 1100),
    dtype=st.sampled_from([np.int32, np.float32, np.float64]),
    levels=st.sampled_from([2, 1000]),
)
def test_column_min_is_numpy_argmin(seed, rows, cols, dtype, levels):
    """The symmetric driver's column minima (select.column_min): the minimum and its first
    row, as numpy's argmin, ties included."""
    from sepcheck.engine.kernels.select import column_min

    base = np.random.default_rng(seed).integers(0, levels, (rows, cols)).astype(dtype)
    m, idx = column_min(base)
    want = np.argmin(base, axis=0)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(m, base[want, np.arange(cols)])


def test_strided_labels_reach_the_kernels_contiguous():
    """A strided label view is copied once at validation, so the compiled kernels see one
    layout (a view used to compile a second specialisation of every kernel: seconds)."""
    from sepcheck.engine.problem import make_problem

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (40, 8)).astype(np.uint8)
    y = np.repeat(np.arange(4), 10)[::-1]  # a negative-stride view
    problem = make_problem(X, y[::1], norm="l2")
    assert problem.reference_labels.flags.c_contiguous
    wide = np.zeros((40, 2), dtype=np.int64)
    wide[:, 0] = np.arange(40) % 3
    problem = make_problem(X, wide[:, 0], norm="l2")  # a strided column
    assert problem.reference_labels.flags.c_contiguous
    np.testing.assert_array_equal(problem.reference_labels, np.arange(40) % 3)
