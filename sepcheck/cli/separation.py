"""``sepcheck separation DATASET``: train-train (and test-train) separation of a data set."""

from __future__ import annotations

from typing import Any

import click

from ..core.errors import SepcheckError
from ..core.fileio import check_writable
from ..core.norms import parse_norm
from ..engine.options import BACKENDS
from ._common import (
    cli_cache,
    data_options,
    echo_shards,
    emit_json,
    fmt,
    json_option,
    options_of,
    save_figure,
    search_options,
    shard_options,
    shard_summary,
    sharded_run,
)

QUANTILES = (0.01, 0.1, 0.5, 0.9)


def _arrays_for_split(ds: Any, split: str) -> tuple[Any, Any, Any, Any]:
    return ds.split_arrays(split)


@click.command()
@click.argument("dataset")
@click.option("--norm", default="linf", show_default=True, help="linf, l2, l1 or a number p >= 1.")
@click.option(
    "--split",
    type=click.Choice(["train", "test", "both"]),
    default="train",
    show_default=True,
    help="train: train-train; test: test-test; both: train-train and test-train.",
)
@click.option("--eps", type=float, default=None, help="Attack radius: report separation / (2 eps).")
@search_options(BACKENDS, "the search")
@click.option("--raw", is_flag=True, help="uint8 data: distances in raw 0-255 units, not [0, 1].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Save the result (HDF5); finished shards are journaled in FILE.parts/ meanwhile (--resume).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Histogram PNG.")
@click.option("--no-cache", is_flag=True, help="Recompute even when a cached result exists.")
@click.option("--drop", type=int, default=0, show_default=True,
              help="Also report the separation after dropping the K training points closest to another label, "
              "recomputed among the rest (the paper: SVHN 4, Restricted ImageNet 6).")
