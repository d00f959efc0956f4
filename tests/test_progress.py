"""Progress bars are drawn only on a terminal (and cleared when done): with stderr
redirected to a file no bar is written, so a log never holds a bar with the
report glued after it."""

from __future__ import annotations

import io
import sys

from sepcheck.core.progress import bar, progress_callback


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_off_when_stderr_is_a_file(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_callback(True, 1000, "search") as tick:
        tick(512)
    print("dataset spiral", file=sys.stderr)
    assert log.getvalue() == "dataset spiral\n"


def test_bar_is_drawn_on_a_terminal_and_cleared(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with bar(1000, "search", "pt", delay=0) as b:
        b.update(512)
        b.refresh()
    drawn = term.getvalue()
    assert "512/1000" in drawn
    assert drawn.rstrip(" ").endswith("\r")  # the line is blanked and the cursor back at its start
