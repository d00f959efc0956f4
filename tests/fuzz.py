"""Shared pieces of the file-reader fuzz tests: random byte flips of a valid file."""

from __future__ import annotations

from hypothesis import strategies as st

#: up to 6 (position as a fraction of the length, new byte value) pairs
FLIPS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6)


def flip(data: bytes, flips: list[tuple[float, int]]) -> bytes:
    """``data`` with each flip applied (the byte at ``int(where * len)`` becomes ``byte``)."""
    out = bytearray(data)
    for where, byte in flips:
        out[int(where * len(out))] = byte
    return bytes(out)
