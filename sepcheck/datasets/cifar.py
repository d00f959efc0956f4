"""Loader for CIFAR-10/100 in their python format: pickled batches inside
``cifar-10[0]-python.tar.gz`` (read in place, never extracted) or an extracted folder.

The batches are parsed with :mod:`sepcheck.datasets.safe_pickle`, which runs no code.
Images come out as uint8 (n, 3, 32, 32) (the rows of ``data`` are R, G, B planes of 32x32).
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import SepcheckError
from .base import SplitData
from .checksums import fingerprint
from .fetch import ensure_files
from .remote import RemoteFile
from .safe_pickle import safe_loads
from .source import Source, check_split


def read_members(archive: Path, folder: str, names: list[str]) -> dict[str, bytes]:
    """The bytes of ``folder/name`` members of a .tar.gz, read as a stream to its end (so a
    truncated or corrupted archive is detected by gzip's own check)."""
    wanted = {f"{folder}/{n}": n for n in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    data = f.read() if f is not None else b""
                    if len(data) != member.size:
                        raise EOFError(f"{name} ends after {len(data)} of {member.size} bytes")
                    found[wanted[name]] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise SepcheckError(
            f"{archive} is corrupted or truncated ({type(exc).__name__}: {exc}): delete it and download it again"
        ) from None
    missing = [f"{folder}/{n}" for n in names if n not in found]
    if missing:
        raise SepcheckError(
            f"{archive} has no member {missing[0]}: it is truncated or not the official archive; "
            "delete it and download it again"
        )
    return found


def _get(d: dict, key: bytes) -> Any:
    """A batch value by its bytes key (str keys too, for batches re-pickled in Python 3)."""
    if key in d:
        return d[key]
    return d.get(key.decode())


def parse_batch(data: bytes, label_key: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(X uint8 (n, 3, 32, 32), y int64) from one pickled batch."""
    d = safe_loads(data, source)
    if not isinstance(d, dict):
        raise SepcheckError(f"{source} holds a {type(d).__name__}, not a CIFAR batch dict: the file is not the official one")
    X = _get(d, b"data")
    labels = _get(d, label_key)
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != 3 * 32 * 32:
        desc = f"{X.dtype} {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise SepcheckError(f"{source}: b'data' is {desc}, expected a uint8 (n, 3072) array: the file is not the official one")
    if labels is None:
        raise SepcheckError(f"{source} has no {label_key!r} labels: the file is not the official one")
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise SepcheckError(f"{source}: {label_key!r} is not a list of integers: the file is not the official one")
    if y.shape[0] != X.shape[0]:
        raise SepcheckError(f"{source} has {X.shape[0]} images but {y.shape[0]} labels: the file is corrupted")
    return X.reshape(-1, 3, 32, 32), y.astype(np.int64)


def parse_names(data: bytes, names_key: bytes, source: str) -> list[str]:
    """Class names from the meta file."""
    d = safe_loads(data, source)
    names = _get(d, names_key) if isinstance(d, dict) else None
    if not isinstance(names, list):
        raise SepcheckError(f"{source} has no {names_key!r} list: the file is not the official one")
    return [n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names]


class CifarSource(Source):
    """CIFAR-10 or CIFAR-100 from the table module (``ARCHIVE``, ``FOLDER``, ``MEMBERS``, ...)."""

    def __init__(self, table: ModuleType) -> None:
        self.table = table
        self.info = table.INFO
        self.option_defaults = {"label_mode": "fine"} if len(table.LABEL_KEYS) > 1 else {}

    def normalize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        out = super().normalize_options(options)
        mode = out.get("label_mode", "fine")
        if mode not in self.table.LABEL_KEYS:
            raise SepcheckError(f"{self.name}: label_mode={mode!r} is invalid: use one of {', '.join(self.table.LABEL_KEYS)}")
        return out

    def option_tag(self, options: dict[str, Any]) -> str:
        mode = options.get("label_mode", "fine")
        return "" if mode == "fine" else mode

    def _names(self, split: str) -> list[str]:
        return [*self.table.MEMBERS[split], self.table.META]

    def _layout(self, directory: Path, split: str) -> str | None:
        if (directory / self.table.ARCHIVE.name).is_file():
            return "archive"
        folder = directory / self.table.FOLDER
        if all((folder / n).is_file() for n in self._names(split)):
            return "folder"
        return None

    def _folder_files(self, split: str) -> list[RemoteFile]:
        t = self.table
        return [RemoteFile(f"{t.FOLDER}/{n}", md5=t.MEMBER_MD5.get(n)) for n in self._names(split)]

    def remote_files(self) -> list[RemoteFile]:
        return [self.table.ARCHIVE]

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        layout = self._layout(directory, split)
        if layout == "archive":
            return [fingerprint(directory / self.table.ARCHIVE.name, directory)]
        if layout == "folder":
            return [fingerprint(directory / f.name, directory) for f in self._folder_files(split)]
        return None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        t = self.table
        names = self._names(split)
        if self._layout(directory, split) == "folder":
            files = self._folder_files(split)
            records = ensure_files(self.name, files, directory, download=False, verify=verify, progress=progress)
            blobs = {n: (directory / t.FOLDER / n).read_bytes() for n in names}
            where = {n: str(directory / t.FOLDER / n) for n in names}
            origin = str(directory / t.FOLDER)
        else:
            records = ensure_files(self.name, [t.ARCHIVE], directory, download=download, verify=verify,
                                   progress=progress, also=f"the extracted {t.FOLDER}/ folder")
            archive = directory / t.ARCHIVE.name
            blobs = read_members(archive, t.FOLDER, names)
            where = {n: f"{archive}:{t.FOLDER}/{n}" for n in names}
            origin = str(archive)
        mode = options.get("label_mode", "fine")
        label_key, names_key = t.LABEL_KEYS[mode]
        parts = [parse_batch(blobs[n], label_key, where[n]) for n in t.MEMBERS[split]]
        X = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        classes = parse_names(blobs[t.META], names_key, where[t.META])
        n_classes = getattr(t, "N_CLASSES", {}).get(mode, self.info.n_classes)
        check_split(self.name, split, X, y, n_classes, self.info.shape, origin)
        return SplitData(X=np.ascontiguousarray(X), y=y, classes=classes, sources=records, verified=verify,
                         preprocessing={"format": "cifar-python", "label_mode": mode, "layout": "NCHW"},
                         origin=origin)
