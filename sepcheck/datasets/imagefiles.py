"""Image files: finding them in a folder tree and decoding them with Pillow, in parallel
worker processes with a progress bar. Undecodable files are reported, never dropped silently.

Resizing follows torchvision's ``Resize(n)`` + ``CenterCrop(m)`` on PIL images: the
shorter side becomes ``n`` (the longer ``int(n * long / short)``, bilinear), then the
centre ``m x m`` is cut with offsets ``int(round((size - m) / 2))``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: file name endings read as images (case-insensitive), as torchvision's ImageFolder
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
#: images per task sent to a worker process
CHUNK = 16
#: below this many images, decoding stays in this process
MIN_PARALLEL = 64
_DEEP_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (subfolders too, symlinks followed), in torchvision's
    order: folders walked in sorted order, files sorted by name; hidden entries skipped."""
    found: list[tuple[str, list[str]]] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.append((root, files))
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
    from tqdm.auto import tqdm

    n_workers = default_workers() if workers is None else max(1, int(workers))
    items = [(str(p), spec) for p in paths]
    executor = None
    if n_workers > 1 and len(items) >= MIN_PARALLEL:
        executor = ProcessPoolExecutor(max_workers=n_workers, mp_context=_context())
        results = executor.map(_decode_task, items, chunksize=CHUNK)
    else:
        results = map(_decode_task, items)
    bar = tqdm(total=len(items), desc=desc, unit="img", file=sys.stderr, leave=False, delay=1.0,
               disable=not progress)
    try:
        for i, (arr, err) in enumerate(results):
            bar.update(1)
            yield i, arr, err
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
