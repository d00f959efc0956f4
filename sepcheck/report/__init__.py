"""The one-page report of a labelled data set (``sepcheck report``): separation, class pairs,
robust-accuracy ceiling, certified accuracy of the 1/r classifier and data hygiene, as HTML,
Markdown, JSON and figures. The entry point is :func:`build_report`; it returns a
:class:`~sepcheck.report.model.Report` whose ``write(out)`` writes the folder.

Conventions: distances on the scale of :func:`sepcheck.separation` (the [0, 1] pixel scale
for uint8 data), the primary norm is linf (histograms, class pairs, image grids, hygiene),
the separation, ceiling and certified curves are given for linf and l2. The typical eps of
a data set is the registry's linf radius (``--eps`` overrides it); for l2 the registry has
none: ``eps_l2`` (``--eps-l2``) marks one when given, nothing is marked otherwise.

Modules, top layer first (``lint-imports`` checks the order):

- :mod:`.build`: :func:`build_report`, the section functions called in order;
- :mod:`.sections`: one function per section, computing its numbers and drawing its figures;
- :mod:`.inputs`: the checked arguments, cache keys, log and step timing (:class:`Inputs`);
- :mod:`.model`: :class:`Figure`, :class:`Report` and the output folder it writes;
- :mod:`.figures`: matplotlib helpers; :mod:`.arrays`: the report's .npz cache entries;
- :mod:`.render`: report.md and report.html from a report's data;
- :mod:`.values`: the norms shown and pure numpy helpers (default grid, closest pairs, curves).
"""

from .build import build_report

__all__ = ["build_report"]
