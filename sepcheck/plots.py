"""Matplotlib figures a paper could use."""

from __future__ import annotations

from typing import Any

import numpy as np


def plot_separation(result: Any, ax: Any = None, eps: float | None = None, test: bool = False, bins: int = 50) -> Any:
    """Normalised histogram of per-point distances with dashed lines at the minimum
    (the separation) and at 2 eps, like the figures of Yang et al. (2020)."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(4.5, 3.2), dpi=150)
    d = result.test_distances if test else result.distances
    frac, edges = result.histogram(bins=bins, test=test)
    ax.bar(edges[:-1], frac, width=np.diff(edges), align="edge", color="#4C72B0", edgecolor="white", linewidth=0.3)
    lo = float(np.min(d))
    ax.axvline(lo, color="black", linestyle="--", linewidth=1.0, label=f"min = {lo:.3f}")
    if eps is not None:
        ax.axvline(2 * eps, color="#C44E52", linestyle="--", linewidth=1.0, label=f"2ε = {2 * eps:.3f}")
    which = "test-train" if test else "train-train"
    unit = {"pixel": " (pixel scale [0, 1])", "raw": " (raw 0-255)"}.get(result.units, "")
    ax.set_xlabel(f"{result.norm} distance to nearest other-class point{unit}")
    ax.set_ylabel("fraction of points")
    title = f"{result.dataset} {which}" if result.dataset else which
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.figure.tight_layout()
    return ax
