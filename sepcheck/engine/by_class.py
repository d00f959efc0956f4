"""``nearest_by_class``: the BY_CLASS grouping of the one engine (see :mod:`sepcheck.engine`).

Kept as an import path; the search itself lives in the engine's shared pipeline.
"""

from __future__ import annotations

from . import BY_CLASS_BACKENDS, nearest_by_class
from .problem import make_by_class_problem

__all__ = ["nearest_by_class", "make_by_class_problem", "BY_CLASS_BACKENDS"]
