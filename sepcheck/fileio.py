"""Safe file writing and strict JSON: the I/O helpers every layer shares (results, runs, CLI).

A core module: it imports nothing from sepcheck except :mod:`sepcheck.errors`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SepcheckError


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (through :func:`to_jsonable`; never ``NaN``)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Fail before any work if ``path`` cannot be written (its folder is created).

    ``what`` names the path in the message (an option such as ``--out``).
    """
    p = Path(path)
    if p.exists() and p.is_dir():
        raise SepcheckError(f"{what} {p} is a directory: give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepcheckError(f"cannot create the folder for {what} {p} ({exc.strerror})") from None
    if not os.access(p.parent, os.W_OK):
        raise SepcheckError(f"cannot write {what} {p}: folder is not writable")
    return p


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


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` then rename tmp to ``path``: nothing half-written is left behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    os.close(fd)
    os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; results get the usual permissions
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.replace(tmp_path, p)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return p
