"""The warning sepcheck's data set loaders emit (skipped checksums, skipped images, no cache)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..errors import DatasetWarning

_PACKAGE = str(Path(__file__).resolve().parents[1])




def _stacklevel() -> int:
    """The stack level of the first frame outside the sepcheck package (the user's call)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str) -> None:
    """Emit a :class:`DatasetWarning` with a one-line message, attributed to the user's call."""
    warnings.warn(" ".join(str(message).split()), DatasetWarning, stacklevel=_stacklevel())
