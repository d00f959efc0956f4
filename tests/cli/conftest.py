"""Fixtures of the CLI tests (helpers that are plain functions are in tests/cli/helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Many tiny torch tiles: one thread avoids OpenMP barriers on a busy shared machine."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
