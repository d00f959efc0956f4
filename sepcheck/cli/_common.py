"""Shared pieces of the CLI commands: options, JSON output, number formatting.

File writing and JSON conversion are core helpers in :mod:`sepcheck.core.fileio`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..core.devices import DEVICES
from ..core.fileio import atomic_write, json_text
from ..core.paths import results_dir
from ..engine.options import BACKENDS, SearchOptions


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")(f)


def data_options(f: Callable) -> Callable:
    """--data-dir, --no-download, --no-verify (for registered data sets)."""
    f = click.option("--no-verify", is_flag=True, help="Skip checksum verification (warns).")(f)
    f = click.option("--no-download", is_flag=True, help="Never download; use files already present.")(f)
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Data directory (default $SEPCHECK_DATA or ~/.cache/sepcheck).",
    )(f)
    return f


def emit_json(obj: dict) -> None:
    click.echo(json_text(obj))


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if x == 0 or 10.0**-digits <= abs(x) < 10.0**6:
        return f"{x:.{digits}f}"
    return f"{x:.{digits}g}"  # no 200-digit numbers: 1e+200, 1.234e-07


#: the --memory-budget option of the commands that search (parsed by as_memory_budget)
memory_budget_option = click.option(
    "--memory-budget", default=None, metavar="SIZE",
    help="Extra memory one search may use, e.g. 512MiB or 2GB (default 512MiB; at least 16MiB).",
)


def search_options(backends: tuple[str, ...] = BACKENDS, what: str = "the search",
                   memory: bool = True) -> Callable[[Callable], Callable]:
    """--backend (choices from the engine's registry: ``backends``), --device and
    --memory-budget of a command that searches; :func:`options_of` turns them into one
    validated :class:`~sepcheck.engine.options.SearchOptions`. ``memory=False``: no
    --memory-budget (a command whose searches are small)."""

    def decorate(f: Callable) -> Callable:
        if memory:
            f = memory_budget_option(f)
        f = click.option("--device", default="auto", show_default=True,
                         help=f"{', '.join(DEVICES)} or cuda:N.")(f)
        return click.option("--backend", default="auto", show_default=True,
                            help=f"{', '.join(backends)}: the backend of {what}.")(f)

    return decorate


def options_of(backend: str, device: str, memory_budget: str | None, backends: tuple[str, ...] = BACKENDS,
               what: str = "", **more: Any) -> SearchOptions:
    """The command's :class:`~sepcheck.engine.options.SearchOptions`, validated once:
    ``backend`` among the command's ``backends`` (:func:`check_engine`), then every field (a
    bad value is a one-line error, exit 2)."""
    check_engine(backend, backends, what)
    return SearchOptions(backend=backend, device=device, memory_budget=memory_budget, **more)


def cli_cache(no_cache: bool) -> Path | None:
    """The CLI's results cache folder (:func:`sepcheck.core.paths.results_dir`), or None with
    ``--no-cache``. Library calls have no cache unless given one; the CLI keeps one."""
    return None if no_cache else results_dir()


def shard_options(f: Callable) -> Callable:
    """--resume, --shard I/N, --shard-rows (sharded, resumable and distributed runs; see
    :mod:`sepcheck.runs.run`)."""
    f = click.option("--shard-rows", type=int, default=None, metavar="ROWS",
                     help="Queries per shard (default: about 1/64 of them, within the memory budget).")(f)
    f = click.option("--shard", default=None, metavar="I/N",
                     help="Run only group I of N of the shards (SLURM arrays: $SLURM_ARRAY_TASK_ID/N) and write "
                     "the piece to --out; combine the pieces with `sepcheck merge`.")(f)
    f = click.option("--resume", is_flag=True,
                     help="Continue an interrupted run with the same --out: finished shards are kept.")(f)
    return f


def shard_summary(run) -> dict:
    """The ``shards`` entry of a command's summary (its --json object): shards of the run, of this group, computed and reused."""
    group = run.piece.hi - run.piece.lo if run.piece is not None else None
    out = {"total": run.total, "in_group": group, "computed": run.computed, "reused": run.reused,
           "ranks": run.world_size, "seconds": round(run.seconds, 3)}
    if run.group != (0, 1):
        out["group"] = f"{run.group[0]}/{run.group[1]}"
    return out


def echo_shards(rep: dict) -> None:
    """The human line about a sharded run."""
    s = rep["shards"]
    where = f" (group {s['group']})" if "group" in s else ""
    click.echo(f"shards      {s['in_group']} of {s['total']}{where}: {s['computed']} computed, {s['reused']} "
               f"reused, {s['ranks']} process{'es' if s['ranks'] > 1 else ''}, {s['seconds']:.1f} s")


def sharded_run(job: Any, out: Path | None, resume: bool, shard: str | None, as_json: bool, dataset: str) -> Any:
    """The sharded form of a command (``separation`` and ``certify``): run ``job`` in journaled
    shards (resumable with --out; shared by the torchrun ranks). Returns the finished
    :class:`~sepcheck.runs.run.ShardRun`, or None when this process reports nothing more: a
    rank other than 0, or a --shard group (or unfinished run) whose piece was written and
    reported here."""
    from ..runs.run import finish_output, run_job, write_piece_or_result

    run = run_job(job, out=out, resume=resume, shard=shard, progress=True)
    if run.piece is None:
        return None  # a rank other than 0: rank 0 reports
    if not run.piece.complete:
        finish_output(run, write_piece_or_result(run, dataset))
        echo_piece(run, as_json)
        return None
    return run


def echo_piece(run: Any, as_json: bool) -> None:
    """The summary of one --shard I/N group (or an unfinished run): its query rows and where
    its piece went."""
    rep = {"shards": shard_summary(run), "rows": list(run.piece.rows), "out": str(run.out)}
    if as_json:
        emit_json(rep)
        return
    echo_shards(rep)
    click.echo(f"rows        {rep['rows'][0]} to {rep['rows'][1] - 1} of the queries (train, then test)")
    click.echo(f"wrote       {rep['out']}  (combine the pieces with `sepcheck merge`)")


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically, then close it (also when writing fails)."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def check_engine(backend: str, backends: tuple[str, ...], what: str = "") -> None:
    """``--backend`` among ``backends`` (those of the command's search; ``what`` names it in
    the message): a one-line error otherwise (the device is checked by SearchOptions)."""
    from ..core.errors import SepcheckError

    if backend.lower() not in backends:
        names = ", ".join(backends[:-1]) + " or " + backends[-1]
        raise SepcheckError(f"unknown backend {backend!r}{' for ' + what if what else ''}: use {names}")
