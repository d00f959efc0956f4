"""The user's own files: ``.npz``/``.h5`` arrays with ``X``, ``y`` (and ``X_test``, ``y_test``)
and image trees (torchvision's ImageFolder layout ``<root>/<class name>/<image>``, or
``<root>/train/<class>/...`` with ``<root>/test/`` or ``val/`` for a test split), plus the
image decoding that Restricted ImageNet shares.

Nothing in a data file is ever executed: npz is read with ``allow_pickle=False``.

Image trees: classes are the sorted subfolder names of the (train) root, labels their
positions. All images must have one size (or pass ``size`` to resize the shorter side and
centre-crop a square); grey images stay one channel unless the set mixes grey and colour,
then all become RGB. Files that fail to decode are skipped and reported, never dropped
silently. Decoding runs in parallel worker processes with a progress bar. Resizing follows
torchvision's ``Resize(n)`` + ``CenterCrop(m)`` on PIL images: the shorter side becomes
``n`` (the longer ``int(n * long / short)``, bilinear), then the centre ``m x m`` is cut
with offsets ``int(round((size - m) / 2))``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError, cause
from ..core.fileio import check_read_size, h5_dataset, input_file
from ..core.progress import bar as progress_bar
from .base import Dataset, warn

KEYS = ("X", "y", "X_test", "y_test")
FEATURE_KEYS = ("X", "X_test")


def is_npy_dir(path: str | os.PathLike) -> bool:
    """A folder holding ``X.npy`` and ``y.npy`` (optionally ``X_test.npy``, ``y_test.npy``)."""
    p = Path(path)
    return p.is_dir() and (p / "X.npy").is_file() and (p / "y.npy").is_file()


def read_npy_dir(path: str | os.PathLike, stream: bool = False) -> dict[str, Any]:
    """``{'X', 'y'[, 'X_test', 'y_test']}`` from a folder of ``.npy`` files (see
    :func:`is_npy_dir`); with ``stream`` the features are the file paths (streamed by
    :func:`sepcheck.open_source`), otherwise every array is read (never pickles)."""
    p = Path(path)
    if (p / "X_test.npy").is_file() != (p / "y_test.npy").is_file():
        raise SepcheckError(f"data folder {p} has only one of X_test.npy and y_test.npy: store both or neither")
    out: dict[str, Any] = {}
    for k in KEYS:
        f = p / f"{k}.npy"
        if not f.is_file():
            continue
        if stream and k in FEATURE_KEYS:
            out[k] = str(input_file(f, "data file"))
            continue
        with open(input_file(f, "data file"), "rb") as fh:
            _check_npy_header(fh, os.fstat(fh.fileno()).st_size, f, k)
        try:
            out[k] = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise SepcheckError(f"data file {f} is not a readable .npy array ({cause(exc, 120)}): save it with "
                                "np.save") from None
    return out


def read_arrays(path: str | os.PathLike, stream: bool = False) -> dict[str, Any]:
    """``{'X', 'y'[, 'X_test', 'y_test']}`` from a .npz or .h5 file, checked for completeness.

    ``stream``: the features of an .h5 file are not read; ``X`` and ``X_test`` are then the
    specs ``"file.h5:X"`` that :func:`sepcheck.open_source` streams (labels are read).
    """
    p = input_file(path, "data file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(p)
    elif suffix in (".h5", ".hdf5"):
        arrays = _read_h5(p, stream)
    else:
        raise SepcheckError(f"data file {p} is neither .npz nor .h5: save X and y with np.savez")
    for key in ("X", "y"):
        if key not in arrays:
            raise SepcheckError(
                f"data file {p} has no array {key!r} (found {sorted(arrays) or 'none'}): "
                "store the features as X and the labels as y"
            )
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise SepcheckError(f"data file {p} has only one of X_test and y_test: store both or neither")
    return arrays


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise SepcheckError(f"data file {p} is not an .npz file (not a zip archive): save X and y with np.savez")
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                if info.filename.removesuffix(".npy") in KEYS:
                    with zf.open(info) as fh:
                        _check_npy_header(fh, info.file_size, p, info.filename.removesuffix(".npy"))
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k in KEYS}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SepcheckError(
                f"data file {p} stores Python objects (pickles), which sepcheck never loads: "
                "save plain numeric arrays"
            ) from None
        raise SepcheckError(f"data file {p} is corrupted or truncated ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zlib.error, NotImplementedError) as exc:
        raise SepcheckError(f"data file {p} is corrupted or truncated ({type(exc).__name__}: {exc})") from None


def _check_npy_header(fh: Any, size: int, p: Path, name: str) -> None:
    """Refuse an .npy array (an .npz member, or a file of a data folder; ``fh`` open at its
    start, ``size`` bytes in all) whose header is broken, declares objects, or declares more
    bytes than it holds or memory allows -- before numpy allocates the array."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh, max_header_size=10000)
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise SepcheckError(f"data file {p}: the header of {name!r} is broken ({cause(exc, 120)})") from None
    header_len = fh.tell()
    if dtype.hasobject:
        raise SepcheckError(f"data file {p} stores Python objects (pickles) in {name!r}, which sepcheck never "
                            "loads: save plain numeric arrays")
    nbytes = math.prod(shape) * dtype.itemsize
    check_read_size(nbytes, str(p), repr(name))
    if nbytes != size - header_len:
        raise SepcheckError(f"data file {p}: {name!r} declares {nbytes} bytes but holds {size - header_len}: "
                            "the file is corrupted or truncated")


