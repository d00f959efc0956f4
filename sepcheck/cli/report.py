"""``sepcheck report DATASET --out report/``: one folder with report.html, report.md,
report.json and figures/ (see :mod:`sepcheck.report`)."""

from __future__ import annotations

import time

import click

from ..engine.options import RADIUS_BACKENDS
from ._common import (
    cli_cache,
    data_options,
    emit_json,
    json_option,
    options_of,
    search_options,
)


@click.command()
@click.argument("dataset")
@click.option("--out", type=click.Path(), required=True, help="Output folder (must not exist unless --force).")
@click.option("--force", is_flag=True, help="Replace an existing output folder (once the new report is complete).")
@click.option("--runs", "runs", multiple=True, type=click.Path(), metavar="RUN",
              help="A run folder of `sepcheck train`/`eval` to place against the ceiling (repeatable).")
@click.option("--eps", type=float, default=None, help="linf radius to mark (default: the data set's typical eps).")
@click.option("--eps-l2", type=float, default=None, help="l2 radius to mark (none by default).")
@click.option("--tau", type=float, default=None,
              help="Near-duplicate radius of the hygiene lists (linf; default: the linf eps, else 0).")
@click.option("--drop", type=int, default=10, show_default=True,
              help="Also give the separation after dropping the K closest training points.")
@click.option("--time-limit", type=float, default=10.0, show_default=True,
              help="Seconds per conflict-graph component of the ceiling.")
@search_options(RADIUS_BACKENDS, "the searches of this command")
@click.option("--no-cache", is_flag=True, help="Recompute everything (the cache is neither read nor written).")
@data_options
@json_option
def report(
    dataset: str, out: str, force: bool, runs: tuple[str, ...], eps: float | None, eps_l2: float | None,
    tau: float | None, drop: int, time_limit: float, backend: str, device: str, memory_budget: str | None,
    no_cache: bool, data_dir: str | None, no_download: bool, no_verify: bool, as_json: bool,
) -> None:
    """Separation, class pairs, robust-accuracy ceiling, certified accuracy and data hygiene
    of a data set in one self-contained folder (report.html opens from disk).

    Progress goes to stderr; --json prints report.json (with the folder and seconds) on stdout.
    """
    from ..analysis.hygiene import check_tau
    from ..datasets import open_dataset
    from ..report import build_report
    from ..report.model import check_out

    t0 = time.perf_counter()
    check_out(out, force)
    opts_ = options_of(backend, device, memory_budget, RADIUS_BACKENDS, "the searches of this command")
    if tau is not None:
        check_tau(tau)
    budget = opts_.memory_budget
    opts = {"data_dir": data_dir, "download": not no_download, "verify": not no_verify}
    ds = open_dataset(dataset, **opts)
    rep = build_report(
        ds, eps=eps, eps_l2=eps_l2, tau=tau, drop=drop, runs=runs, time_limit=time_limit, cache=cli_cache(no_cache),
        progress=True, say=lambda s: click.echo(s, err=True), data_options=opts, spec=dataset, backend=backend,
        device=device, memory_budget=budget,
    )
    try:
        path = rep.write(out, force=force)
    finally:
        rep.close()
    seconds = time.perf_counter() - t0
    if as_json:
        emit_json({"out": str(path), "seconds": seconds, **rep.data})
        return
    click.echo(f"wrote {path}/report.html, report.md, report.json and {len(rep.figures)} figures "
               f"(PNG and PDF) in {seconds:.1f} s")
