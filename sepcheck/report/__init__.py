"""The one-page HTML report of a data set (``sepcheck report``): :func:`build_report`."""

from .build import build_report

__all__ = ["build_report"]
