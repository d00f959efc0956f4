"""``open_dataset``: resolve a CLI ``DATASET`` argument to train and test arrays.

Accepted: a registered name (``sepcheck datasets list``; it wins over a folder of the same
name, write ``./mnist`` for the folder), a ``.npz``/``.h5`` file with ``X``, ``y``
(optionally ``X_test``, ``y_test``), a directory of MNIST-format IDX files, or an
ImageFolder tree (``class/image.png``, optionally under ``train/`` and ``test/``/``val/``).

For ``mnist`` and ``fashion-mnist``, when the training files are missing and cannot be
downloaded but the ``t10k`` test files are there, the first 80 % of the test set (8000 of
10 000 images) stand in for "train" and the last 20 % for "test"; ``Dataset.notes`` says so.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import SepcheckError
from ..paths import data_dir as resolve_data_dir
from ._warn import DatasetWarning
from .base import Dataset, SplitData
from .fetch import DataUnavailableError, unavailable
from .idx import find_idx_pairs, read_idx_pair
from .idxsource import IdxSource
from .imagefolder import is_imagefolder, load_imagefolder
from .loader import load_split
from .registry import INFOS, SOURCES, resolve_name
from .spiral import make_spiral
from .userfiles import read_arrays

#: share of the t10k files used as "train" when the real training files are unavailable
FALLBACK_TRAIN_SHARE = 0.8


def _is_idx_dir(path: Path) -> bool:
    return path.is_dir() and bool(list(path.glob("*-images-idx3-ubyte*")))


def _open_idx_dir(path: Path) -> Dataset:
    pairs = find_idx_pairs(path)
    if not pairs:
        raise SepcheckError(f"directory {path} holds no *-images-idx3-ubyte[.gz] files")
    train_key = "train" if "train" in pairs else ("t10k" if len(pairs) == 1 else None)
    test_key = "t10k" if ("t10k" in pairs and train_key != "t10k") else None
    if train_key is None:
        train_key = sorted(pairs)[0]
    X, y = read_idx_pair(*pairs[train_key])
    ds = Dataset(path.name or str(path), X, y, source=str(path))
    if test_key is not None:
        ds.X_test, ds.y_test = read_idx_pair(*pairs[test_key])
    if train_key == "t10k":
        ds.notes.append(f"only the t10k files are in {path}: they are used as the training split")
    return ds


@contextlib.contextmanager
def collect_notes() -> Iterator[list[str]]:
    """Collect :class:`DatasetWarning` messages (deduplicated, in order) instead of emitting
    them; other warnings are emitted as usual when the block ends."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        try:
            yield notes
        finally:
            others = []
            for w in caught:
                if issubclass(w.category, DatasetWarning):
                    if str(w.message) not in notes:
                        notes.append(str(w.message))
                else:
                    others.append(w)
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _fallback_from_test(name: str, test: SplitData, exc: DataUnavailableError) -> tuple[SplitData, SplitData, str]:
    n = test.X.shape[0]
    k = int(round(n * FALLBACK_TRAIN_SHARE))
    train = SplitData(X=test.X[:k], y=test.y[:k], classes=test.classes, sources=test.sources,
                      verified=test.verified, preprocessing={**test.preprocessing, "rows": f"test[:{k}]"},
                      origin=test.origin)
    sub_test = SplitData(X=test.X[k:], y=test.y[k:], classes=test.classes, sources=test.sources,
                         verified=test.verified, preprocessing={**test.preprocessing, "rows": f"test[{k}:]"},
                         origin=test.origin)
    expected = INFOS[name].files["train"]
    missing = [f for f in expected if exc.directory is None or not (exc.directory / f).is_file()] or exc.missing
    note = (f"{name}: the training files ({', '.join(missing)}) are not in {exc.directory} and {exc.reason}: "
            f"using the first {k} of the {n} test images as 'train' and the last {n - k} as 'test' "
            "(not the official split)")
    return train, sub_test, note


def open_registered(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    progress: bool = True,
    **options: Any,
) -> Dataset:
    """Train and test (val) splits of a registered data set, with its typical eps and notes.

    :class:`DatasetWarning` messages raised while loading become ``Dataset.notes`` (they
    are not emitted again); other warnings pass through.
    """
    info = INFOS[name]
    if SOURCES[name] is None:
        X, y = make_spiral("train")
        Xt, yt = make_spiral("test")
        return Dataset(name, X, y, Xt, yt, eps=info.eps, source="built-in", classes=["0", "1"])
    train_split, test_split = info.splits[:2]
    src = SOURCES[name]
    kw: dict[str, Any] = dict(data_dir=data_dir, download=download, verify=verify, progress=progress, **options)
    with collect_notes() as notes:
        try:
            train = load_split(name, train_split, **kw)
        except DataUnavailableError as exc:
            if not isinstance(src, IdxSource):
                raise
            try:
                test = load_split(name, test_split, **kw)
            except DataUnavailableError as exc_test:
                directory = resolve_data_dir(data_dir) / name
                files = [f for f in src.files(train_split) + src.files(test_split)
                         if not (directory / f.name).is_file()]
                raise unavailable(name, files, directory, exc_test.reason) from None
            train, test, note = _fallback_from_test(name, test, exc)
            notes.insert(0, note)
        else:
            test = load_split(name, test_split, **kw)
    directory = resolve_data_dir(data_dir) / name
    return Dataset(
        name, train.X, train.y, test.X, test.y, eps=info.eps, source=str(directory),
        notes=notes, classes=train.classes,
        meta={train_split: train.meta(), test_split: test.meta()},
    )


def open_dataset(
    spec: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
) -> Dataset:
    """Resolve a CLI ``DATASET`` argument (see the module doc) to a :class:`Dataset`."""
    text = str(spec)
    name = resolve_name(text)
    if name is not None and "/" not in text and os.sep not in text:
        return open_registered(name, data_dir=data_dir, download=download, verify=verify)
    path = Path(text)
    if path.suffix.lower() in (".npz", ".h5", ".hdf5"):
        arrays = read_arrays(path)
        return Dataset(path.stem, arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"),
                       source=str(path))
    if path.is_dir():
        if _is_idx_dir(path):
            return _open_idx_dir(path)
        if is_imagefolder(path):
            with collect_notes():  # its notes are in Dataset.notes already
                return load_imagefolder(path)
        raise SepcheckError(
            f"directory {path} is not a data set sepcheck reads: expected MNIST-format IDX files "
            "(*-images-idx3-ubyte.gz, *-labels-idx1-ubyte.gz) or class folders of images "
            "(<class>/<image>.png, optionally under train/ and test/)"
        )
    if path.exists():
        raise SepcheckError(f"{path} is not a data set sepcheck reads: use a .npz or .h5 with X and y")
    raise SepcheckError(
        f"unknown data set {text!r}: use a registered name ({', '.join(SOURCES)}), a .npz/.h5 file "
        "with X and y, a directory of IDX files or an ImageFolder tree"
    )
