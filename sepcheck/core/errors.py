"""Every exception and warning class sepcheck raises, in one place.

Two families:

* :class:`SepcheckError` (a ``ValueError``): the *user's* input cannot be used (bad
  arguments, a file sepcheck cannot read, a failed download, an unsafe pickle). The message
  is one line that names the problem and, where there is one, the fix. The CLI prints it as
  ``error: ...`` and exits with code 2.
* :class:`SepcheckRuntimeError` (a ``RuntimeError``): a failure that is *not* the user's
  input (a diverged training loss, a kernel or backend failure). The CLI prints one line and
  exits with code 1.

Warnings derive from :class:`SepcheckWarning`.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def cause(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of ``exc``'s message (its type name when it has none), cut
    to ``limit`` characters: how a foreign library's error is quoted inside a one-line
    :class:`SepcheckError`."""
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return line[:limit]


class SepcheckError(ValueError):
    """Bad input or a file sepcheck cannot use; the message is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


class NotFittedError(SepcheckError):
    """An estimator was used before ``fit``."""


class DataUnavailableError(SepcheckError):
    """Files of a data set are missing and cannot be downloaded (off, offline or failed)."""

    def __init__(self, message: str, *, dataset: str = "", missing: Sequence[str] = (),
                 directory: Path | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.dataset = dataset
        self.missing = list(missing)
        self.directory = directory
        self.reason = reason


class DownloadError(SepcheckError):
    """A transfer that failed (network, HTTP status, interrupted, checksum); str() is the reason."""


class UnsafePickleError(SepcheckError, pickle.UnpicklingError):
    """A pickle asked for something outside the allowed set (a global, a call, an object array)."""


class SepcheckRuntimeError(RuntimeError):
    """A failure that is not the user's input; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


class DivergedError(SepcheckRuntimeError):
    """A training loss became NaN or infinite."""


class KernelError(SepcheckRuntimeError):
    """A compute kernel or backend failed (compilation, device, out of memory)."""


class SepcheckWarning(UserWarning):
    """Base of every warning sepcheck emits."""


class DatasetWarning(SepcheckWarning):
    """Something the user must know about loaded data; the data are still complete and usable."""


class TheoremWarning(SepcheckWarning):
    """The chosen r is larger than separation / 2: the theorem's guarantee does not hold."""


__all__ = [
    "SepcheckError",
    "NotFittedError",
    "DataUnavailableError",
    "DownloadError",
    "UnsafePickleError",
    "SepcheckRuntimeError",
    "DivergedError",
    "KernelError",
    "SepcheckWarning",
    "DatasetWarning",
    "TheoremWarning",
]
