"""Tiny image data sets for the training tests (uint8 stripes of three classes)."""

from __future__ import annotations

import numpy as np

from sepcheck.datasets import Dataset
from sepcheck.train.data import prepare


def stripes(n: int, channels: int = 1, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images of 3 classes: horizontal stripes, vertical stripes, checkerboard (+ noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    patterns = [(i % 2) * 1.0, (j % 2) * 1.0, ((i + j) % 2) * 1.0]
    X = np.stack([patterns[c] for c in y])[:, None].repeat(channels, axis=1)
    X = np.clip(40 + 170 * X + rng.normal(0, 20, X.shape), 0, 255).astype(np.uint8)
    return X, y


def tiny_data(channels: int = 1, n: int = 48, holdout: int | None = None):
    X, y = stripes(n, channels)
    Xt, yt = stripes(24, channels, seed=1)
    return prepare(Dataset("stripes", X, y, Xt, yt, eps=0.1), holdout=holdout)
