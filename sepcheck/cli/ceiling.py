"""``sepcheck ceiling DATASET``: the robust-accuracy ceiling curve, and trained runs against it."""

from __future__ import annotations

import math
from typing import Any

import click

from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, check_writable, json_text
from ..core.norms import parse_norm
from ..engine.options import RADIUS_BACKENDS
from ._common import (
    cli_cache,
    data_options,
    emit_json,
    fmt,
    json_option,
    options_of,
    save_figure,
    search_options,
)


def parse_eps_grid(text: str) -> list[float]:
    """``START:STOP:NUM`` -> NUM evenly spaced radii from START to STOP (both included)."""
    hint = "give START:STOP:NUM, e.g. 0:0.5:21 (NUM >= 1 radii from START to STOP, all >= 0)"
    parts = text.split(":")
    try:
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise SepcheckError(f"--eps-grid {text!r} is invalid: {hint}") from None
    if len(parts) != 3 or num < 1 or not (math.isfinite(start) and math.isfinite(stop)) or min(start, stop) < 0:
        raise SepcheckError(f"--eps-grid {text!r} is invalid: {hint}")
    if num == 1:
        return [start]
    return [start + (stop - start) * i / (num - 1) for i in range(num)]


@click.command()
@click.argument("dataset")
@click.argument("more_runs", nargs=-1, type=click.Path(), metavar="")
@click.option("--norm", default="linf", show_default=True, help="linf, l2, l1 or a number p >= 1.")
@click.option("--eps", "eps_values", type=float, multiple=True, metavar="E",
              help="An attack radius (repeat for several), on the pixel scale [0, 1] for images.")
