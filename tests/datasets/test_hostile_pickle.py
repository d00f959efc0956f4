"""The CIFAR unpickler never lets a pickle drive numpy's ``__setstate__``: an unsafe BUILD,
dtype or array size is refused, and a genuine batch round-trips.

The fuzz test mutates valid CIFAR batches and parses every mutant in a child process, so a
segfault (exit 139, nothing printed) fails the test instead of crashing pytest.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck.core.errors import SepcheckError
from sepcheck.datasets.cifar import parse_batch
from sepcheck.datasets.safe_pickle import safe_loads
from tests.datasets.fixtures import cifar_batch

ROOT = Path(__file__).resolve().parents[2]


def _batch(n: int = 3, py2: bool = False) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    X = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    return cifar_batch(X, y, py2=py2), X, y


@pytest.mark.parametrize("py2", [False, True])
def test_genuine_batch_round_trips(py2):
    data, X, y = _batch(py2=py2)
    Xr, yr = parse_batch(data, b"labels", "batch")
    np.testing.assert_array_equal(Xr, X)
    np.testing.assert_array_equal(yr, y)
    assert Xr.flags.writeable


def test_fortran_and_big_endian_arrays_keep_their_values():
    a = np.arange(6.0).reshape(2, 3).T
    b = np.array([1, 2, 3], dtype=">i4")
    out = safe_loads(pickle.dumps({"a": a, "b": b}, protocol=2))
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)


class _EvilDtype:
    """Pickles as ``numpy.dtype('u1')`` whose BUILD state sets a 16 MB item size."""

    def __reduce__(self):
        return np.dtype, ("u1", False, True), (3, "|", None, None, None, 16 << 20, 1, 0)


class _ArrayOf:
    """Pickles as numpy writes an array, with a chosen dtype object in its state."""

    def __init__(self, dtype, n):
        self.dtype, self.n = dtype, n

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (self.n,), self.dtype, False, bytes(self.n))


def _grown_dtype_pickle() -> bytes:
    """A hostile CIFAR batch: BUILD gives the labels' uint8 dtype an item size of 16 MB."""
    return pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": _ArrayOf(_EvilDtype(), 2)},
                        protocol=2)


def test_build_growing_a_dtype_item_size_is_refused():
    with pytest.raises(SepcheckError, match="numpy.dtype state"):
        safe_loads(_grown_dtype_pickle(), "data_batch_1")


def test_build_on_a_plain_object_is_refused():
    p = b"\x80\x02]q\x00}q\x01X\x01\x00\x00\x00aK\x01sb."  # [] with BUILD {'a': 1}
    with pytest.raises(SepcheckError, match="BUILD"):
        safe_loads(p, "x")


def test_array_byte_count_is_checked_before_an_array_exists():
    p = pickle.dumps(np.zeros(4, np.uint8), protocol=2)
    # claim 2**62 elements for the same 4 bytes
    huge = p.replace(b"K\x04\x85", b"\x8a\x08" + (1 << 62).to_bytes(8, "little") + b"\x85", 1)
    assert huge != p
    with pytest.raises(SepcheckError, match="bytes for shape"):
        safe_loads(huge, "x")


@pytest.mark.parametrize("dtype", ["O", "V8", "U4", "M8[s]", "c16"])
def test_non_numeric_dtypes_are_refused(dtype):
    arr = np.zeros(2, dtype=dtype) if dtype != "O" else np.array([1, "a"], dtype=object)
    with pytest.raises(SepcheckError, match="never loads"):
        safe_loads(pickle.dumps(arr, protocol=2), "x")


def test_unbuilt_array_shell_is_refused():
    p = pickle.dumps(np.zeros(2, np.uint8), protocol=2)
    reduce_end = p.index(b"\x87q\x08R") + 4  # _reconstruct(ndarray, shape, dtype)
    with pytest.raises(SepcheckError, match="without its state"):
        safe_loads(p[:reduce_end] + b".", "x")


def test_bytearray_of_a_size_is_refused():
    p = b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R."
    with pytest.raises(SepcheckError, match="bytearray"):
        safe_loads(p, "x")


_CHILD = r"""
import json, sys
from sepcheck.datasets.cifar import parse_batch
from sepcheck.core.errors import SepcheckError
blobs = open(sys.argv[1], "rb").read()
out = []
pos = 0
while pos < len(blobs):
    n = int.from_bytes(blobs[pos:pos + 8], "little"); pos += 8
    data = blobs[pos:pos + n]; pos += n
    try:
        X, y = parse_batch(data, b"labels", "batch")
        ok = X.dtype.name == "uint8" and X.shape[1:] == (3, 32, 32) and y.shape == (X.shape[0],)
        out.append("ok" if ok else f"bad result {X.dtype} {X.shape} {y.shape}")
    except SepcheckError as exc:
        out.append("error" if "\n" not in str(exc) else "multi-line: " + str(exc))
print(json.dumps(out))
"""

_mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "length", "dup"]),
                      st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.integers(1, 40))


def _mutate(data: bytes, kind: str, where: float, byte: int, span: int) -> bytes:
    i = int(where * len(data))
    if kind == "flip":
        return data[:i] + bytes([byte]) + data[i + 1:]
    if kind == "insert":  # an opcode out of place
        return data[:i] + bytes([byte]) + data[i:]
    if kind == "delete":
        return data[:i] + data[i + span:]
    if kind == "length":  # a 4-byte length or integer argument made huge or small
        return data[:i] + (byte << 24 | span).to_bytes(4, "little") + data[i + 4:]
    return data[:i] + data[i:i + span] + data[i:]  # nested / repeated objects


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=60, max_size=60), st.booleans())
def test_fuzzed_cifar_pickles_never_crash(tmp_path_factory, mutations, py2):
    """Every mutant gives a one-line SepcheckError or a well-formed batch; never a crash."""
    data, _, _ = _batch(2, py2=py2)
    blobs = b""
    for m in mutations:
        mutant = _mutate(data, *m)
        blobs += len(mutant).to_bytes(8, "little") + mutant
    f = tmp_path_factory.mktemp("fuzz") / "blobs"
    f.write_bytes(blobs)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(f)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout)
    assert len(results) == len(mutations)
    assert all(r in ("ok", "error") for r in results), [r for r in results if r not in ("ok", "error")]
