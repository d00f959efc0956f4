"""How a search runs, never what it computes: one frozen, validated object.

:class:`SearchOptions` is built and checked once at the edge (a public function or a CLI
command) and passed down unchanged: the analyses, the runs and the engine's pipeline trust
it. Every field changes only where and how fast the exact answer is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from ..core.devices import check_device_name
from ..core.errors import SepcheckError
from ..core.validation import DEFAULT_MEMORY_BUDGET, as_memory_budget, check_positive_int

#: every backend of the engine, 'auto' first (the CLI's --backend choices come from here)
BACKENDS: tuple[str, ...] = ("auto", "numba", "torch", "faiss", "triton")
#: backends that nearest_by_class runs (faiss has no per-class search here)
BY_CLASS_BACKENDS: tuple[str, ...] = ("auto", "numba", "torch", "triton")
#: backends with a radius search (neighbors_within)
RADIUS_BACKENDS: tuple[str, ...] = ("auto", "numba", "torch")


@dataclass(frozen=True)
class SearchOptions:
    """Options of an exact search (see :func:`sepcheck.nearest_other` for each).

    Attributes
    ----------
    backend : str
        One of :data:`BACKENDS` (lower case); whether it runs a given problem is decided by
        :func:`sepcheck.engine.dispatch.choose`.
    device : str
        'auto', 'cpu', 'cuda' or 'cuda:N'.
    raw : bool
        uint8 distances in raw units (0-255) instead of the [0, 1] pixel scale.
    block_size : int or None
        Rows per block, overriding the memory budget.
    memory_budget : int or None
        Bytes (a size string such as '512MiB' is converted once); None: the default.
    progress : bool or callable
        True for a progress bar on stderr, or a callable receiving query counts done.
    """

    backend: str = "auto"
    device: str = "auto"
    raw: bool = False
    block_size: int | None = None
    memory_budget: int | None = None
    progress: bool | Callable[[int], None] = False

    def __post_init__(self) -> None:
        b = str(self.backend).strip().lower()
        if b not in BACKENDS:
            raise SepcheckError(f"unknown backend {self.backend!r}: use one of {', '.join(BACKENDS)}")
        object.__setattr__(self, "backend", b)
        object.__setattr__(self, "device", check_device_name(self.device))
        if not isinstance(self.raw, bool):
            raise SepcheckError(f"raw={self.raw!r} is invalid: give True or False")
        if self.block_size is not None:
            object.__setattr__(self, "block_size", check_positive_int(self.block_size, "block_size"))
        if self.memory_budget is not None:
            object.__setattr__(self, "memory_budget", as_memory_budget(self.memory_budget))
        if not (isinstance(self.progress, bool) or callable(self.progress)):
            raise SepcheckError(f"progress={self.progress!r} is invalid: give True, False or a callable")

    @classmethod
    def of(cls, options: SearchOptions | None = None, **given: Any) -> SearchOptions:
        """``options`` (already validated) with the fields in ``given`` replaced, or new
        options from ``given`` alone; an unknown name is a one-line error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise SepcheckError(
                f"unknown search option {unknown[0]!r}: use {', '.join(sorted(names))}"
            )
        if options is None:
            return cls(**given)
        return replace(options, **given) if given else options

    @classmethod
    def resolve(cls, options: SearchOptions | None, **keywords: Any) -> SearchOptions:
        """For a function taking both ``options=`` and the six keywords: ``options`` when
        given (validated already; the keywords must then be left at their defaults, else a
        one-line error), otherwise new options from the keywords."""
        if options is None:
            return cls(**keywords)
        defaults = cls()
        if any(v is not getattr(defaults, k) and v != getattr(defaults, k) for k, v in keywords.items()):
            raise SepcheckError(
                "options= replaces backend, device, raw, block_size, memory_budget and progress: "
                "give one or the other"
            )
        return options

    @property
    def budget(self) -> int:
        """The memory budget in bytes: the given one, else the default
        (:data:`~sepcheck.core.validation.DEFAULT_MEMORY_BUDGET`)."""
        return self.memory_budget if self.memory_budget is not None else DEFAULT_MEMORY_BUDGET

    def with_(self, **changes: Any) -> SearchOptions:
        """A copy with ``changes`` (validated)."""
        return replace(self, **changes)


def call_options(options: SearchOptions | None, raw: bool, **given: Any) -> SearchOptions:
    """The options of a public function that has its own ``raw`` flag besides ``options=``
    and the keywords ``given``: raw units when the flag or the options say so."""
    opts = SearchOptions.of(options, **given)
    return opts.with_(raw=True) if raw and not opts.raw else opts
