"""Progress bars on stderr (tqdm), behind a tiny callback interface."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


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
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="pt", file=sys.stderr, leave=False, dynamic_ncols=True, delay=1.0) as bar:
        yield bar.update
