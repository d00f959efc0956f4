"""``--smoke`` for the benchmark scripts: tiny data and a temporary results folder.

A smoke run calls the same functions as the full run, on data small enough for a few seconds
on 2 cores, with no GPU, no network and no ../shared: a rotten import or a changed API fails
it (``tests/test_benchmark_smoke.py`` runs every script so). The data comes in the two forms
the scripts read:

* :func:`fake_data`: a folder shaped like ../shared/data (``mnist-full/`` IDX files of 28 x 28
  images, ``cifar10-jpeg/{train,test}/<class>/*.png``), for the scripts that read the raw data;
* :func:`write_arrays`: the arrays ``make_bench_arrays.py`` writes (``bench_arrays.npz``) and
  their per-data-set copies (``cifar10.npz``, ``mnist.npz`` as in /tmp/bench_local).

Never written to benchmarks/results: :func:`out_dir` is ``--out`` or a new temporary folder.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np

HELP = ("tiny synthetic data, a few seconds on 2 cores, no GPU / network / ../shared; the same code paths "
        "as a full run; results in --out or a new temporary folder, never in benchmarks/results")
CLASSES = 3


def add_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--smoke", action="store_true", help=HELP)


def out_dir(out: Path | str | None, script: str) -> Path:
    """``out`` (created), or a new temporary folder named after ``script``."""
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"{script}-smoke-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"smoke run: results in {folder}", flush=True)
    return folder


def images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``shape`` in :data:`CLASSES` classes (a random centre per class plus
    noise, so that nearest neighbours are not all ties) and their int64 labels."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).integers(40, 216, (CLASSES, *shape))
    y = np.arange(n, dtype=np.int64) % CLASSES
    X = centres[y] + rng.integers(-40, 41, (n, *shape))
    return np.clip(X, 0, 255).astype(np.uint8), y


def arrays(n_train: int = 240, n_test: int = 60, cifar_dim: int = 192, mnist_dim: int = 64) -> dict:
    """The keys of ``make_bench_arrays.py``'s file: X_train, y_train, X_test, y_test (CIFAR-like)
    and mnist_X_train, .. (MNIST-like), uint8 rows (n, features) and int64 labels."""
    out = {}
    for prefix, dim, seed in (("", cifar_dim, 0), ("mnist_", mnist_dim, 10)):
        for split, n in (("train", n_train), ("test", n_test)):
            out[f"{prefix}X_{split}"], out[f"{prefix}y_{split}"] = images(n, (dim,), seed + (split == "test"))
    return out


def write_arrays(folder: Path, **sizes: int) -> Path:
    """``bench_arrays.npz``, ``cifar10.npz`` and ``mnist.npz`` of :func:`arrays` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    a = arrays(**sizes)
    np.savez(folder / "bench_arrays.npz", **a)
    np.savez(folder / "cifar10.npz", **{k: v for k, v in a.items() if not k.startswith("mnist_")})
    np.savez(folder / "mnist.npz", **{k[6:]: v for k, v in a.items() if k.startswith("mnist_")})
    return folder


def _idx(path: Path, a: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def fake_data(folder: Path, n_train: int = 120, n_test: int = 30, images_per_class: tuple[int, int] = (8, 3)
              ) -> Path:
    """A folder shaped like ../shared/data: ``mnist-full`` (IDX, 28 x 28) and ``cifar10-jpeg``
    (ImageFolder train/test, 8 x 8 RGB PNG, fewer than 64 images: decoded in-process)."""
    from PIL import Image

    mnist = folder / "mnist-full"
    mnist.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 20), ("t10k", n_test, 21)):
        X, y = images(n, (28, 28), seed)
        _idx(mnist / f"{prefix}-images-idx3-ubyte.gz", X)
        _idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    for split, n, seed in (("train", images_per_class[0], 30), ("test", images_per_class[1], 31)):
        X, y = images(n * CLASSES, (8, 8, 3), seed)
        for i, (x, c) in enumerate(zip(X, y, strict=True)):
            d = folder / "cifar10-jpeg" / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(d / f"{i:04d}.png")
    return folder
