"""Loading: registered data sets (find or download the files, verify, convert, cache) and
resolution of a CLI ``DATASET`` argument.

* :func:`load` ``(name, split)`` returns ``(X, y)``; the first load converts the split to
  ``<data dir>/<name>/<split>.h5`` and later loads read that file (see
  :mod:`sepcheck.datasets.splitcache`).
* :func:`open_dataset` ``(spec)`` accepts a registered name (``sepcheck datasets list``; it
  wins over a folder of the same name, write ``./mnist`` for the folder), a ``.npz``/``.h5``
  file with ``X``, ``y`` (optionally ``X_test``, ``y_test``), a directory of MNIST-format IDX
  files (``train`` and ``t10k``; only ``t10k`` files are a test split, see
  :attr:`Dataset.test_only`), or an ImageFolder tree (``class/image.png``, optionally under ``train/`` and
  ``test/``/``val/``).

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

import numpy as np

from ..core.errors import DatasetWarning, DataUnavailableError, SepcheckError
from ..core.paths import data_dir as resolve_data_dir
from .base import Dataset, SplitData, warn
from .download import unavailable
from .idx import IdxDataset, is_idx_dir, open_idx_dir
from .registry import INFOS, SOURCES, make_spiral, require_name, resolve_name
from .splitcache import cache_file, read_cache, write_cache
from .userfiles import is_imagefolder, is_npy_dir, load_imagefolder, read_arrays, read_npy_dir

#: share of the t10k files used as "train" when the real training files are unavailable
FALLBACK_TRAIN_SHARE = 0.8


def load_split(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    cache: bool = True,
    progress: bool = True,
    **options: Any,
) -> SplitData:
    """One split of a registered data set with its provenance (see :func:`load`)."""
    canonical = require_name(name)
    src = SOURCES[canonical]
    if src is None:  # the built-in spiral: generated, never cached
        if split not in INFOS[canonical].splits:
            raise SepcheckError(f"spiral has no split {split!r}: use train or test")
        X, y = make_spiral(split)
        return SplitData(X=X, y=y, classes=["0", "1"], verified=True, origin="built-in",
                         preprocessing={"generator": "make_spiral"})
    split = src.canonical_split(split)
    opts = src.normalize_options(options)
    directory = resolve_data_dir(data_dir) / canonical
    key = {"dataset": canonical, "split": split, "options": src.key_options(opts), "converter": src.converter}
    path = cache_file(directory, split, src.option_tag(opts))
    if cache:
        current = src.current_sources(directory, split, opts)
        hit = read_cache(path, key=key, current_sources=current, need_verified=verify and src.has_checksums)
        if hit is not None:
            for note in hit.notes:
                warn(note)
            if src.has_checksums and not hit.verified:
                warn(f"{canonical} {split}: cached from files whose checksums were not verified "
                     "(load once with verification on to check them)")
            return hit
    data = src.build(directory, split, opts, download=download, verify=verify, progress=progress)
    for note in data.notes:
        warn(note)
    if cache and directory.is_dir():
        write_cache(path, key, data)
    return data


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a registered data set: X uint8 (n, C, H, W), y int64 (n,).

    Files are looked up in ``<data dir>/<name>/`` (``data_dir``, else ``$SEPCHECK_DATA``,
    else ``~/.cache/sepcheck``) and downloaded from the canonical URLs when missing, unless
    ``download=False`` or ``$SEPCHECK_OFFLINE=1``. Published checksums are verified unless
    ``verify=False`` (a :class:`DatasetWarning` says so; the format is always checked).
    The first load writes an HDF5 cache of the split; later loads read it.

    ``split`` is ``train`` or ``test`` (``val`` for restricted-imagenet, which accepts
    ``test`` for it). Options: ``label_mode='coarse'`` (cifar100), ``size``, ``resize``
    and ``workers`` (restricted-imagenet), ``cache=False``, ``progress=False``. The
    built-in ``spiral`` returns float64 points of shape (n, 2).
    """
    data = load_split(name, split, data_dir=data_dir, download=download, verify=verify, **options)
    return data.X, data.y


def prepare(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    progress: bool = True,
    **options: Any,
) -> dict[str, SplitData]:
    """Download, verify and convert every split of a registered data set (what
    ``sepcheck datasets prepare`` runs); returns the splits."""
    canonical = require_name(name)
    return {
        split: load_split(canonical, split, data_dir=data_dir, download=download, verify=verify,
                          progress=progress, **options)
        for split in INFOS[canonical].splits
    }


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
            if not isinstance(src, IdxDataset):
                raise
            try:
                test = load_split(name, test_split, **kw)
            except DataUnavailableError as exc_test:
                directory = resolve_data_dir(data_dir) / name
                files = [f for f in src.split_files(train_split) + src.split_files(test_split)
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
    stream: bool = False,
) -> Dataset:
    """Resolve a CLI ``DATASET`` argument (see the module doc) to a :class:`Dataset`.

    ``stream``: the features of an ``.h5`` file or a folder of ``.npy`` files are left on
    disk: ``X`` and ``X_test`` are specs (``"file.h5:X"``, ``"folder/X.npy"``) that
    :func:`sepcheck.open_source` reads in blocks (the labels are read).
    """
    text = str(spec)
    name = resolve_name(text)
    if name is not None and "/" not in text and os.sep not in text:
        return open_registered(name, data_dir=data_dir, download=download, verify=verify)
    path = Path(text)
    if path.suffix.lower() in (".npz", ".h5", ".hdf5"):
        arrays = read_arrays(path, stream=stream)
        return Dataset(path.stem, arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"),
                       source=str(path))
    if path.is_dir():
        if is_npy_dir(path):
            arrays = read_npy_dir(path, stream=stream)
            return Dataset(path.name, arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"),
                           source=str(path))
        if is_idx_dir(path):
            return open_idx_dir(path)
        if is_imagefolder(path):
            with collect_notes():  # its notes are in Dataset.notes already
                return load_imagefolder(path)
        raise SepcheckError(
            f"directory {path} is not a data set sepcheck reads: expected X.npy and y.npy, MNIST-format IDX files "
            "(*-images-idx3-ubyte.gz, *-labels-idx1-ubyte.gz) or class folders of images "
            "(<class>/<image>.png, optionally under train/ and test/)"
        )
    if path.exists():
        raise SepcheckError(f"{path} is not a data set sepcheck reads: use a .npz or .h5 with X and y")
    raise SepcheckError(
        f"unknown data set {text!r}: use a registered name ({', '.join(SOURCES)}), a .npz/.h5 file "
        "with X and y, a directory of IDX files or an ImageFolder tree"
    )
