"""Parsing and naming of the norms sepcheck supports: linf, l2, l1 and any float p >= 1."""

from __future__ import annotations

import math

from .errors import SepcheckError

_NAMES = {"linf": math.inf, "inf": math.inf, "l2": 2.0, "l1": 1.0}


def parse_norm(norm: str | float | int) -> float:
    """Return p (``math.inf`` for linf) for a norm given as 'linf', 'l2', 'l1', 'lP', 'P' or a number.

    Raises :class:`SepcheckError` for unknown names and for p < 1 (not a norm).
    """
    if isinstance(norm, bool):
        raise SepcheckError(f"unknown norm {norm!r}: use 'linf', 'l2', 'l1' or a number p >= 1")
    if isinstance(norm, (int, float)):
        p = float(norm)
    else:
        text = str(norm).strip().lower()
        if text in _NAMES:
            return _NAMES[text]
        body = text[1:] if text.startswith("l") else text
        try:
            p = float(body)
        except ValueError:
            raise SepcheckError(
                f"unknown norm {norm!r}: use 'linf', 'l2', 'l1' or a number p >= 1"
            ) from None
    if math.isnan(p) or p < 1:
        raise SepcheckError(f"norm p={norm!r} is not a norm: p must be >= 1 (or 'linf')")
    return p


def norm_name(p: float) -> str:
    """Canonical name of a norm: 'linf', 'l1', 'l2', or 'l3.5' for other p."""
    if math.isinf(p):
        return "linf"
    if float(p).is_integer():
        return f"l{int(p)}"
    return f"l{p:g}"
