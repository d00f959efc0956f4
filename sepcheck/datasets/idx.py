"""The IDX format family: MNIST and Fashion-MNIST (``*-idx3-ubyte[.gz]``), registered with
their published URLs and checksums, and a user's own folder of IDX files.

Our own parser: magic number, dimensions and payload size are checked, and a truncated,
corrupted or mislabelled file gives a one-line :class:`SepcheckError`.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.errors import SepcheckError
from ..core.fileio import check_read_size, input_file
from .base import Dataset, DatasetInfo, RegisteredDataset, SplitData, check_split
from .download import RemoteFile, ensure_files, fingerprint, verification_notes

#: IDX element type codes -> numpy dtypes (big-endian)
_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _header(data: bytes, source: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) from the first bytes of an IDX file; the magic number
    is checked before anything else is read."""
    if len(data) < 4:
        raise SepcheckError(f"IDX file {source} is truncated: {len(data)} bytes, no header")
    zero, code, ndim = data[0] | data[1], data[2], data[3]
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise SepcheckError(
            f"IDX file {source} has a wrong magic number {data[:4].hex()}: not an IDX file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SepcheckError(f"IDX file {source} is truncated inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return shape, _TYPES[code], header


def _read_bytes(path: Path) -> bytes:
    """The (decompressed) bytes of an IDX file, read no further than its header declares:
    the magic number and header are checked first and the payload size (in Python integers,
    so no overflow) against the memory available, before the payload is decompressed."""
    input_file(path, "IDX file")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) == 4 and head[0] | head[1] == 0 and head[2] in _TYPES and head[3]:
                head += f.read(4 * head[3])
            shape, dtype, header = _header(head, str(path))
            expected = math.prod(shape) * dtype.itemsize
            check_read_size(expected, str(path), f"its header {shape}")
            payload = f.read(expected + 1)  # one byte more: a longer file is detected, never read
    except (OSError, EOFError, zlib.error) as exc:
        raise SepcheckError(f"IDX file {path} is corrupted or truncated ({exc}): download it again") from None
    return head + payload


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array with the shape stored in the header."""
    shape, dtype, header = _header(data, source)
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) > expected:
        raise SepcheckError(f"IDX file {source} is longer than the {expected} bytes its header {shape} declares: "
                            "the file is corrupted or truncated (not one IDX array)")
    if len(data) < expected:
        raise SepcheckError(
            f"IDX file {source} has {len(data)} bytes but its header {shape} needs {expected}: "
            "the file is truncated or corrupted"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped)."""
    p = Path(path)
    return parse_idx(_read_bytes(p), str(p))


def read_idx_pair(images: str | os.PathLike, labels: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 1, rows, cols) uint8 and labels (n,) int64 from an IDX pair."""
    X, y, _ = _read_pair(Path(images), Path(labels))
    return X, y


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """:func:`read_idx_pair` plus the md5 of each file's (decompressed) content, by file name."""
    digests = {}
    arrays = []
    for p in (images, labels):
        data = _read_bytes(p)
        digests[p.name] = hashlib.md5(data).hexdigest()
        arrays.append(parse_idx(data, str(p)))
    X, y = arrays
    if X.ndim != 3 or X.dtype != np.uint8:
        raise SepcheckError(f"IDX images {images} have shape {X.shape} and type {X.dtype}: expected (n, rows, cols) uint8")
    if y.ndim != 1:
        raise SepcheckError(f"IDX labels {labels} have shape {y.shape}: expected (n,)")
    if X.shape[0] != y.shape[0]:
        raise SepcheckError(
            f"IDX images {images} hold {X.shape[0]} images but labels {labels} hold {y.shape[0]}: "
            "the files do not belong together"
        )
    return X[:, None, :, :], y.astype(np.int64), digests


