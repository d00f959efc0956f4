"""One report folder (HTML, Markdown, JSON, PNG and PDF figures) from the Python API.

    python examples/report.py [DATASET] [OUT]   # default: the built-in spiral into out/report

The same as `sepcheck report DATASET --out OUT --force`; results are cached in
out/report-cache, so a second run takes seconds.
"""

from __future__ import annotations

import sys

import sepcheck
from sepcheck.report import build_report


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "spiral"
    out = sys.argv[2] if len(sys.argv) > 2 else "out/report"
    ds = sepcheck.datasets.open_dataset(spec)
    rep = build_report(ds, cache="out/report-cache", say=print)
    path = rep.write(out, force=True)
    rep.close()
    s = rep.data["summary"]["linf"]
    print(f"{ds.name}: linf separation {s['separation']:.4f}; wrote {path}/report.html")


if __name__ == "__main__":
    main()
