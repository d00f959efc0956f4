"""``sepcheck`` command line: one group, each command in its own module, loaded on use.

Bad input (a :class:`~sepcheck.errors.SepcheckError`) prints one line ``error: ...`` on
stderr and exits with code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from .._version import __version__
from ..errors import SepcheckError

#: command name -> "module:attribute" (loaded lazily so that `sepcheck --help` is quick)
COMMANDS = {
    "separation": "sepcheck.cli.separation:separation",
    "datasets": "sepcheck.cli.datasets:datasets",
    "certify": "sepcheck.cli.certify:certify",
    "plot-classifier": "sepcheck.cli.certify:plot_classifier",
    "train": "sepcheck.cli.train:train",
    "eval": "sepcheck.cli.train:evaluate",
}


class SepcheckGroup(click.Group):
    """Lazy command loading and one-line errors with exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return None

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except SepcheckError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=SepcheckGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sepcheck")
def main() -> None:
    """sepcheck: how far apart are the classes of a labelled data set, and what that means
    for adversarial robustness."""
