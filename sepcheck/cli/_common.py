"""Shared pieces of the CLI commands: options, JSON output, safe file writing."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..errors import SepcheckError


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")(f)


def data_options(f: Callable) -> Callable:
    """--data-dir, --no-download, --no-verify (for registered data sets)."""
    f = click.option("--no-verify", is_flag=True, help="Skip checksum verification (warns).")(f)
    f = click.option("--no-download", is_flag=True, help="Never download; use files already present.")(f)
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Data directory (default $SEPCHECK_DATA or ~/.cache/sepcheck).",
    )(f)
    return f


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


def emit_json(obj: dict) -> None:
    click.echo(json.dumps(to_jsonable(obj), indent=2, allow_nan=False))


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Fail before any work if ``path`` cannot be written (its folder is created)."""
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


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` then rename tmp to ``path``: nothing half-written is left behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; results get the usual permissions
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.replace(tmp_path, p)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return p


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def cli_cache(no_cache: bool) -> Path | None:
    """The CLI's results cache folder (:func:`sepcheck.paths.results_dir`), or None with
    ``--no-cache``. Library calls have no cache unless given one; the CLI keeps one."""
    if no_cache:
        return None
    from ..paths import results_dir

    return results_dir()
