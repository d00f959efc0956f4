"""Shared fixtures: the real MNIST test set (skipped cleanly when absent), a ``device``
fixture over cpu and cuda, and the fake-GPU mode.

Fake-GPU mode (``pytest --fake-gpu`` or ``SEPCHECK_FAKE_GPU=1``): ``torch.cuda.is_available``
returns True for the whole session, as on a GPU machine, so that every ``device='auto'``
resolution takes its CUDA branch; the ``device`` fixture still skips 'cuda' unless a real
GPU exists.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

#: torch.cuda.is_available() before any fake-GPU patch (None: not probed yet)
_REAL_CUDA: dict[str, bool] = {}


def pytest_addoption(parser):
    parser.addoption(
        "--fake-gpu",
        action="store_true",
        default=False,
        help="patch torch.cuda.is_available to return True for the session (also SEPCHECK_FAKE_GPU=1)",
    )


def pytest_configure(config):
    if config.getoption("--fake-gpu") or os.environ.get("SEPCHECK_FAKE_GPU", "") == "1":
        import torch

        _REAL_CUDA["available"] = bool(torch.cuda.is_available())
        torch.cuda.is_available = lambda: True


def real_cuda_available() -> bool:
    """Whether a real CUDA GPU exists, even in fake-GPU mode."""
    if "available" in _REAL_CUDA:
        return _REAL_CUDA["available"]
    import torch

    return bool(torch.cuda.is_available())


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
    return read_idx_pair(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz"
    )


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Cached results go to a fresh folder per test, never to the user's ~/.cache."""
    monkeypatch.setenv("SEPCHECK_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> str:
    """Every engine, classifier and training test that takes ``device`` runs on the CPU and,
    where torch sees a GPU, again on CUDA (skipped with a reason otherwise)."""
    if request.param == "cuda" and not real_cuda_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    return request.param


@pytest.fixture
def one_thread():
    """torch limited to one thread for the test (many tiny tiles: OpenMP barriers cost more
    than they give on a busy machine); restored afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
