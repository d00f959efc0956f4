"""Progress bars on stderr (tqdm), behind a tiny callback interface."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any


def bar(total: int | None, desc: str, unit: str = "it", *, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr, shown after a second and cleared when closed.

    Off when ``enabled`` is false or stderr is not a terminal: in a log file every redraw
    stays on one line, and the report that follows would start after the last one.
    """
    from tqdm.auto import tqdm

    isatty = getattr(sys.stderr, "isatty", None)
    on = enabled and callable(isatty) and bool(isatty())
    settings = {"leave": False, "dynamic_ncols": True, "delay": 1.0, **options}
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not on, **settings)


@contextlib.contextmanager
def progress_callback(
    progress: bool | Callable[[int], None] | None, total: int, desc: str
) -> Iterator[Callable[[int], None] | None]:
    """Yield a ``tick(n)`` callable: a tqdm bar on stderr when ``progress`` is True, the
    user's callable when one is given, None when progress is off."""
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    with bar(total, desc, "pt") as b:
        yield b.update
