"""Build the arrays ``bench_gpu.py`` reads on a GPU machine that has no copy of the data.

    python benchmarks/make_bench_arrays.py [--data ../shared/data] [--out bench_arrays.npz]
    python benchmarks/make_bench_arrays.py --smoke [--out DIR]     # tiny fake data, seconds

Writes one .npz with uint8 rows (N, features) and int64 labels:
X_train, y_train, X_test, y_test (the real CIFAR-10 JPEG copy, 50 000 + 10 000 x 3 072, read
with sepcheck's ImageFolder reader; classes in sorted folder order) and mnist_X_train,
mnist_y_train, mnist_X_test, mnist_y_test (MNIST-full, 60 000 + 10 000 x 784).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _smoke
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def convert(data: Path, out: Path) -> None:
    """Read ``data``/cifar10-jpeg and ``data``/mnist-full, write the arrays to ``out``."""
    from sepcheck.datasets import load_imagefolder, read_idx_pair

    arrays = {}
    cifar = data / "cifar10-jpeg"
    if cifar.is_dir():
        ds = load_imagefolder(cifar, progress=True)
        arrays.update(X_train=ds.X.reshape(len(ds.X), -1), y_train=ds.y,
                      X_test=ds.X_test.reshape(len(ds.X_test), -1), y_test=ds.y_test)
        print(f"cifar10-jpeg: {arrays['X_train'].shape} + {arrays['X_test'].shape}", file=sys.stderr)
    else:
        print(f"no {cifar}: CIFAR-10 arrays left out", file=sys.stderr)
    mnist = data / "mnist-full"
    if mnist.is_dir():
        for split, prefix in (("train", "train"), ("test", "t10k")):
            X, y = read_idx_pair(mnist / f"{prefix}-images-idx3-ubyte.gz", mnist / f"{prefix}-labels-idx1-ubyte.gz")
            arrays[f"mnist_X_{split}"] = X.reshape(len(X), -1)
            arrays[f"mnist_y_{split}"] = y.astype(np.int64)
        print(f"mnist-full: {arrays['mnist_X_train'].shape}", file=sys.stderr)
    if not arrays:
        sys.exit(f"no data under {data}: pass --data")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="the .npz to write (default bench_arrays.npz in the checkout, git-ignored); "
                         "with --smoke the folder for it")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with cifar10-jpeg/ and mnist-full/")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:  # a tiny ../shared/data look-alike, converted the same way
        folder = _smoke.out_dir(args.out, "make_bench_arrays")
        convert(_smoke.fake_data(folder / "data"), folder / "bench_arrays.npz")
        return
    convert(args.data, args.out or ROOT / "bench_arrays.npz")


if __name__ == "__main__":
    main()
