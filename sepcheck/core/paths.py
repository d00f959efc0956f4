"""Where sepcheck keeps data and cached results."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$SEPCHECK_DATA``, else ``~/.cache/sepcheck``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("SEPCHECK_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sepcheck"


def results_dir() -> Path:
    """Cached results: ``$SEPCHECK_CACHE``, else ``<data dir>/results``."""
    env = os.environ.get("SEPCHECK_CACHE")
    return Path(env).expanduser() if env else data_dir() / "results"