@click.option("--eps-grid", default=None, metavar="START:STOP:NUM", help="NUM evenly spaced radii, e.g. 0:0.5:21.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="The points whose ceiling is computed.")
@click.option("--time-limit", type=float, default=10.0, show_default=True,
              help="Seconds HiGHS may spend on one component with 3+ labels; then bounds are reported.")
@click.option("--runs", "runs", multiple=True, type=click.Path(), metavar="RUN",
              help="Run folders evaluated by `sepcheck eval` (--runs runs/*): their robust accuracy against "
              "the ceiling of the same test points at the same eps.")
@click.option("--raw", is_flag=True, help="uint8 data: radii in raw 0-255 units, not [0, 1].")
@search_options(RADIUS_BACKENDS, "the radius search")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the result (JSON).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="The curve as PNG.")
@click.option("--no-cache", is_flag=True, help="Recompute even when a cached result exists.")
@data_options
@json_option
def ceiling(dataset: str, more_runs: tuple[str, ...], norm: str, eps_values: tuple[float, ...],
            eps_grid: str | None, split: str, time_limit: float, runs: tuple[str, ...], raw: bool, backend: str,
            device: str, memory_budget: str | None, out: str | None, plot_path: str | None, no_cache: bool,
            data_dir: str | None, no_download: bool, no_verify: bool, as_json: bool) -> None:
    """The best robust accuracy any classifier can reach on the data at each eps: the maximum
    set of points with no two of different labels within 2 eps, exact (matching for two
    labels, integer programming per component for more) or bounded after --time-limit.

    Give --eps E (repeatable) or --eps-grid START:STOP:NUM.
    """
    from ..analysis.ceiling import as_eps_grid, check_time_limit
    from ..datasets import open_dataset
    from ..runs.cache import cached_ceiling

    if more_runs and not runs:
        raise SepcheckError(f"unexpected argument {more_runs[0]!r}: give one DATASET (run folders go after --runs)")
    runs = runs + more_runs
    parse_norm(norm)
    if bool(eps_values) == bool(eps_grid):
        raise SepcheckError("give the radii with --eps E (repeatable) or --eps-grid START:STOP:NUM, not both")
    grid = list(eps_values) if eps_values else parse_eps_grid(str(eps_grid))
    as_eps_grid(grid, "--eps")
    try:
        check_time_limit(time_limit)
    except SepcheckError:
        raise SepcheckError(f"--time-limit {time_limit} is invalid: give the seconds per component, > 0") from None
    opts = options_of(backend, device, memory_budget, RADIUS_BACKENDS, "the radius search")
    out_p = check_writable(out, "--out") if out else None
    plot_p = check_writable(plot_path, "--plot") if plot_path else None

    ds = open_dataset(dataset, data_dir=data_dir, download=not no_download, verify=not no_verify)
    X, y, _, _ = ds.split_arrays(split)
    engine = {"backend": opts.backend, "device": opts.device, "memory_budget": opts.memory_budget}
    res, cached = cached_ceiling(X, y, grid, norm=norm, raw=raw, time_limit=time_limit,
                                 dataset=f"{ds.name} {split}", cache=cli_cache(no_cache), progress=not as_json,
                                 **engine)
    points: list[dict[str, Any]] = []
    if runs:
        from ..train.ceiling_points import above_message, run_points

        opts = {"data_dir": data_dir, "download": not no_download, "verify": not no_verify}
        points = run_points(list(runs), time_limit=time_limit, cache=cli_cache(no_cache), data_options=opts,
                            opened=(dataset, ds), **engine)
        for p in points:
            if p["above"]:
                click.echo(f"WARNING: {above_message(p)}", err=True)
    summary = {**res.to_dict(sacrificed=False), "split": split, "typical_eps": ds.eps, "cached": cached,
              "notes": list(ds.notes), "runs": points}
    fig = _draw(res, ds.eps if res.norm == "linf" else None, points) if plot_p is not None else None
    if out_p is not None:
        text = json_text({**res.to_dict(), "runs": points})
        atomic_write(out_p, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        summary["out"] = str(out_p)
    if fig is not None:
        save_figure(fig, plot_p)
        summary["plot"] = str(plot_p)
    if as_json:
        emit_json(summary)
    else:
        _print_table(summary)


def _print_table(rep: dict[str, Any]) -> None:
    unit = {"pixel": "pixel scale [0, 1]", "raw": "raw units 0-255"}.get(rep["units"], "data units")
    for note in rep["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"robust-accuracy ceiling of {rep['dataset']} ({rep['n_points']} points, {rep['norm']}, {unit}); "
               f"largest class {fmt(rep['class_share'])}")
    click.echo(f"{'eps':>8}  {'accuracy':>9}  {'bounds':<18}  {'edges':>10}  {'components':>10}")
    for i, e in enumerate(rep["eps"]):
        acc, up = rep["accuracy"][i], rep["upper"][i]
        how = "exact" if rep["exact"][i] else f"[{fmt(acc)}, {fmt(up)}]"
        click.echo(f"{fmt(e):>8}  {fmt(acc):>9}  {how:<18}  {rep['n_edges'][i]:>10}  {rep['n_components'][i]:>10}")
    if not all(rep["exact"]):
        click.echo(f"inexact rows: a component with 3+ labels hit --time-limit {rep['time_limit']:g}; accuracy is "
                   "the best found (lower bound), the upper bound is HiGHS's dual bound or the LP relaxation")
    if rep.get("typical_eps") is not None:
        click.echo(f"typical eps {fmt(rep['typical_eps'])}  (linf, literature)")
    if rep["runs"]:
        click.echo("")
        click.echo(f"{'run':<24} {'attack':<10} {'eps':>7} {'robust acc':>10} {'ceiling':>9}  points")
        for p in rep["runs"]:
            ceil = fmt(p["ceiling"]) if p["exact"] else f"<={fmt(p['upper'])}"
            flag = "  ABOVE THE CEILING" if p["above"] else ""
            pts = f"{p['n_points']} test" + (" (subset)" if p["subset"] else "")
            click.echo(f"{str(p['label'])[:24]:<24} {p['attack']:<10} {fmt(p['eps']):>7} {fmt(p['accuracy']):>10} "
                       f"{ceil:>9}  {pts}, {p['norm']}{flag}")
    if rep["cached"]:
        click.echo("(cached result)")
    for key in ("out", "plot"):
        if key in rep:
            click.echo(f"wrote       {rep[key]}")


def _draw(res: Any, typical_eps: float | None, points: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=150)
    try:
        mine = [{**p, "label": f"{p['label']} {p['attack']}"} for p in points if p["norm"] == res.norm]
        res.plot(ax=ax, typical_eps=typical_eps, runs=mine)
    except BaseException:
        plt.close(fig)
        raise
    return fig
