"""Fixtures of the data set tests (file writers and the local server are in fixtures.py)."""

from __future__ import annotations

import pytest

from tests.datasets.fixtures import isolate


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """A fresh, offline $SEPCHECK_DATA for one test (see :func:`isolate`)."""
    return isolate(tmp_path, monkeypatch)
