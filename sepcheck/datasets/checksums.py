"""File checksums (md5/sha256) in bounded memory, with a progress bar for big files."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

_CHUNK = 1 << 20
#: files at least this big get a progress bar while hashed
_BAR_BYTES = 64 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "md5", progress: bool = True) -> str:
    """Hex digest of a file's bytes."""
    p = Path(path)
    h = hashlib.new(algorithm)
    size = p.stat().st_size
    bar = None
    if progress and size >= _BAR_BYTES:
        from tqdm.auto import tqdm

        bar = tqdm(total=size, desc=f"checking {p.name}", unit="B", unit_scale=True,
                   file=sys.stderr, leave=False, delay=1.0)
    try:
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return h.hexdigest()


@functools.cache
def default_file_mode() -> int:
    """0o666 minus the umask: the mode a plain ``open()`` would give (mkstemp gives 0o600).

    The umask is read from /proc on Linux (no global change); elsewhere it is read once by
    setting and restoring it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def fingerprint(path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict:
    """``{name, size, mtime_ns}`` of a file (name relative to ``root`` when given)."""
    p = Path(path)
    st = p.stat()
    name = p.relative_to(root).as_posix() if root is not None else p.name
    return {"name": name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
