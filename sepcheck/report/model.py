"""What :func:`sepcheck.report.build_report` returns: :class:`Report` (the JSON-able
results and the drawn :class:`Figure` objects) and the folder it writes.

:meth:`Report.write` writes ``report.html`` (opens from disk: the figures are files next to
it, referenced relatively), ``report.md``, ``report.json`` and ``figures/`` (each figure as
PNG and PDF) into a temporary folder that is renamed onto the output folder at the end, so
nothing half-written is ever left; :func:`check_out` is its check of the output folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import SepcheckError
from ..core.fileio import default_file_mode, json_text
from .render import to_html, to_markdown


@dataclass
class Figure:
    """One drawn figure: a file stem under figures/, a title and a caption."""

    name: str
    title: str
    caption: str
    figure: Any


@dataclass
class Report:
    """What :func:`build_report` returns: the JSON-able results and the drawn figures.

    Attributes
    ----------
    data
        Everything the report says, as plain JSON-able values (``report.json``): keys
        ``dataset``, ``summary`` (norm -> numbers), ``class_pairs``, ``ceiling`` (norm ->
        curve), ``certified`` (norm -> curve), ``hygiene``, ``runs``, ``timing``.
    figures
        The figures in report order.
    """

    data: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)

    def write(self, out: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the report folder ``out`` (see the module docstring). An existing ``out``
        is a one-line error unless ``force`` (then it is replaced, only once the new report
        is complete)."""
        target = check_out(out, force)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        try:
            figs = tmp / "figures"
            figs.mkdir()
            for f in self.figures:
                f.figure.savefig(figs / f"{f.name}.png", format="png", dpi=110)
                f.figure.savefig(figs / f"{f.name}.pdf", format="pdf")
            (tmp / "report.json").write_text(json_text(self.data), encoding="utf-8")
            (tmp / "report.md").write_text(to_markdown(self), encoding="utf-8")
            (tmp / "report.html").write_text(to_html(self), encoding="utf-8")
            mode = default_file_mode()
            os.chmod(tmp, mode | ((mode & 0o444) >> 2))  # mkdtemp makes 0700: a folder's usual mode
            if target.exists():  # --force: the old folder goes only once the new one is complete
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def close(self) -> None:
        """Close the matplotlib figures."""
        import matplotlib.pyplot as plt

        for f in self.figures:
            plt.close(f.figure)


def check_out(out: str | os.PathLike, force: bool) -> Path:
    """The output folder: new, or existing and replaced with ``force``; a one-line error
    otherwise (before anything is computed)."""
    target = Path(out)
    if target.exists() or target.is_symlink():
        if not force:
            raise SepcheckError(f"output folder {target} exists: choose another --out or pass --force to replace it")
        if not target.is_dir() or target.is_symlink():
            raise SepcheckError(f"output {target} is not a folder: remove it or choose another --out")
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise SepcheckError(f"cannot write into {parent}: choose a writable --out")
    return target


__all__ = ["Figure", "Report", "check_out"]