def find_idx_pairs(directory: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Map split prefix ('train', 't10k', ...) -> (images, labels) files in a directory."""
    d = Path(directory)
    pairs: dict[str, tuple[Path, Path]] = {}
    for img in sorted(d.glob("*-images-idx3-ubyte*")):
        if img.name.endswith(".part"):
            continue
        prefix = img.name.split("-images-idx3-ubyte")[0]
        suffix = img.name.split("-images-idx3-ubyte")[1]
        lab = d / f"{prefix}-labels-idx1-ubyte{suffix}"
        if not lab.exists():
            alt = [p for p in d.glob(f"{prefix}-labels-idx1-ubyte*") if not p.name.endswith(".part")]
            if not alt:
                raise SepcheckError(
                    f"IDX images {img} have no labels file: expected {lab.name} in {d}"
                )
            lab = alt[0]
        pairs[prefix] = (img, lab)
    return pairs


class IdxDataset(RegisteredDataset):
    """``train``/``t10k`` ``-images-idx3-ubyte.gz`` and ``-labels-idx1-ubyte.gz`` in
    ``<data dir>/<name>/``. Subclasses set ``info``, ``files`` (file name -> published
    :class:`RemoteFile`, looked up on each call, so a test can point it at a local server)
    and ``classes``."""

    files: ClassVar[dict[str, RemoteFile]]
    classes: ClassVar[list[str] | None] = None

    @staticmethod
    def published(urls: tuple[str, ...], sums: dict[str, tuple[str, str]]) -> dict[str, RemoteFile]:
        """File name -> :class:`RemoteFile` from base URLs and ``{name: (md5 of the .gz,
        md5 of its decompressed content)}``."""
        return {name: RemoteFile(name, tuple(u + name for u in urls), md5=gz, content_md5=raw)
                for name, (gz, raw) in sums.items()}

    def split_files(self, split: str) -> list[RemoteFile]:
        return [self.files[n] for n in self.info.files[split]]

    def remote_files(self) -> list[RemoteFile]:
        return list(self.files.values())

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        present = [directory / f.name for f in self.split_files(split) if (directory / f.name).is_file()]
        return [fingerprint(p, directory) for p in present] or None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        files = self.split_files(split)
        records = ensure_files(self.name, files, directory, download=download, verify=verify, progress=progress)
        images, labels = (directory / f.name for f in files)
        X, y = read_idx_pair(images, labels)
        check_split(self.name, split, X, y, self.info.n_classes, self.info.shape, str(images))
        classes = self.classes or [str(i) for i in range(self.info.n_classes)]
        return SplitData(X=X, y=y, classes=classes, sources=records, verified=verify,
                         preprocessing={"format": "idx", "layout": "NCHW"}, origin=str(directory),
                         notes=verification_notes(self.name, records))


_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class MNIST(IdxDataset):
    """MNIST (LeCun, Cortes & Burges). The original site often refuses downloads now, so the
    PyTorch mirror of the byte-identical files comes first. The .gz md5s are those published
    with torchvision; the content md5s are those of the decompressed official files."""

    info = DatasetInfo(
        name="mnist",
        title="MNIST handwritten digits",
        shape=(1, 28, 28),
        sizes={"train": 60000, "test": 10000},
        n_classes=10,
        eps=0.1,
        eps_text="0.1",
        eps_source="Yang et al. 2020, Table 1",
        homepage="http://yann.lecun.com/exdb/mnist/",
        files=_IDX_FILES,
        notes=("with only the t10k files present and no download, open_dataset / the CLI use the "
               "first 8000 test images as train and the last 2000 as test (said in the output)",
               "a re-compressed .gz whose decompressed content is the official one is verified by "
               "the md5 of that content (said in the output)"),
    )
    files = IdxDataset.published(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
            "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
        },
    )


class FashionMNIST(IdxDataset):
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) with its published md5s."""

    info = DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando article images)",
        shape=(1, 28, 28),
        sizes={"train": 60000, "test": 10000},
        n_classes=10,
        eps=0.1,
        eps_text="0.1",
        eps_source="common choice (as for MNIST); not in Yang et al. 2020",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        files=_IDX_FILES,
    )
    files = IdxDataset.published(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
            "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
            "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
        },
    )
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


def is_idx_dir(path: Path) -> bool:
    return path.is_dir() and bool(list(path.glob("*-images-idx3-ubyte*")))


def _recognised(digests: dict[str, str]) -> tuple[list[str], DatasetInfo | None]:
    """Notes naming the files whose decompressed content is that of a registered IDX data
    set's official file (its published content md5), and that data set's info when every
    file read is one of its official files (else ``None``)."""
    infos = {cls.info.name: cls.info for cls in (MNIST, FashionMNIST)}
    official = {f.content_md5: cls.info.name for cls in (MNIST, FashionMNIST) for f in cls.files.values()
                if f.content_md5}
    found: dict[str, list[str]] = {}
    for have, digest in digests.items():
        if digest in official:
            found.setdefault(official[digest], []).append(have)
    notes = [f"{', '.join(names)}: the official {dataset} files (the md5 of the decompressed content checked)"
             for dataset, names in found.items()]
    whole = len(found) == 1 and sum(map(len, found.values())) == len(digests)
    return notes, (infos[next(iter(found))] if whole else None)


def open_idx_dir(path: Path) -> Dataset:
    """A user's folder of IDX files as a :class:`Dataset`.

    ``train`` files are the training split and ``t10k`` files the test split. A folder holding
    only ``t10k`` files holds only a test split (``Dataset.test_only``); any other single
    prefix is a training split. Files whose decompressed content is that of the official
    MNIST / Fashion-MNIST files are named in a note (their md5 is checked on every read).
    """
    pairs = find_idx_pairs(path)
    if not pairs:
        raise SepcheckError(f"directory {path} holds no *-images-idx3-ubyte[.gz] files")
    test_only = set(pairs) == {"t10k"}
    train_key = "t10k" if test_only else ("train" if "train" in pairs else sorted(pairs)[0])
    X, y, digests = _read_pair(*pairs[train_key])
    ds = Dataset(path.name or str(path), X, y, source=str(path), test_only=test_only)
    if "t10k" in pairs and not test_only:
        ds.X_test, ds.y_test, more = _read_pair(*pairs["t10k"])
        digests.update(more)
    if test_only:
        ds.notes.append(f"only the t10k (test) files are in {path}: they are the test split (--split test) and "
                        "are used as the training split where one is needed (--split train), as there is no "
                        "train file")
    notes, info = _recognised(digests)
    ds.notes.extend(notes)
    if info is not None:  # the official files of a registered data set: its typical eps applies
        ds.eps = info.eps
    return ds
