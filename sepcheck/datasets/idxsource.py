"""Loader for the MNIST family (MNIST, Fashion-MNIST): gzipped IDX files, one pair per split."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from .base import SplitData
from .checksums import fingerprint
from .fetch import ensure_files
from .idx import read_idx_pair
from .remote import RemoteFile
from .source import Source, check_split


class IdxSource(Source):
    """``train``/``t10k`` ``-images-idx3-ubyte.gz`` and ``-labels-idx1-ubyte.gz`` in
    ``<data dir>/<name>/``; the table module's ``FILES`` gives URLs and md5s (looked up on
    each call, so a test can point it at a local server)."""

    def __init__(self, table: ModuleType, classes: list[str] | None = None) -> None:
        self.table = table
        self.info = table.INFO
        self.classes = classes

    def files(self, split: str) -> list[RemoteFile]:
        return [self.table.FILES[n] for n in self.info.files[split]]

    def remote_files(self) -> list[RemoteFile]:
        return list(self.table.FILES.values())

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        present = [directory / f.name for f in self.files(split) if (directory / f.name).is_file()]
        return [fingerprint(p, directory) for p in present] or None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        files = self.files(split)
        records = ensure_files(self.name, files, directory, download=download, verify=verify, progress=progress)
        images, labels = (directory / f.name for f in files)
        X, y = read_idx_pair(images, labels)
        check_split(self.name, split, X, y, self.info.n_classes, self.info.shape, str(images))
        classes = self.classes or [str(i) for i in range(self.info.n_classes)]
        return SplitData(X=X, y=y, classes=classes, sources=records, verified=verify,
                         preprocessing={"format": "idx", "layout": "NCHW"}, origin=str(directory))
