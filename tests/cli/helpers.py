"""What every CLI test does: run a command, check a one-line error."""

from __future__ import annotations

from click.testing import CliRunner, Result

from sepcheck.cli import main


def run(*args: object, catch_exceptions: bool = False) -> Result:
    """``sepcheck ARGS...`` in-process (stdout and stderr kept apart)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch_exceptions)


def assert_one_line_error(result: Result, *words: str, code: int = 2) -> str:
    """Exit ``code``, nothing on stderr but one ``error: ...`` line holding ``words``, no traceback."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]
