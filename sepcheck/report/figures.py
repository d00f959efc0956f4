"""Matplotlib helpers of the report: the non-interactive backend, one row of panels, and
image rows from the feature arrays. Only these and the section functions touch matplotlib."""

from __future__ import annotations

from typing import Any

import numpy as np


def use_agg() -> None:
    """Draw off-screen (Agg), unless a backend was chosen already."""
    import matplotlib

    matplotlib.use("Agg", force=False)


def subplots(panels: int, width: float = 4.5, height: float = 3.2) -> tuple[Any, list[Any]]:
    """A figure with ``panels`` axes side by side (each ``width`` x ``height`` inches)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), dpi=110, squeeze=False)
    return fig, list(axes[0])


def image_array(X: np.ndarray) -> np.ndarray | None:
    """(n, H, W) or (n, H, W, 3) images from (n, C, H, W) or (n, H, W) arrays; None when
    the rows are not images."""
    if X.ndim == 4 and X.shape[1] in (1, 3):
        return X[:, 0] if X.shape[1] == 1 else np.moveaxis(X, 1, -1)
    if X.ndim == 3:
        return X
    if X.ndim == 4 and X.shape[-1] in (1, 3):
        return X[..., 0] if X.shape[-1] == 1 else X
    return None


__all__ = ["image_array", "subplots", "use_agg"]
