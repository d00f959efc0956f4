"""``sepcheck`` command line: one group, each command in its own module, loaded on use.

Exit codes and messages (one line on stderr, never a traceback, except for a bug):

* 2: bad input, a :class:`~sepcheck.core.errors.SepcheckError` (or a click usage error):
  ``error: <what is wrong and the fix>``.
* 1: a failure that is not the input, a :class:`~sepcheck.core.errors.SepcheckRuntimeError`
  (:class:`~sepcheck.core.errors.DivergedError`, :class:`~sepcheck.core.errors.KernelError`), or an
  ``OSError`` from the system (disk full, permission denied while writing):
  ``error: <message>``.
* 130: interrupted (Ctrl-C).
* any other exception is a bug in sepcheck: the traceback is kept (it is what a bug report
  needs), after a line that says so; exit code 1.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

from .._version import __version__
from ..core.errors import SepcheckError, SepcheckRuntimeError

#: command name -> "module:attribute" (loaded lazily so that `sepcheck --help` is quick)
COMMANDS = {
    "separation": "sepcheck.cli.separation:separation",
    "ceiling": "sepcheck.cli.ceiling:ceiling",
    "datasets": "sepcheck.cli.datasets:datasets",
    "certify": "sepcheck.cli.certify:certify",
    "plot-classifier": "sepcheck.cli.certify:plot_classifier",
    "train": "sepcheck.cli.train:train",
    "eval": "sepcheck.cli.train:evaluate",
    "merge": "sepcheck.cli.merge:merge",
    "hygiene": "sepcheck.cli.hygiene:hygiene",
    "report": "sepcheck.cli.report:report",
}


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _os_message(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


class SepcheckGroup(click.Group):
    """Lazy command loading; exceptions mapped to one line and an exit code (module doc)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)  # a failure here is a bug

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors (exit 2), --help, aborts: click reports them
        except SepcheckError as exc:
            _fail(str(exc), 2)
        except SepcheckRuntimeError as exc:
            _fail(str(exc), 1)
        except OSError as exc:
            _fail(_os_message(exc), 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception:
            click.echo("sepcheck: unexpected error (a bug in sepcheck): please report it with "
                       "the traceback below", err=True)
            raise


@click.group(cls=SepcheckGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sepcheck")
def main() -> None:
    """sepcheck: how far apart are the classes of a labelled data set, and what that means
    for adversarial robustness."""
