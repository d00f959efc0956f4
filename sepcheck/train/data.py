"""Data for training and evaluation: a :mod:`sepcheck.datasets` data set as float tensors in
[0, 1] with channels first, the label mapping, an optional held-out test split, and the
random-crop-and-flip augmentation for CIFAR-like images (plain torch, no torchvision)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..core.errors import SepcheckError


@dataclass
class TrainData:
    """Arrays ready for a model: ``X`` float32 (n, C, H, W) or (n, D) in [0, 1], ``y`` int64
    class indices; the test split likewise (None when there is none)."""

    name: str
    X: Tensor
    y: Tensor
    X_test: Tensor | None
    y_test: Tensor | None
    classes: list[int]
    eps: float | None = None
    notes: list[str] = field(default_factory=list)
    #: the raw arrays (uint8 stays uint8) for the separation bound, train then test
    raw: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.X.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def to_channels_first(X: np.ndarray, name: str = "X") -> np.ndarray:
    """(n, H, W) -> (n, 1, H, W); (n, H, W, C) with C in {1, 3, 4} -> (n, C, H, W); other
    shapes unchanged ((n, D) vectors and (n, C, H, W) images)."""
    if X.ndim == 3:
        return X[:, None, :, :]
    if X.ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(X.transpose(0, 3, 1, 2))
    if X.ndim in (2, 4):
        return X
    raise SepcheckError(f"{name} has shape {X.shape}: give vectors (n, d) or images (n, C, H, W)")


def to_unit_float(X: np.ndarray, name: str = "X") -> Tensor:
    """uint8 -> float32 / 255; floats must already lie in [0, 1] (attacks clamp to that box)."""
    if X.dtype == np.uint8:
        return torch.from_numpy(X.astype(np.float32) / 255.0)
    if X.dtype.kind not in "fiub":
        raise SepcheckError(f"{name} has dtype {X.dtype}: inputs must be numeric")
    arr = X.astype(np.float32)
    if not np.isfinite(arr).all():
        raise SepcheckError(f"{name} contains NaN or inf: remove or impute those rows")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise SepcheckError(
            f"{name} has values in [{lo:g}, {hi:g}]: training and attacks need inputs in [0, 1] "
            "(store uint8 images or rescale, e.g. X / 255)"
        )
    return torch.from_numpy(arr)


def prepare(ds: object, holdout: int | None = None) -> TrainData:
    """Turn a :class:`sepcheck.datasets.Dataset` into :class:`TrainData`.

    ``holdout=N`` uses the last N training points as the test split (for a data set that has
    none, e.g. the MNIST test files alone: first 8000 train, last 2000 test).
    """
    X = np.asarray(ds.X)  # type: ignore[attr-defined]
    y = np.asarray(ds.y).reshape(-1)  # type: ignore[attr-defined]
    Xt = None if ds.X_test is None else np.asarray(ds.X_test)  # type: ignore[attr-defined]
    yt = None if ds.y_test is None else np.asarray(ds.y_test).reshape(-1)  # type: ignore[attr-defined]
    notes = list(getattr(ds, "notes", []) or [])
    if X.shape[0] != y.shape[0]:
        raise SepcheckError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels: give one label per row")
    if holdout:
        if holdout < 1 or holdout >= X.shape[0]:
            raise SepcheckError(
                f"--holdout {holdout} is invalid for {X.shape[0]} training points: give 1 to {X.shape[0] - 1}"
            )
        if Xt is not None:
            notes.append(f"--holdout {holdout}: the data set's own test split is replaced")
        n = X.shape[0] - holdout
        X, y, Xt, yt = X[:n], y[:n], X[n:], y[n:]
        notes.append(f"trained on the first {n} points, tested on the last {holdout} (--holdout {holdout})")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise SepcheckError("labels must be integers: map them with np.unique(y, return_inverse=True)")
    classes = np.unique(y if yt is None else np.concatenate([y, yt])).astype(np.int64)
    if classes.size < 2:
        raise SepcheckError("the training labels hold a single class: training needs at least two")
    X4 = to_channels_first(X, "X")
    Xt4 = None if Xt is None else to_channels_first(Xt, "X_test")
    if Xt4 is not None and Xt4.shape[1:] != X4.shape[1:]:
        raise SepcheckError(f"X_test rows have shape {Xt4.shape[1:]} but X rows {X4.shape[1:]}: they must match")
    data = TrainData(
        name=str(getattr(ds, "name", "data")),
        X=to_unit_float(X4, "X"),
        y=torch.from_numpy(np.searchsorted(classes, y.astype(np.int64)).astype(np.int64)),
        X_test=None if Xt4 is None else to_unit_float(Xt4, "X_test"),
        y_test=None if yt is None else torch.from_numpy(
            np.searchsorted(classes, yt.astype(np.int64)).astype(np.int64)),
        classes=[int(c) for c in classes],
        eps=getattr(ds, "eps", None),
        notes=notes,
        raw=(X, y, Xt, yt),
    )
    return data


def load(spec: str | os.PathLike, *, holdout: int | None = None, data_dir: str | None = None,
         download: bool = True, verify: bool = True) -> TrainData:
    """Open a data set by name or path (:func:`sepcheck.datasets.open_dataset`) and prepare it."""
    from ..datasets import open_dataset

    ds = open_dataset(spec, data_dir=data_dir, download=download, verify=verify)
    return prepare(ds, holdout=holdout)


def is_cifar_like(input_shape: tuple[int, ...]) -> bool:
    """Colour images of at least 32 x 32: random crop and flip help there."""
    return len(input_shape) == 3 and input_shape[0] == 3 and min(input_shape[1:]) >= 32


def crop_flip(x: Tensor, pad: int = 4, generator: torch.Generator | None = None, flip: bool = True) -> Tensor:
    """Random crop after zero padding by ``pad`` and random horizontal flip (``flip``), per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
    flips = torch.rand(n, generator=generator, device="cpu").to(x.device) < 0.5
    if flip:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()
