"""The registry: registered name -> data set class instance (with aliases), the built-in
``spiral``, :func:`available`, and what is on disk for each (``datasets list``/``info``:
cheap checks only, nothing is hashed, decoded or downloaded)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError
from ..core.paths import data_dir as resolve_data_dir
from .base import DatasetInfo, RegisteredDataset
from .cifar import CIFAR10, CIFAR100
from .idx import MNIST, FashionMNIST
from .imagenet import RestrictedImageNet
from .splitcache import cache_file
from .svhn import SVHN

# ----- the built-in spiral: a deterministic 2-D, two-class spiral (two interleaved arms) -----

#: points per class in each split
SPIRAL_PER_CLASS = {"train": 500, "test": 250}
_SPIRAL_SEEDS = {"train": 0, "test": 1}

SPIRAL = DatasetInfo(
    name="spiral",
    title="built-in 2-D two-arm spiral (float64 points, not images)",
    shape=(2,),
    sizes={"train": 2 * SPIRAL_PER_CLASS["train"], "test": 2 * SPIRAL_PER_CLASS["test"]},
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
    if split not in _SPIRAL_SEEDS:
        raise ValueError(f"unknown spiral split {split!r}")
    n = SPIRAL_PER_CLASS[split] if n_per_class is None else int(n_per_class)
    rng = np.random.default_rng(_SPIRAL_SEEDS[split])
    xs, ys = [], []
    for c in (0, 1):
        t = np.sort(rng.uniform(0.5 * np.pi, 3.5 * np.pi, n))
        pts = np.stack([t * np.cos(t + c * np.pi), t * np.sin(t + c * np.pi)], axis=1) / (3.5 * np.pi)
        xs.append(pts + rng.normal(0.0, noise, pts.shape))
        ys.append(np.full(n, c, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


#: registered name -> data set (None: the built-in spiral, generated)
SOURCES: dict[str, RegisteredDataset | None] = {
    "mnist": MNIST(),
    "fashion-mnist": FashionMNIST(),
    "cifar10": CIFAR10(),
    "cifar100": CIFAR100(),
    "svhn": SVHN(),
    "restricted-imagenet": RestrictedImageNet(),
    "spiral": None,
}

INFOS: dict[str, DatasetInfo] = {
    name: (src.info if src is not None else SPIRAL) for name, src in SOURCES.items()
}

ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "restricted_imagenet": "restricted-imagenet",
    "restrictedimagenet": "restricted-imagenet",
    "rimagenet": "restricted-imagenet",
}


def resolve_name(name: str) -> str | None:
    """The registered name for ``name`` (case-insensitive, aliases accepted), or None."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    return key if key in SOURCES else None


def require_name(name: str) -> str:
    """The registered name, or a one-line error listing the names (with a close match)."""
    resolved = resolve_name(name)
    if resolved is None:
        close = difflib.get_close_matches(str(name).lower(), list(SOURCES) + list(ALIASES), n=1)
        hint = f" (did you mean {ALIASES.get(close[0], close[0])}?)" if close else ""
        raise SepcheckError(f"unknown data set {name!r}{hint}: registered names are {', '.join(SOURCES)}")
    return resolved


def available() -> dict[str, DatasetInfo]:
    """The registered data sets: name -> :class:`DatasetInfo` (shape, split sizes, number of
    classes, typical linf eps from the literature, files, homepage)."""
    return dict(INFOS)


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """``<data dir>/<name>/`` for a registered name."""
    return resolve_data_dir(data_dir) / require_name(name)


def split_status(name: str, split: str, data_dir: str | os.PathLike | None = None) -> str:
    """'built-in', 'cached' (default-options cache present), 'files' (sources present) or 'missing'."""
    canonical = require_name(name)
    src = SOURCES[canonical]
    if src is None:
        return "built-in"
    directory = dataset_dir(canonical, data_dir)
    if cache_file(directory, split).is_file():
        return "cached"
    return "files" if src.present(directory, split) else "missing"


def describe(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Facts and on-disk state of a registered data set (``datasets info``)."""
    canonical = require_name(name)
    info = INFOS[canonical]
    src = SOURCES[canonical]
    out: dict[str, Any] = info.to_dict()
    if src is None:
        out["directory"] = None
        out["status"] = {s: "built-in" for s in info.splits}
        return out
    directory = dataset_dir(canonical, data_dir)
    out["directory"] = str(directory)
    out["status"] = {s: split_status(canonical, s, data_dir) for s in info.splits}
    out["cache"] = {s: str(cache_file(directory, s)) for s in info.splits}
    remote = []
    for f in src.remote_files():
        p = directory / f.name
        remote.append({"name": f.name, "present": p.is_file(), "size": p.stat().st_size if p.is_file() else None,
                       "urls": list(f.urls), "md5": f.md5, "sha256": f.sha256,
                       "content_md5": f.content_md5})
    out["remote_files"] = remote
    return out
