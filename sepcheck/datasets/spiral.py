"""The built-in ``spiral``: a deterministic 2-D, two-class spiral (two interleaved arms)."""

from __future__ import annotations

import numpy as np

from .info import DatasetInfo

#: points per class in each split
N_PER_CLASS = {"train": 500, "test": 250}
_SEEDS = {"train": 0, "test": 1}

INFO = DatasetInfo(
    name="spiral",
    title="built-in 2-D two-arm spiral (float64 points, not images)",
    shape=(2,),
    sizes={"train": 2 * N_PER_CLASS["train"], "test": 2 * N_PER_CLASS["test"]},
    n_classes=2,
    eps=None,
    homepage="",
    downloadable=False,
    notes=("generated on the fly, deterministic per split; no files, no cache",),
)


def make_spiral(split: str = "train", n_per_class: int | None = None, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spiral arms in [-1, 1]^2 as float64 ``(X, y)``; deterministic per split.

    Arm c is the curve t -> t (cos(t + c pi), sin(t + c pi)) / (3.5 pi) for t in
    [0.5 pi, 3.5 pi], with Gaussian noise of standard deviation ``noise``.
    """
    if split not in _SEEDS:
        raise ValueError(f"unknown spiral split {split!r}")
    n = N_PER_CLASS[split] if n_per_class is None else int(n_per_class)
    rng = np.random.default_rng(_SEEDS[split])
    xs, ys = [], []
    for c in (0, 1):
        t = np.sort(rng.uniform(0.5 * np.pi, 3.5 * np.pi, n))
        pts = np.stack([t * np.cos(t + c * np.pi), t * np.sin(t + c * np.pi)], axis=1) / (3.5 * np.pi)
        xs.append(pts + rng.normal(0.0, noise, pts.shape))
        ys.append(np.full(n, c, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)
