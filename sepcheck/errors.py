"""The one error type sepcheck raises for bad input.

Every message is one line that names the problem and, where there is one, the fix.
The CLI turns a :class:`SepcheckError` into that line on stderr and exit code 2.
"""

from __future__ import annotations


class SepcheckError(ValueError):
    """Bad input or a file sepcheck cannot use; the message is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
