"""``sepcheck certify DATASET`` and ``sepcheck plot-classifier DATASET``: the theorem's
1/r-Lipschitz nearest-neighbour classifier, its certified accuracy and its picture."""

from __future__ import annotations

from typing import Any

import click

from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, check_writable
from ..engine.options import BY_CLASS_BACKENDS, SearchOptions
from ._common import (
    cli_cache,
    data_options,
    echo_shards,
    emit_json,
    fmt,
    json_option,
    options_of,
    search_options,
    shard_options,
    shard_summary,
    sharded_run,
)

_UNITS = {"pixel": "pixel scale, [0, 1]", "raw": "raw units, 0-255", "data": "data units"}


def _options(backend: str, device: str, memory_budget: str | None = None, **more: Any) -> SearchOptions:
    """The command's validated search options (backends of a per-class search)."""
    return options_of(backend, device, memory_budget, BY_CLASS_BACKENDS, "certify", **more)


@click.command()
@click.argument("dataset")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True, help="Norm of the attack and of the classifier.")
@click.option(
    "--eps", "eps", type=float, multiple=True,
    help="Attack radius (repeatable). Default: the data set's typical linf eps (if known) and r.",
)
@search_options(BY_CLASS_BACKENDS, "the searches")
@click.option("--raw", is_flag=True, help="uint8 data: distances and eps in raw 0-255 units, not [0, 1].")
@click.option("--no-cache", is_flag=True, help="Recompute the training separation even when cached.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Keep the per-point searches (HDF5; resumable with --resume).")
@shard_options
@data_options
@json_option
def certify(
    dataset: str,
    norm: str,
    eps: tuple[float, ...],
    backend: str,
    device: str,
    raw: bool,
    memory_budget: str | None,
    no_cache: bool,
    out: str | None,
    resume: bool,
    shard: str | None,
    shard_rows: int | None,
    data_dir: str | None,
    no_download: bool,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Certified accuracy of the 1/r-Lipschitz 1-NN classifier of Yang et al. (2020).

    Fits on the training split (r = separation / 2, reusing a cached separation) and
    certifies the test split: a test point counts at eps when it is classified correctly
    and (d_other - d_own) / 2 > eps. DATASET is a registered name, a .npz/.h5 file with
    X, y, X_test, y_test (an .h5 file is streamed within --memory-budget), a directory of
    X.npy, y.npy, X_test.npy, y_test.npy (streamed too), or a directory of MNIST-format
    IDX files.
    """
    from ..analysis.certify import parse_eps
    from ..datasets import open_dataset

    opts = _options(backend, device, memory_budget, raw=raw)
    eps_given = parse_eps(list(eps)) if eps else ()
    ds = open_dataset(dataset, data_dir=data_dir, download=not no_download, verify=not no_verify, stream=True)
    if not ds.has_test:
        raise SepcheckError(
            f"data set {ds.name!r} has no test split: certify needs one (a .npz/.h5 with X_test "
            "and y_test, or IDX files with t10k and train)"
        )
    from ..core.process_group import env_world_size
    from ..runs.plan import parse_shard
    from ..runs.run import check_run_options

    check_run_options(out, resume, parse_shard(shard))
    out_p = check_writable(out, "--out") if out else None
    typical = [ds.eps] if (ds.eps is not None and norm == "linf" and not raw) else []
    eps_of = (tuple(eps_given), tuple(typical))
    if out_p is not None or shard_rows is not None or env_world_size() > 1:
        done = _sharded(ds, norm, opts, (out_p, resume, shard, shard_rows), as_json, eps_of)
        if done is None:
            return  # another rank reports, or a --shard group's piece was written and reported
        res, eps_source, n_train, cached, shards = done
    else:
        res, eps_source, n_train, cached = _in_memory(ds, norm, opts, no_cache, eps_of)
        shards = None
    summary: dict[str, Any] = res.to_dict()
    summary.update(
        {
            "dataset": ds.name,
            "n_train": n_train,
            "n_test": res.n,
            "eps_source": eps_source,
            "typical_eps": ds.eps,
            "cached": cached,
            "backend": backend,
            "notes": list(ds.notes),
        }
    )
    if shards is not None:
        summary["shards"] = shards
    if out_p is not None:
        summary["out"] = str(out_p)
    if as_json:
        emit_json(summary)
    else:
        _print_human(summary)


def _eps_list(given: tuple, typical: tuple, r: float) -> tuple[Any, str]:
    """(eps values, 'given' or 'default'): the user's, else the data set's typical eps and r."""
    from ..analysis.certify import parse_eps

    return (given, "given") if given else (parse_eps([*typical, r]), "default")


def _sharded(ds: Any, norm: str, opts: SearchOptions, sharding: tuple, as_json: bool,
             eps_of: tuple) -> tuple[Any, str, int, bool, dict] | None:
    """Both searches in journaled shards (resumable with --out; shared by the torchrun
    ranks): (certification, eps source, training rows, cached, shards report), or None when
    this process reports nothing more."""
    from ..runs.job import certify_job
    from ..runs.pieces import certification, save_piece
    from ..runs.run import finish_output

    out_p, resume, shard, shard_rows = sharding
    job = certify_job(ds.X, ds.y, ds.X_test, ds.y_test, norm=norm, dataset=ds.name, shard_rows=shard_rows,
                      options=opts)
    run = sharded_run(job, out_p, resume, shard, as_json, ds.name)
    if run is None:
        return None
    piece = run.piece
    eps_list, eps_source = _eps_list(*eps_of, float(piece.arrays["train.dist"].min()) / 2.0)
    res = certification(piece, eps_list, dataset=ds.name)
    finish_output(run, lambda path: save_piece(piece, path))
    return res, eps_source, len(ds.y), False, shard_summary(run)  # ds.X may be a streamed source's spec


def _in_memory(ds: Any, norm: str, opts: SearchOptions, no_cache: bool, eps_of: tuple) -> tuple[Any, str, int, bool]:
    """The classifier fitted (its separation cached) and certified: (certification, eps
    source, training rows, separation from the cache)."""
    from ..classifier import LipschitzNNClassifier

    clf = LipschitzNNClassifier(
        norm=norm, backend=opts.backend, device=opts.device, raw=opts.raw, memory_budget=opts.memory_budget,
        progress=True, cache=cli_cache(no_cache), dataset=ds.name,
    ).fit(ds.X, ds.y)
    eps_list, eps_source = _eps_list(*eps_of, clf.r_)
    res = clf.certify(ds.X_test, ds.y_test, eps_list)
    return res, eps_source, int(clf.X_train_.shape[0]), clf.separation_from_cache_


def _print_human(rep: dict[str, Any]) -> None:
    for note in rep["notes"]:
        click.echo(f"note: {note}")
    unit = _UNITS.get(rep["units"], rep["units"])
    click.echo(
        f"dataset     {rep['dataset']}  ({rep['norm']}, {unit}); train n={rep['n_train']}, "
        f"test n={rep['n_test']}, classes {rep['n_classes']}"
    )
    sep = f"separation  {fmt(rep['separation'])}  (training set"
    click.echo(sep + ("; cached)" if rep["cached"] else ")"))
    click.echo("")
    header = f"{'eps':>8}  {'clean acc':>9}  {'certified acc':>13}  {'r':>8}  {'1/r':>9}  {'within r':>8}"
    click.echo(header)
    for row in rep["rows"]:
        click.echo(
            f"{row['eps']:>8.4g}  {fmt(row['accuracy']):>9}  {fmt(row['certified_accuracy']):>13}  "
            f"{fmt(row['r']):>8}  {fmt(row['lipschitz_constant']):>9}  {fmt(row['within_r']):>8}"
        )
    click.echo("")
    click.echo(
        "certified: correct and (d_other - d_own) / 2 > eps; within r: test points at distance "
        "<= r from a training point of their own class"
    )
    if "shards" in rep:
        echo_shards(rep)
    if "out" in rep:
        click.echo(f"wrote       {rep['out']}")


@click.command("plot-classifier")
@click.argument("dataset")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG (or .pdf/.svg) to write.")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default="linf", show_default=True, help="Norm of the classifier.")
@click.option("--resolution", type=int, default=600, show_default=True, help="Grid points per axis.")
@click.option("--test/--no-test", "show_test", default=False, show_default=True, help="Also draw the test points (hollow).")
@search_options(BY_CLASS_BACKENDS, "the searches", memory=False)
@click.option("--no-cache", is_flag=True, help="Recompute the training separation even when cached.")
@data_options
@json_option
def plot_classifier(
    dataset: str,
    out: str,
    norm: str,
    resolution: int,
    show_test: bool,
    backend: str,
    device: str,
    no_cache: bool,
    data_dir: str | None,
    no_download: bool,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Picture of the theorem on 2-D data (e.g. spiral): the classifier's score as a heat
    map, its decision boundary and the radius r."""
    from ..classifier import LipschitzNNClassifier
    from ..core.validation import as_features
    from ..datasets import open_dataset

    opts = _options(backend, device)
    if not 10 <= resolution <= 4000:
        raise SepcheckError(f"--resolution {resolution} is invalid: give 10 to 4000 grid points per axis")
    out_p = check_writable(out, "--out")
    fmt_ext = out_p.suffix.lower().lstrip(".") or "png"
    if fmt_ext not in ("png", "pdf", "svg"):
        raise SepcheckError(f"--out {out_p} has an unknown image type: use .png, .pdf or .svg")
    ds = open_dataset(dataset, data_dir=data_dir, download=not no_download, verify=not no_verify)
    X = as_features(ds.X, "X")
    if X.shape[1] != 2:
        raise SepcheckError(
            f"plot-classifier draws 2-D data but {ds.name!r} has {X.shape[1]} features per row: "
            "use a 2-D data set such as spiral"
        )
    if X.dtype.kind != "f":
        raise SepcheckError(f"plot-classifier needs float coordinates but {ds.name!r} is {X.dtype}")
    clf = LipschitzNNClassifier(
        norm=norm, backend=opts.backend, device=opts.device, cache=cli_cache(no_cache), dataset=ds.name
    ).fit(X, ds.y)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 4.4), dpi=200)
    test = (ds.X_test, ds.y_test) if (show_test and ds.has_test) else (None, None)
    clf.plot(ax=ax, resolution=resolution, X_test=test[0], y_test=test[1])
    atomic_write(out_p, lambda tmp: fig.savefig(tmp, format=fmt_ext, bbox_inches="tight"))
    plt.close(fig)
    summary = {
        "dataset": ds.name,
        "norm": clf.norm_,
        "separation": clf.separation_,
        "r": clf.r_,
        "lipschitz_constant": clf.lipschitz_constant_,
        "out": str(out_p),
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"dataset     {ds.name}  ({clf.norm_})")
        click.echo(f"r           {fmt(clf.r_)}  (separation / 2); 1/r = {fmt(clf.lipschitz_constant_)}")
        click.echo(f"wrote       {out_p}")
