"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tdevice(device, monkeypatch) -> str:
    """Device for the Triton kernels: 'cpu' runs triton's interpreter, 'cuda' (skipped without
    a GPU) the compiled kernels. The test module sets ``TRITON_INTERPRET=1`` before importing
    triton when torch sees no GPU (triton reads it on import), so triton is imported lazily here."""
    from sepcheck.engine.kernels import triton_kernels

    if device == "cpu":
        if not triton_kernels.interpreter_loaded():
            pytest.skip("triton was imported without TRITON_INTERPRET=1 (GPU machine): CPU runs need the interpreter")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return device
