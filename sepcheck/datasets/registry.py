"""The registered data sets: name -> loader, with aliases, and :func:`available`."""

from __future__ import annotations

import difflib

from ..errors import SepcheckError
from . import cifar10, cifar100, fashion_mnist, mnist, spiral
from .cifar import CifarSource
from .idxsource import IdxSource
from .info import DatasetInfo
from .restricted_imagenet import RestrictedImageNetSource
from .source import Source
from .svhn import SvhnSource

#: registered name -> loader (None: built in, generated)
SOURCES: dict[str, Source | None] = {
    "mnist": IdxSource(mnist),
    "fashion-mnist": IdxSource(fashion_mnist, classes=fashion_mnist.CLASSES),
    "cifar10": CifarSource(cifar10),
    "cifar100": CifarSource(cifar100),
    "svhn": SvhnSource(),
    "restricted-imagenet": RestrictedImageNetSource(),
    "spiral": None,
}

INFOS: dict[str, DatasetInfo] = {
    name: (src.info if src is not None else spiral.INFO) for name, src in SOURCES.items()
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


def get_source(name: str) -> Source | None:
    """The loader of a registered data set (None for the built-in spiral)."""
    return SOURCES[require_name(name)]


def available() -> dict[str, DatasetInfo]:
    """The registered data sets: name -> :class:`DatasetInfo` (shape, split sizes, number of
    classes, typical linf eps from the literature, files, homepage)."""
    return dict(INFOS)
