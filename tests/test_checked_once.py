"""Check once, then trust: one public call reads each input array once to check it (NaN/inf
scan, largest value), however many layers it passes (cached_separation -> separation ->
nearest_other -> the backends); and search options are validated into one SearchOptions."""

import numpy as np
import pytest

import sepcheck
from sepcheck import SepcheckError
from sepcheck.core import validation
from sepcheck.engine.options import SearchOptions
from sepcheck.runs.cache import cached_separation


def _data(dtype):
    rng = np.random.default_rng(0)
    X = rng.random((300, 16)).astype(dtype)
    Xt = rng.random((80, 16)).astype(dtype)
    return X, np.arange(300) % 3, Xt, np.arange(80) % 3


def _scans(fn):
    before = dict(validation.SCANS)
    fn()
    return {k: validation.SCANS[k] - before.get(k, 0) for k in validation.SCANS}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_array_is_scanned_once_per_call(dtype, tmp_path):
    X, y, Xt, yt = _data(dtype)
    for call in (
        lambda: sepcheck.separation(X, y, Xt, yt, norm="l2", device="cpu"),
        lambda: cached_separation(X, y, Xt, yt, norm="linf", device="cpu", cache=tmp_path),
        lambda: sepcheck.nearest_other(X, y, Xt, yt, norm="l1", device="cpu"),
    ):
        scans = _scans(call)
        assert scans.get("finite", 0) == 2  # X and X_test, once each
        assert scans.get("abs_max", 0) <= 2


def test_scans_repeat_without_the_scope():
    """The count can fail: outside one call every check reads the data again."""
    X, _, _, _ = _data(np.float32)
    scans = _scans(lambda: [validation.as_features(X) for _ in range(3)])
    assert scans["finite"] == 3
    with validation.checked_once_scope():
        scans = _scans(lambda: [validation.as_features(X) for _ in range(3)])
    assert scans["finite"] == 1


def test_an_array_changed_between_calls_is_checked_again():
    X, y, _, _ = _data(np.float32)
    sepcheck.nearest_other(X, y, device="cpu")
    X[5, 3] = np.nan
    with pytest.raises(SepcheckError, match="NaN"):
        sepcheck.nearest_other(X, y, device="cpu")


def test_search_options_are_validated_once_and_reused():
    opts = SearchOptions(backend="NUMBA", device="CPU", memory_budget="64MiB")
    assert (opts.backend, opts.device, opts.memory_budget) == ("numba", "cpu", 64 * 2**20)
    X, y, _, _ = _data(np.float32)
    d1, i1 = sepcheck.nearest_other(X, y, norm="linf", options=opts)
    d2, i2 = sepcheck.nearest_other(X, y, norm="linf", backend="numba", device="cpu", memory_budget="64MiB")
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    with pytest.raises(SepcheckError, match="one or the other"):
        sepcheck.nearest_other(X, y, options=opts, backend="torch")
    for bad, word in (({"backend": "gpu"}, "unknown backend"), ({"device": "tpu"}, "unknown device"),
                      ({"block_size": 0}, "block_size"), ({"memory_budget": "1KB"}, "16MiB"),
                      ({"raw": "yes"}, "raw")):
        with pytest.raises(SepcheckError, match=word):
            SearchOptions(**bad)
    with pytest.raises(SepcheckError, match="unknown search option 'k'"):
        SearchOptions.of(k=3)