@shard_options
@data_options
@json_option
def separation(
    dataset: str,
    norm: str,
    split: str,
    eps: float | None,
    backend: str,
    device: str,
    raw: bool,
    memory_budget: str | None,
    out: str | None,
    plot_path: str | None,
    no_cache: bool,
    drop: int,
    resume: bool,
    shard: str | None,
    shard_rows: int | None,
    data_dir: str | None,
    no_download: bool,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Distance from every point to the nearest differently labelled point, and its minimum.

    DATASET is a registered name (see `sepcheck datasets list`), a .npz/.h5 file with X, y
    (and X_test, y_test), a directory of X.npy, y.npy (X_test.npy, y_test.npy), a directory
    of MNIST-format IDX files, or an ImageFolder tree. Features in an .h5 file or .npy files
    are streamed from disk within --memory-budget.
    """
    from ..datasets import open_dataset

    parse_norm(norm)
    opts = options_of(backend, device, memory_budget, raw=raw)
    if eps is not None and not eps > 0:
        raise SepcheckError(f"--eps {eps} is invalid: give an attack radius > 0")
    from ..core.process_group import env_world_size
    from ..runs.plan import parse_shard
    from ..runs.run import check_run_options

    check_run_options(out, resume, parse_shard(shard))
    out_p = check_writable(out, "--out") if out else None
    plot_p = check_writable(plot_path, "--plot") if plot_path else None
    sharded = out_p is not None or shard_rows is not None or env_world_size() > 1

    ds = open_dataset(dataset, data_dir=data_dir, download=not no_download, verify=not no_verify, stream=True)
    X, y, Xt, yt = _arrays_for_split(ds, split)
    done = _search(ds, (X, y, Xt, yt), norm, opts, no_cache, (sharded, out_p, resume, shard, shard_rows), as_json)
    if done is None:
        return  # another rank reports, or a --shard group's piece was written and reported
    res, cached, info, run = done
    ratio_eps = eps if eps is not None else ds.eps
    summary = _summary(res, ds, split, eps, ratio_eps, cached, info)
    if run is not None:
        summary["shards"] = shard_summary(run)
    if drop:
        summary["drop"] = _after_drop(X, y, drop, norm, res, opts)
    _write(summary, res, run, out_p, plot_p, ratio_eps)
    if as_json:
        emit_json(summary)
    else:
        _print_human(summary)


def _search(ds: Any, arrays: tuple, norm: str, opts: Any, no_cache: bool, sharding: tuple,
            as_json: bool) -> tuple[Any, bool, dict[str, Any], Any] | None:
    """(result, came from the cache, engine info, the sharded run or None): the journaled
    sharded search when ``sharding`` asks for it (no cache; under torchrun the ranks share the
    shards), else the cached one; None when this process reports nothing more."""
    from ..runs.cache import cached_separation

    X, y, Xt, yt = arrays
    sharded, out_p, resume, shard, shard_rows = sharding
    if not sharded:
        info: dict[str, Any] = {}
        res, cached = cached_separation(X, y, Xt, yt, norm=norm, dataset=ds.name, cache=cli_cache(no_cache),
                                        options=opts.with_(progress=True), info=info)
        return res, cached, info, None
    from ..runs.job import separation_job
    from ..runs.pieces import separation_result

    job = separation_job(X, y, Xt, yt, norm=norm, dataset=ds.name, shard_rows=shard_rows, options=opts)
    run = sharded_run(job, out_p, resume, shard, as_json, ds.name)
    if run is None:
        return None
    return separation_result(run.piece, ds.name), False, dict(job.info), run


def _after_drop(X: Any, y: Any, drop: int, norm: str, res: Any, opts: Any) -> dict[str, Any]:
    """The ``drop`` entry of the report: the separation after dropping the ``drop`` training
    points closest to another label."""
    from ..analysis.separation import separation_after_drop

    if drop < 0 or drop >= res.n:
        raise SepcheckError(f"--drop {drop} is invalid: give a number of training points from 0 to {res.n - 1}")
    kept, dropped = separation_after_drop(X, y, drop, norm=norm, result=res, options=opts)
    return {"k": int(drop), "dropped": [int(i) for i in dropped], "separation": kept.separation, "r": kept.r,
            "kth_smallest": res.robust_separation(int(drop))}


def _write(summary: dict[str, Any], res: Any, run: Any, out_p: Any, plot_p: Any, ratio_eps: float | None) -> None:
    """--out and --plot, noted in ``report``; the figure is drawn before anything is written
    (a plot that fails leaves no --out)."""
    from ..runs.run import finish_output

    fig = _draw_plot(res, ratio_eps) if plot_p is not None else None
    if run is not None:
        finish_output(run, res.save)  # the result, then the journal removed
    elif out_p is not None:
        res.save(out_p)
    if out_p is not None:
        summary["out"] = str(out_p)
    if fig is not None:
        save_figure(fig, plot_p)
        summary["plot"] = str(plot_p)


def _summary(res: Any, ds: Any, split: str, eps: float | None, ratio_eps: float | None,
            cached: bool, info: dict) -> dict[str, Any]:
    from ..analysis.separation import ratio_to_eps

    rep = res.summary(QUANTILES)
    rep.update(
        {
            "dataset": ds.name,
            "split": split,
            "pairs": {"train": "train-train", "test": "test-test", "both": "train-train, test-train"}[split],
            "eps": eps,
            "typical_eps": ds.eps,
            "cached": cached,
            "backend": info.get("backend", "cache" if cached else None),
            "l2_path": info.get("l2_path"),  # which exact l2 path ran (None: not l2 / cached)
            "streamed": bool(info.get("streamed", False)),
            "notes": list(ds.notes),
        }
    )
    if ratio_eps is not None:
        rep["ratio"] = ratio_to_eps(res.separation, ratio_eps)
        if res.test_separation is not None:
            rep["test_ratio"] = ratio_to_eps(res.test_separation, ratio_eps)
    return rep


def _print_human(rep: dict[str, Any]) -> None:
    unit = {"pixel": " (pixel scale, [0, 1])", "raw": " (raw units, 0-255)"}.get(rep["units"], "")
    for note in rep["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"dataset     {rep['dataset']}  ({rep['pairs']}, {rep['norm']}{unit})")
    click.echo(f"points      n={rep['n']}" + (f", n_test={rep['n_test']}" if "n_test" in rep else ""))
    click.echo(f"classes     {rep['n_classes']}")
    click.echo(f"dimension   {rep['dim']}")
    click.echo(f"separation  {fmt(rep['separation'])}")
    click.echo(f"r           {fmt(rep['r'])}  (separation / 2)")
    if "test_separation" in rep:
        click.echo(f"test-train  {fmt(rep['test_separation'])}")
    q = "  ".join(f"q{float(k) * 100:g}%={fmt(v)}" for k, v in rep["quantiles"].items())
    click.echo(f"quantiles   {q}")
    if "test_quantiles" in rep:
        tq = "  ".join(f"q{float(k) * 100:g}%={fmt(v)}" for k, v in rep["test_quantiles"].items())
        click.echo(f"test quant. {tq}")
    if "drop" in rep:
        d = rep["drop"]
        click.echo(f"drop {d['k']:<6} {fmt(d['separation'])}  (separation of the rest after dropping the {d['k']} "
                   f"closest points, rows {d['dropped'][:10]}{' ...' if d['k'] > 10 else ''}; r={fmt(d['r'])})")
    conf = (f"conflicts   {rep['conflicts']} pairs, {rep['conflict_points']} points "
            "(identical inputs with different labels)")
    if "test_conflicts" in rep:
        conf += f"; test-train {rep['test_conflicts']} pairs, {rep['test_conflict_points']} test points"
    click.echo(conf)
    if rep.get("typical_eps") is not None:
        click.echo(f"typical eps {fmt(rep['typical_eps'])}  (linf, literature)")
    if "ratio" in rep:
        e = rep["eps"] if rep["eps"] is not None else rep["typical_eps"]
        line = f"sep / 2eps  {fmt(rep['ratio'], 2)}  (eps={fmt(e)})"
        if "test_ratio" in rep:
            line += f"; test-train {fmt(rep['test_ratio'], 2)}"
        click.echo(line)
    if rep["cached"]:
        click.echo("(cached result)")
    if "shards" in rep:
        echo_shards(rep)
    for key in ("out", "plot"):
        if key in rep:
            click.echo(f"wrote       {rep[key]}")


def _draw_plot(res: Any, eps: float | None) -> Any:
    """The histogram figure (one panel, two with a test split), not yet written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if res.test_distances is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.2), dpi=150, squeeze=False)
    try:
        res.plot(ax=axes[0, 0], eps=eps)
        if panels == 2:
            res.plot(ax=axes[0, 1], eps=eps, test=True)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig

