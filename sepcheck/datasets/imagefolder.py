"""The user's own images in an ImageFolder tree: ``<root>/<class name>/<image>``, or
``<root>/train/<class>/...`` with ``<root>/test/`` (or ``val/``) for a test split.

Classes are the sorted subfolder names of the (train) root, labels their positions, as in
torchvision's ImageFolder. All images must have one size (or pass ``size`` to resize the
shorter side and centre-crop a square); grey images stay one channel unless the set mixes
grey and colour, then all become RGB. Files that fail to decode are skipped and reported.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SepcheckError
from ._warn import warn
from .base import Dataset
from .imagefiles import DecodeSpec, decode_all, is_image, list_images


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
    return any(any(is_image(f) for f in files) for _, _, files in os.walk(folder, followlinks=True))


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
    items = [(p, label) for label, c in enumerate(classes) if (root / c).is_dir() for p in list_images(root / c)]
    if not items:
        raise SepcheckError(f"{root} holds no images in class folders (expected {root}/<class>/<image>.png)")
    notes: list[str] = []
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
