"""The interface of a registered data set's loader, and the checks every split passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import SepcheckError
from .base import SplitData
from .info import DatasetInfo
from .remote import RemoteFile


class Source:
    """How a registered data set is found, converted and described.

    Subclasses set ``info`` and implement :meth:`current_sources` (fingerprints of the
    source files present now, without hashing) and :meth:`build` (fetch, verify, parse).
    ``converter`` is part of the cache key: bump it when the conversion changes.
    """

    info: DatasetInfo
    converter: ClassVar[int] = 1
    #: published checksums exist (so a cache made without verification is not trusted)
    has_checksums: ClassVar[bool] = True
    #: split name aliases accepted by load(), e.g. {"test": "val"}
    split_aliases: ClassVar[dict[str, str]] = {}
    #: option name -> default value (all options change the arrays, so they key the cache)
    option_defaults: dict[str, Any] = {}
    #: options that do not change the arrays (worker count, progress)
    runtime_options: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return self.info.name

    def canonical_split(self, split: str) -> str:
        s = self.split_aliases.get(str(split), str(split))
        if s not in self.info.splits:
            raise SepcheckError(
                f"{self.name} has no split {split!r}: use one of {', '.join(self.info.splits)}"
            )
        return s

    def normalize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in; unknown options rejected. Subclasses validate values."""
        known = set(self.option_defaults) | set(self.runtime_options)
        unknown = sorted(set(options) - known)
        if unknown:
            accepted = ", ".join(sorted(known)) or "none"
            raise SepcheckError(f"{self.name} has no option {unknown[0]!r}: options accepted: {accepted}")
        out = dict(self.option_defaults)
        out.update({k: v for k, v in options.items() if v is not None})
        return out

    def key_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k not in self.runtime_options}

    def option_tag(self, options: dict[str, Any]) -> str:
        """Cache file suffix for non-default options ('' for the defaults)."""
        parts = [f"{k}{v}" for k, v in sorted(self.key_options(options).items()) if v != self.option_defaults.get(k)]
        return "-".join(parts)

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        raise NotImplementedError

    def remote_files(self) -> list[RemoteFile]:
        """Every downloadable file of the data set (for ``datasets info``)."""
        return []

    def present(self, directory: Path, split: str) -> bool:
        """Whether the split's source files are in ``directory`` (cheap: no hashing)."""
        return self.current_sources(directory, split, self.normalize_options({})) is not None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        raise NotImplementedError


def check_split(name: str, split: str, X: np.ndarray, y: np.ndarray, n_classes: int,
                shape: tuple[int, ...] | None, source: str) -> None:
    """A converted split is complete: uint8 N x C x H x W, one label per image, labels in range."""
    if X.dtype != np.uint8 or X.ndim != 4:
        raise SepcheckError(f"{name} {split}: {source} gave images of type {X.dtype} and shape {X.shape}: "
                            "expected uint8 (n, channels, height, width)")
    if shape is not None and tuple(X.shape[1:]) != tuple(shape):
        raise SepcheckError(f"{name} {split}: {source} holds images of shape {X.shape[1:]}, expected {tuple(shape)}: "
                            "the file is not the official one")
    if y.shape != (X.shape[0],):
        raise SepcheckError(f"{name} {split}: {source} has {X.shape[0]} images but {y.size} labels: "
                            "the file is truncated or corrupted")
    if X.shape[0] == 0:
        raise SepcheckError(f"{name} {split}: {source} holds no images")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        raise SepcheckError(f"{name} {split}: {source} has labels {lo}..{hi}, expected 0..{n_classes - 1}: "
                            "the file is corrupted or not the official one")