def _read_h5(p: Path, stream: bool = False) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            names = set(f.keys())  # link names, whether or not the links resolve
            out: dict[str, Any] = {}
            for k in KEYS:
                if k in names:
                    lazy = stream and k in FEATURE_KEYS
                    dset = h5_dataset(f, k, p, streamed=lazy)
                    out[k] = f"{p}:{k}" if lazy else dset[()]
            return out
    except SepcheckError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # h5py: RuntimeError too
        raise SepcheckError(f"data file {p} is corrupted or not HDF5 ({cause(exc)})") from None


# ----- image files -------------------------------------------------------------------

#: file name endings read as images (case-insensitive), as torchvision's ImageFolder
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
#: images per task sent to a worker process
CHUNK = 16
#: below this many images, decoding stays in this process
MIN_PARALLEL = 64
_DEEP_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def walk_tree(folder: Path, notes: list[str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """``(folder path, regular file names)`` for ``folder`` and its non-hidden subfolders.

    Symlinks are followed (as torchvision does), but a folder already visited (same device
    and inode: a link loop such as ``loop -> .``, or two links to one folder) is walked only
    once; non-regular files (FIFOs, sockets, devices, dangling links) are never listed, so
    never opened. Each of these is reported once in ``notes``.
    """
    seen: set[tuple[int, int]] = set()
    todo = [folder]
    while todo:
        d = todo.pop()
        try:
            st = os.stat(d)
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            if notes is not None:
                notes.append(f"{d}: cannot be read ({exc.strerror}); skipped")
            continue
        if (st.st_dev, st.st_ino) in seen:
            if notes is not None:
                notes.append(f"{d}: a symlink to a folder already read (a link loop or a second link); skipped")
            continue
        seen.add((st.st_dev, st.st_ino))
        files: list[str] = []
        subdirs: list[Path] = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    subdirs.append(Path(e.path))
                elif e.is_file():
                    files.append(e.name)
                elif notes is not None and is_image(e.name):
                    notes.append(f"{e.path}: not a regular file (a FIFO, device, socket or dangling link); skipped")
            except OSError as exc:  # e.g. a symlink loop on the entry itself
                if notes is not None:
                    notes.append(f"{e.path}: cannot be read ({exc.strerror}); skipped")
        yield str(d), files
        todo.extend(reversed(subdirs))


def list_images(folder: Path, notes: list[str] | None = None) -> list[Path]:
    """Image files under ``folder`` (subfolders too, see :func:`walk_tree`), in torchvision's
    order: folders walked in sorted order, files sorted by name; hidden entries skipped."""
    found = list(walk_tree(folder, notes))
    found.sort(key=lambda item: item[0])
    return [Path(root) / f for root, files in found for f in sorted(files) if is_image(f)]


@dataclass(frozen=True)
class DecodeSpec:
    """How to turn a file into pixels: ``mode`` 'RGB' (always 3 channels) or 'auto' (grey
    stays 1 channel); ``resize`` the shorter side; ``crop`` the centre square."""

    mode: str = "auto"
    resize: int | None = None
    crop: int | None = None


def resized_size(w: int, h: int, shorter: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``shorter`` (torchvision's rounding)."""
    if w <= h:
        return shorter, int(shorter * h / w)
    return int(shorter * w / h), shorter


def decode_image(path: str | os.PathLike, spec: DecodeSpec) -> np.ndarray:
    """(H, W, C) uint8 pixels of one image; raises on a file Pillow cannot decode."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in _DEEP_MODES:
            raise ValueError(f"{im.mode} images (16-bit or float) are not supported: convert them to 8-bit")
        if spec.mode == "RGB" or im.mode not in ("1", "L", "LA", "La"):
            im = im.convert("RGB")
        elif im.mode != "L":
            im = im.convert("L")
        if spec.resize is not None:
            size = resized_size(im.width, im.height, spec.resize)
            if size != im.size:
                im = im.resize(size, Image.Resampling.BILINEAR)
        if spec.crop is not None:
            c = spec.crop
            top = int(round((im.height - c) / 2.0))
            left = int(round((im.width - c) / 2.0))
            im = im.crop((left, top, left + c, top + c))
        arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_task(item: tuple[str, DecodeSpec]) -> tuple[np.ndarray | None, str | None]:
    path, spec = item
    try:
        return decode_image(path, spec), None
    except Exception as exc:  # any decoder failure is reported for this file, never fatal
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(32, n))


def _context() -> multiprocessing.context.BaseContext:
    """fork on Linux while single-threaded (cheap: no re-import); forkserver otherwise
    (fork in a threaded process can deadlock); the platform default elsewhere."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    return multiprocessing.get_context()


def decode_all(
    paths: Sequence[Path],
    spec: DecodeSpec,
    *,
    workers: int | None = None,
    desc: str = "decoding",
    progress: bool = True,
) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """Yield ``(index, pixels or None, error or None)`` for every path, in order.

    With ``workers`` > 1 (default: the usable CPUs) and enough images, files are decoded
    in worker processes, ``CHUNK`` per task; a tqdm bar on stderr shows progress.
    """
    n_workers = default_workers() if workers is None else max(1, int(workers))
    items = [(str(p), spec) for p in paths]
    executor = None
    if n_workers > 1 and len(items) >= MIN_PARALLEL:
        executor = ProcessPoolExecutor(max_workers=n_workers, mp_context=_context())
        results = executor.map(_decode_task, items, chunksize=CHUNK)
    else:
        results = map(_decode_task, items)
    bar = progress_bar(len(items), desc, "img", enabled=progress)
    try:
        for i, (arr, err) in enumerate(results):
            bar.update(1)
            yield i, arr, err
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


# ----- ImageFolder trees --------------------------------------------------------------

def class_folders(root: Path) -> list[str]:
    """Sorted names of the non-hidden subfolders."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_folders(root: Path) -> dict[str, Path] | None:
    """``{'train': root/train, 'test': root/test or root/val}`` when both exist, else None."""
    train = root / "train"
    test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if train.is_dir() and test is not None:
        return {"train": train, "test": test}
    return None


def _has_image(folder: Path) -> bool:
    return any(any(is_image(f) for f in files) for _, files in walk_tree(folder))


def is_imagefolder(root: str | os.PathLike) -> bool:
    """A folder whose class subfolders (of ``train/`` when split) hold images."""
    p = Path(root)
    if not p.is_dir():
        return False
    splits = split_folders(p)
    base = splits["train"] if splits else p
    return any(_has_image(base / c) for c in class_folders(base))


def read_imagefolder(
    root: Path,
    classes: list[str] | None = None,
    *,
    size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]]:
    """(X uint8 (n, C, H, W), y int64, classes, skipped files, notes) of one class tree."""
    found = class_folders(root)
    if classes is None:
        classes = found
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise SepcheckError(f"{root} has class folder {extra[0]!r} that the training split lacks: "
                                "every test class must also be a training class")
    walk_notes: list[str] = []
    items = [(p, label) for label, c in enumerate(classes) if (root / c).is_dir()
             for p in list_images(root / c, walk_notes)]
    if not items:
        raise SepcheckError(f"{root} holds no images in class folders (expected {root}/<class>/<image>.png)")
    notes: list[str] = []
    if walk_notes:
        notes.append(f"{walk_notes[0]}{f' (and {len(walk_notes) - 1} more)' if len(walk_notes) > 1 else ''}")
    present = {lab for _, lab in items}
    label_of = {c: i for i, c in enumerate(classes)}
    empty = [c for c in found if label_of[c] not in present]
    if empty:
        notes.append(f"{root}: class folder {empty[0]!r}{f' and {len(empty) - 1} more' if len(empty) > 1 else ''} "
                     "holds no images")
    spec = DecodeSpec(mode="auto", resize=size, crop=size) if size else DecodeSpec()
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    first: tuple[Path, tuple[int, int]] | None = None
    paths = [p for p, _ in items]
    for i, arr, err in decode_all(paths, spec, workers=workers, desc=f"decoding {root.name}", progress=progress):
        if arr is None:
            skipped.append(f"{paths[i].relative_to(root).as_posix()} ({err})")
            continue
        hw = (int(arr.shape[0]), int(arr.shape[1]))
        if first is None:
            first = (paths[i], hw)
        elif hw != first[1]:
            raise SepcheckError(
                f"{paths[i]} is {hw[1]}x{hw[0]} but {first[0]} is {first[1][1]}x{first[1][0]}: images of one "
                "data set must have one size; resize them, or load with "
                "sepcheck.datasets.load_imagefolder(path, size=N)"
            )
        arrays.append(arr)
        labels.append(items[i][1])
    if not arrays:
        raise SepcheckError(f"none of the {len(items)} images in {root} could be decoded (first: {skipped[0]})")
    if skipped:
        notes.append(f"{root}: {len(skipped)} of {len(items)} images could not be decoded and were skipped "
                     f"(first: {skipped[0]})")
    channels = max(a.shape[2] for a in arrays)
    if channels == 3 and any(a.shape[2] == 1 for a in arrays):
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
        notes.append(f"{root}: grey and colour images mixed: grey ones were converted to RGB")
    X = np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))
    return X, np.asarray(labels, dtype=np.int64), list(classes), skipped, notes


def load_imagefolder(
    path: str | os.PathLike,
    *,
    size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Dataset:
    """Read an ImageFolder tree (with ``train/`` + ``test/``/``val/`` splits when present)."""
    root = Path(path)
    if not root.is_dir():
        raise SepcheckError(f"image folder {root} does not exist")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise SepcheckError(f"size={size!r} is invalid: give a positive integer (pixels)")
    splits = split_folders(root)
    base = splits["train"] if splits else root
    X, y, classes, skipped, notes = read_imagefolder(base, size=size, workers=workers, progress=progress)
    ds = Dataset(root.name or str(root), X, y, source=str(root), classes=classes)
    ds.meta["train"] = {"n": int(len(y)), "n_skipped": len(skipped), "skipped": skipped[:100]}
    if splits:
        Xt, yt, _, skipped_t, notes_t = read_imagefolder(splits["test"], classes, size=size, workers=workers,
                                                         progress=progress)
        if Xt.shape[1:] != X.shape[1:]:
            raise SepcheckError(f"{splits['test']} images are {Xt.shape[1:]} (C, H, W) but {base} images are "
                                f"{X.shape[1:]}: both splits must have one shape")
        ds.X_test, ds.y_test = Xt, yt
        ds.meta["test"] = {"n": int(len(yt)), "n_skipped": len(skipped_t), "skipped": skipped_t[:100]}
        notes += notes_t
    for note in notes:
        warn(note)
    ds.notes.extend(notes)
    return ds
