"""Fixtures of the data set tests (file writers and the local server are in fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datasets.fixtures import isolate


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """A fresh, offline $SEPCHECK_DATA for one test (see :func:`isolate`)."""
    return isolate(tmp_path, monkeypatch)


MNIST_FULL_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist-full"


@pytest.fixture(scope="session")
def mnist_full_dir() -> Path:
    """The complete real MNIST (60 000 train, reconstructed .gz; 10 000 t10k), or skip."""
    names = [f"{p}-{k}-idx{d}-ubyte.gz" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]
    missing = [n for n in names if not (MNIST_FULL_DIR / n).is_file()]
    if missing:
        pytest.skip(f"real MNIST training files not available at {MNIST_FULL_DIR} (missing {', '.join(missing)})")
    return MNIST_FULL_DIR
