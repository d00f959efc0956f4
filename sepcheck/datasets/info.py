"""Facts about a registered data set, for ``available()``, ``datasets list`` and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetInfo:
    """What a registered data set is: shape, split sizes, classes and the typical linf radius.

    ``shape`` is one item's shape (C, H, W) as loaded (``(2,)`` for the 2-D spiral);
    ``sizes`` maps each split to its official number of items (None where it depends on
    the user's copy); ``eps`` is the typical linf attack radius on the [0, 1] pixel scale
    (``eps_text`` as usually written, ``eps_source`` where it comes from).
    """

    name: str
    title: str
    shape: tuple[int, ...]
    sizes: dict[str, int | None]
    n_classes: int
    eps: float | None
    eps_text: str = ""
    eps_source: str = ""
    homepage: str = ""
    #: official file names per split (what must be in <data dir>/<name>/)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    downloadable: bool = True
    notes: tuple[str, ...] = ()

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``datasets list --json``)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["files"] = {k: list(v) for k, v in self.files.items()}
        d["notes"] = list(self.notes)
        d["splits"] = list(self.splits)
        return d
