"""The robust-accuracy ceiling: the best robust accuracy any classifier can reach at each eps.

    python examples/ceiling.py [DATASET]   # default: the built-in spiral; e.g. ../shared/data/mnist

Prints the curve (linf and l2) and writes out/ceiling.png: accuracy against eps, exact where
marked, with the upper-bound band where a component hit the time limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sepcheck


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "spiral"
    ds = sepcheck.datasets.open_dataset(spec)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=150)
    for ax, norm in zip(axes, ("linf", "l2"), strict=True):
        sep = sepcheck.separation(ds.X, ds.y, norm=norm)
        grid = np.linspace(0.0, sep.separation, 12)  # from 0 to twice where conflicts begin (sep / 2)
        # the nearest-other distances are known: the ceiling's radius search needs only the close points
        res = sepcheck.robust_ceiling(ds.X, ds.y, grid, norm=norm, time_limit=5.0, dataset=ds.name,
                                      nearest_distances=sep.distances)
        print(f"{ds.name} {norm}: separation {sep.separation:.4f}, largest class {res.class_share:.3f}")
        for e, a, u, ok, m in zip(res.eps, res.accuracy, res.upper, res.exact, res.n_edges, strict=True):
            print(f"  eps {e:.4f}  ceiling {a:.4f}" + ("" if ok else f" .. {u:.4f}") + f"  ({m} conflicting pairs)")
        res.plot(ax=ax, typical_eps=ds.eps if norm == "linf" else None)
    out = Path("out/ceiling.png")
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
