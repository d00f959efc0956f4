"""Separation histograms from the Python API.

    python examples/separation_api.py [path/to/mnist]   # default: the built-in spiral

Prints the headline numbers and writes out/separation_hist.png with the train-train and
test-train histograms, dashed lines at the separation and at 2 eps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sepcheck


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "spiral"
    ds = sepcheck.datasets.open_dataset(spec)
    res = sepcheck.separation(ds.X, ds.y, ds.X_test, ds.y_test, norm="linf", dataset=ds.name, progress=True)
    print(f"{ds.name}: separation {res.separation:.4f}, r = {res.r:.4f}, test-train {res.test_separation}")
    print("quantiles 1/10/50 %:", res.quantiles([0.01, 0.1, 0.5]).round(4))
    print("conflicts:", len(res.conflicts), "| drop 10 closest:", round(res.robust_separation(10), 4))
    eps = ds.eps if ds.eps is not None else res.r / 2
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=150)
    res.plot(ax=axes[0], eps=eps)
    if res.test_distances is not None:
        res.plot(ax=axes[1], eps=eps, test=True)
    out = Path("out/separation_hist.png")
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
