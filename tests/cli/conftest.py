"""Fixtures of the CLI tests (helpers that are plain functions are in tests/cli/helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Many tiny torch tiles: one thread avoids OpenMP barriers on a busy shared machine."""
    yield
