"""backend='triton' through the engine's public API (both groupings) against the oracle.

Without a GPU the kernels run in triton's interpreter (``TRITON_INTERPRET=1``, set before
triton is imported, as in test_triton_backend.py); with one, compiled on CUDA."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from sepcheck import SepcheckError  # noqa: E402
from sepcheck.engine import nearest_by_class, nearest_other  # noqa: E402
from tests import oracle  # noqa: E402


@pytest.mark.parametrize("norm, p, dtype", [("linf", math.inf, "uint8"), ("l1", 1.0, "uint8"), ("l2", 2.0, "uint8"),
                                            ("linf", math.inf, "float32"), ("l1", 1.0, "float32")])
def test_engine_triton_matches_oracle(tdevice, norm, p, dtype):
    rng = np.random.default_rng(5)
    X = rng.integers(0, 6, (45, 13))  # few values: many ties
    X = X.astype(np.uint8) if dtype == "uint8" else (X / 4).astype(np.float32)
    y = rng.integers(0, 3, 45)
    scale = 255.0 if dtype == "uint8" else 1.0
    info: dict = {}
    d, i = nearest_other(X, y, norm=norm, k=3, backend="triton", device=tdevice, info=info)
    wd, wi = oracle.nearest_other(X, y, p=p, k=3, scale=scale)
    assert info["backend"] == "triton"
    np.testing.assert_array_equal(i, wi)
    np.testing.assert_array_equal(d, wd)
    d, i, classes = nearest_by_class(X, y, X[:9], norm=norm, backend="triton", device=tdevice)
    od, oi, oc = oracle.class_distances(X, y, X[:9], p=p, scale=scale)
    np.testing.assert_array_equal(classes, oc)
    np.testing.assert_array_equal(i, oi)
    np.testing.assert_array_equal(d, od)


def test_engine_triton_refused_on_the_cpu_without_interpreter(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    X = np.array([[0, 1], [2, 3], [4, 5]], dtype=np.uint8)
    with pytest.raises(SepcheckError) as exc:
        nearest_other(X, [0, 1, 0], backend="triton", device="cpu")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("survival", [0.0, 1.0])
def test_auto_probe_picks_a_mode_and_stays_exact(tdevice, monkeypatch, survival):
    """prune='auto' probes the prefix search on a few queries, then runs prefix or tiles."""
    from sepcheck.engine.backends import triton_backend

    monkeypatch.setattr(triton_backend, "PROBE_QUERIES", 8)
    monkeypatch.setattr(triton_backend, "PREFIX_MAX_SURVIVAL", survival)
    rng = np.random.default_rng(9)
    X = rng.integers(0, 4, (60, 24)).astype(np.uint8)
    y = rng.integers(0, 3, 60)
    d, i, info = triton_backend.search_triton(X, y, X, y, p=math.inf, k=2, device=tdevice)
    wd, wi = oracle.nearest_other(X, y, p=math.inf, k=2)
    assert info["prune"] == ("tiles" if survival == 0.0 else "prefix")
    np.testing.assert_array_equal(i[:, 0, :], wi)
    np.testing.assert_array_equal(d[:, 0, :], wd)
