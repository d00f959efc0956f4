"""The CIFAR family (Krizhevsky 2009): CIFAR-10 and CIFAR-100 in their python format, pickled
batches inside ``cifar-10[0]-python.tar.gz`` (read in place, never extracted) or an
extracted folder, with the published URLs and md5s (archive md5s from the CIFAR page; the
extracted files' md5s are those listed by torchvision, so an extracted folder is verified too).

The batches are parsed with :mod:`sepcheck.datasets.safe_pickle`, which runs no code.
Images come out as uint8 (n, 3, 32, 32) (the rows of ``data`` are R, G, B planes of 32x32).
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.errors import SepcheckError
from .base import DatasetInfo, RegisteredDataset, SplitData, check_split
from .download import RemoteFile, ensure_files, fingerprint
from .safe_pickle import safe_loads

#: the largest member a CIFAR archive may have (CIFAR-100's train batch is 155 MB)
MAX_MEMBER_BYTES = 256 * 2**20


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
                    if wanted[name] in found:
                        raise SepcheckError(f"{archive} holds the member {name} twice: it is not the official "
                                            "archive; delete it and download it again")
                    if member.size > MAX_MEMBER_BYTES:
                        raise SepcheckError(f"{archive}: member {name} declares {member.size} bytes, more than "
                                            f"any CIFAR batch ({MAX_MEMBER_BYTES}): it is not the official archive")
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
    if isinstance(labels, (list, tuple)) and all(type(v) is int and 0 <= v < 2**31 for v in labels):
        y = np.array(labels, dtype=np.int64).reshape(len(labels))
    elif isinstance(labels, np.ndarray):
        y = labels
    else:  # ragged, nested, non-integer or out-of-range entries
        y = np.zeros((0, 0))
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


class CifarDataset(RegisteredDataset):
    """A CIFAR data set: the archive, the folder it extracts to, the batch members per split,
    the meta member, the members' md5s and, per label mode, the label and class-name keys."""

    ARCHIVE: ClassVar[RemoteFile]
    FOLDER: ClassVar[str]
    MEMBERS: ClassVar[dict[str, tuple[str, ...]]]
    META: ClassVar[str]
    MEMBER_MD5: ClassVar[dict[str, str]]
    #: label mode -> (key of the labels in a batch, key of the class names in the meta file)
    LABEL_KEYS: ClassVar[dict[str, tuple[bytes, bytes]]] = {"fine": (b"labels", b"label_names")}
    #: label mode -> number of classes (default: info.n_classes)
    N_CLASSES: ClassVar[dict[str, int]] = {}

    def normalize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        out = super().normalize_options(options)
        mode = out.get("label_mode", "fine")
        if mode not in self.LABEL_KEYS:
            raise SepcheckError(f"{self.name}: label_mode={mode!r} is invalid: use one of {', '.join(self.LABEL_KEYS)}")
        return out

    def option_tag(self, options: dict[str, Any]) -> str:
        mode = options.get("label_mode", "fine")
        return "" if mode == "fine" else mode

    def _names(self, split: str) -> list[str]:
        return [*self.MEMBERS[split], self.META]

    def _layout(self, directory: Path, split: str) -> str | None:
        if (directory / self.ARCHIVE.name).is_file():
            return "archive"
        folder = directory / self.FOLDER
        if all((folder / n).is_file() for n in self._names(split)):
            return "folder"
        return None

    def _folder_files(self, split: str) -> list[RemoteFile]:
        return [RemoteFile(f"{self.FOLDER}/{n}", md5=self.MEMBER_MD5.get(n)) for n in self._names(split)]

    def remote_files(self) -> list[RemoteFile]:
        return [self.ARCHIVE]

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        layout = self._layout(directory, split)
        if layout == "archive":
            return [fingerprint(directory / self.ARCHIVE.name, directory)]
        if layout == "folder":
            return [fingerprint(directory / f.name, directory) for f in self._folder_files(split)]
        return None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        names = self._names(split)
        if self._layout(directory, split) == "folder":
            files = self._folder_files(split)
            records = ensure_files(self.name, files, directory, download=False, verify=verify, progress=progress)
            blobs = {n: (directory / self.FOLDER / n).read_bytes() for n in names}
            where = {n: str(directory / self.FOLDER / n) for n in names}
            origin = str(directory / self.FOLDER)
        else:
            records = ensure_files(self.name, [self.ARCHIVE], directory, download=download, verify=verify,
                                   progress=progress, also=f"the extracted {self.FOLDER}/ folder")
            archive = directory / self.ARCHIVE.name
            blobs = read_members(archive, self.FOLDER, names)
            where = {n: f"{archive}:{self.FOLDER}/{n}" for n in names}
            origin = str(archive)
        mode = options.get("label_mode", "fine")
        label_key, names_key = self.LABEL_KEYS[mode]
        parts = [parse_batch(blobs[n], label_key, where[n]) for n in self.MEMBERS[split]]
        X = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        classes = parse_names(blobs[self.META], names_key, where[self.META])
        n_classes = self.N_CLASSES.get(mode, self.info.n_classes)
        check_split(self.name, split, X, y, n_classes, self.info.shape, origin)
        return SplitData(X=np.ascontiguousarray(X), y=y, classes=classes, sources=records, verified=verify,
                         preprocessing={"format": "cifar-python", "label_mode": mode, "layout": "NCHW"},
                         origin=origin)


class CIFAR10(CifarDataset):
    """CIFAR-10 (python version)."""

    ARCHIVE = RemoteFile(
        "cifar-10-python.tar.gz",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        md5="c58f30108f718f92721af3b95e74349a",
    )
    FOLDER = "cifar-10-batches-py"
    MEMBERS = {
        "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
        "test": ("test_batch",),
    }
    META = "batches.meta"
    MEMBER_MD5 = {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    }
    info = DatasetInfo(
        name="cifar10",
        title="CIFAR-10 tiny colour images",
        shape=(3, 32, 32),
        sizes={"train": 50000, "test": 10000},
        n_classes=10,
        eps=8 / 255,
        eps_text="8/255",
        eps_source="Yang et al. 2020, Table 1 (0.031)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files={"train": (ARCHIVE.name,), "test": (ARCHIVE.name,)},
        notes=(f"the extracted {FOLDER}/ folder is read as well as the archive",),
    )


class CIFAR100(CifarDataset):
    """CIFAR-100 (python version): fine labels (100 classes) by default, ``label_mode="coarse"``
    gives the 20 super-classes."""

    ARCHIVE = RemoteFile(
        "cifar-100-python.tar.gz",
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    )
    FOLDER = "cifar-100-python"
    MEMBERS = {"train": ("train",), "test": ("test",)}
    META = "meta"
    MEMBER_MD5 = {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    }
    LABEL_KEYS = {
        "fine": (b"fine_labels", b"fine_label_names"),
        "coarse": (b"coarse_labels", b"coarse_label_names"),
    }
    N_CLASSES = {"fine": 100, "coarse": 20}
    option_defaults = {"label_mode": "fine"}
    info = DatasetInfo(
        name="cifar100",
        title="CIFAR-100 tiny colour images (fine labels; coarse as an option)",
        shape=(3, 32, 32),
        sizes={"train": 50000, "test": 10000},
        n_classes=100,
        eps=8 / 255,
        eps_text="8/255",
        eps_source="common choice (as for CIFAR-10); not in Yang et al. 2020",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files={"train": (ARCHIVE.name,), "test": (ARCHIVE.name,)},
        notes=(f"the extracted {FOLDER}/ folder is read as well as the archive",
               "load(..., label_mode='coarse') gives the 20 coarse classes"),
    )
