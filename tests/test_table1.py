"""The paper's Table 1 on the real MNIST (../shared/data/mnist-full; skipped when absent):
linf train-train separation 188/255 = 0.7373 and test-train 207/255 = 0.8118 (the paper:
0.737 / 0.812).

The default test checks, against a numpy brute force over all 60 000 training images, the
nearest differently labelled training image of the two points where the minima are attained
(found by benchmarks/replicate_table1.py): seconds. The full computation (minutes) runs
with SEPCHECK_FULL_TABLE1=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import sepcheck

MNIST_FULL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-full"
#: (point, its nearest differently labelled training image) where the minima are attained
TRAIN_ARGMIN, TEST_ARGMIN = (3532, 33406), (3040, 25562)


@pytest.fixture(scope="module")
def mnist_full():
    if not (MNIST_FULL / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the real 60 000-image MNIST is not at {MNIST_FULL}")
    from sepcheck.datasets import open_dataset

    ds = open_dataset(str(MNIST_FULL), download=False)
    flat = lambda a: np.ascontiguousarray(np.asarray(a).reshape(len(a), -1))  # noqa: E731
    return flat(ds.X), np.asarray(ds.y), flat(ds.X_test), np.asarray(ds.y_test)


def _brute(X, y, q, label):
    """(distance in raw units, index) of the nearest training row with another label."""
    d = (np.maximum(X, q) - np.minimum(X, q)).max(axis=1).astype(np.int64)
    d[y == label] = 1 << 20
    j = int(np.argmin(d))
    return int(d[j]), j


def test_table1_minima_are_attained(mnist_full):
    X, y, Xt, yt = mnist_full
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    for (i, j), Q, yq, raw in ((TRAIN_ARGMIN, X, y, 188), (TEST_ARGMIN, Xt, yt, 207)):
        dist, nbr = sepcheck.nearest_other(X, y, Q[i : i + 1], yq[i : i + 1], norm="linf", device="cpu")
        assert (dist[0, 0], nbr[0, 0]) == (raw / 255, j)
        assert _brute(X, y, Q[i], yq[i]) == (raw, j)
    assert round(188 / 255, 3) == 0.737 and round(207 / 255, 3) == 0.812  # the paper's rounding


@pytest.mark.skipif(os.environ.get("SEPCHECK_FULL_TABLE1") != "1",
                    reason="the full 60 000 x 60 000 linf separation takes minutes: set SEPCHECK_FULL_TABLE1=1")
def test_table1_full(mnist_full):
    X, y, Xt, yt = mnist_full
    res = sepcheck.separation(X, y, Xt, yt, norm="linf", device="cpu")
    assert res.separation == 188 / 255 and res.test_separation == 207 / 255
    assert tuple(int(v) for v in (res.distances.argmin(), res.neighbors[res.distances.argmin()])) == TRAIN_ARGMIN
