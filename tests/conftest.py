"""Shared fixtures: the real MNIST test set (skipped cleanly when absent)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
MNIST_FILES = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the real MNIST test set, or skip."""
    missing = [f for f in MNIST_FILES if not (MNIST_DIR / f).exists()]
    if missing:
        pytest.skip(f"real MNIST not available at {MNIST_DIR} (missing {', '.join(missing)})")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_test(mnist_dir: Path):
    """(X uint8 (10000, 1, 28, 28), y int64) read with sepcheck's own IDX reader."""
    from sepcheck.datasets.idx import read_idx_pair

    for name, md5 in MNIST_FILES.items():
        assert hashlib.md5((mnist_dir / name).read_bytes()).hexdigest() == md5
    return read_idx_pair(mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Cached results go to a fresh folder per test, never to the user's ~/.cache."""
    monkeypatch.setenv("SEPCHECK_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> str:
    """Every engine, classifier and training test that takes ``device`` runs on the CPU and,
    where torch sees a GPU, again on CUDA (skipped with a reason otherwise)."""
    if request.param == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    return request.param


@pytest.fixture()
def one_thread():
    """One torch thread for the test (many tiny torch ops: OpenMP barriers cost more than they
    give on a busy shared machine); use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
