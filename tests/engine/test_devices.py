"""Backends and devices on a (simulated) GPU machine: every backend name works with
device='auto'; CPU-only backends imply the CPU; explicit CUDA with one is a one-line error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sepcheck import SepcheckError, nearest_other
from sepcheck.engine import choose, make_by_class_problem, make_problem, nearest_by_class
from sepcheck.engine.backends.faiss_backend import has_gpu
from tests import oracle


@pytest.fixture
def gpu_machine(monkeypatch):
    """torch believes a GPU exists (nothing runs on it here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _data():
    rng = np.random.default_rng(11)
    X = rng.integers(0, 256, (40, 6)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    return X, y


def test_cpu_only_backends_run_on_the_cpu_under_auto(gpu_machine):
    X, y = _data()
    want = oracle.nearest_other(X, y, p=math.inf, k=2, scale=255.0)
    for backend in ("numba", "faiss"):
        info: dict = {}
        d, i = nearest_other(X, y, k=2, backend=backend, device="auto", info=info)
        cpu_only = backend == "numba" or not has_gpu()
        assert info["backend"] == backend and (info["device"] == "cpu") == cpu_only
        np.testing.assert_array_equal(i, want[1])
        np.testing.assert_array_equal(d, want[0])
    od, oi, _ = oracle.class_distances(X, y, X[:7], p=math.inf, scale=255.0)
    d, i, _ = nearest_by_class(X, y, X[:7], backend="numba", device="auto")
    np.testing.assert_array_equal(i, oi)
    np.testing.assert_array_equal(d, od)


def test_gpu_backends_resolve_to_cuda_under_auto(gpu_machine):
    X, y = _data()
    linf, l2 = make_problem(X, y, norm="linf"), make_by_class_problem(X, y, X, norm="l2")
    for problem in (linf, l2):
        assert choose(problem, "torch", "auto") == ("torch", "cuda")
        assert choose(problem, "auto", "cpu")[1] == "cpu"
    # linf/l1 on a GPU: the Triton kernels (triton is a test dependency); l2: the GEMM path
    assert choose(linf, "auto", "auto") == ("triton", "cuda")
    assert choose(make_problem(X, y, norm="l1"), "triton", "auto") == ("triton", "cuda")
    assert choose(l2, "auto", "auto") == ("torch", "cuda")


def test_triton_computes_linf_l1_and_uint8_l2_only():
    X, y = _data()
    with pytest.raises(SepcheckError, match="linf, l1 and uint8 l2 only.*float rows") as exc:
        choose(make_problem(X.astype(np.float32), y, norm="l2"), "triton", "cpu")
    assert "\n" not in str(exc.value)
    with pytest.raises(SepcheckError, match="linf, l1 and uint8 l2 only"):
        choose(make_problem(X, y, norm=3.0), "triton", "cpu")
    assert choose(make_problem(X, y, norm="l2"), "triton", "cpu") == ("triton", "cpu")


@pytest.mark.parametrize(
    "backend, fragment",
    [("numba", "CPU only: use device='cpu'"), ("faiss", "faiss with GPU support")],
)
def test_cpu_only_backend_on_explicit_cuda_is_one_line_error(gpu_machine, backend, fragment):
    if backend == "faiss" and has_gpu():
        pytest.skip("this faiss has GPU support")
    X, y = _data()
    with pytest.raises(SepcheckError, match=fragment) as exc:
        nearest_other(X, y, backend=backend, device="cuda")
    assert "\n" not in str(exc.value)


def test_faiss_gpu_resources_are_shared_and_local_rank_honoured(monkeypatch):
    """One StandardGpuResources per GPU for every index (a stand-in faiss module records them)."""
    from sepcheck.engine.backends import faiss_backend

    made = []

    class FakeFaiss:
        METRIC_Linf = METRIC_L1 = METRIC_Lp = 0

        def StandardGpuResources(self):  # noqa: N802 - faiss's name
            made.append(object())
            return made[-1]

        def get_num_gpus(self):
            return 2

        def IndexFlatL2(self, dim):  # noqa: N802
            return ("index", dim)

        def index_cpu_to_gpu(self, res, gpu, index):
            return (res, gpu, index)

    monkeypatch.setattr(faiss_backend, "_GPU_RESOURCES", {})
    monkeypatch.setenv("LOCAL_RANK", "1")
    fake = FakeFaiss()
    a = faiss_backend._make_index(fake, 4, 2.0, "cuda")
    b = faiss_backend._make_index(fake, 4, 2.0, "cuda")
    c = faiss_backend._make_index(fake, 4, 2.0, "cuda:0")
    assert a[1] == b[1] == 1 and c[1] == 0  # plain 'cuda' is this rank's GPU
    assert a[0] is b[0] and c[0] is not a[0] and len(made) == 2


def test_each_backend_says_whether_it_can_run_a_problem():
    from sepcheck.engine.dispatch import can_run

    X = np.zeros((6, 4), dtype=np.uint8)
    y = np.array([0, 0, 1, 1, 2, 2])
    l2 = make_problem(X, y, norm="l2")
    l3 = make_problem(X.astype(np.float32), y, norm=3)
    by_class = make_by_class_problem(X, y, X, norm="linf")
    assert can_run("torch", l3) is None and can_run("numba", make_problem(X, y)) is None
    assert "linf and l1 only" in can_run("numba", l2)
    assert can_run("triton", l2) is None and "uint8 l2 only" in can_run("triton", l3)
    assert "does not search per class" in can_run("faiss", by_class)
    assert "CPU only" in can_run("numba", make_problem(X, y), "cuda:0")
    assert "unknown backend 'GPU'" in can_run("gpu", l2, given="GPU")
