"""``sepcheck hygiene DATASET --tau T``: test-train near-duplicates, cross-label
near-duplicates and label-noise candidates (definitions: :mod:`sepcheck.analysis.hygiene`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..core.errors import SepcheckError
from ..core.fileio import check_writable
from ..engine.options import RADIUS_BACKENDS
from ._common import (
    cli_cache,
    data_options,
    emit_json,
    fmt,
    json_option,
    options_of,
    search_options,
)


@click.command()
@click.argument("dataset")
@click.option("--tau", type=float, required=True,
              help="Near-duplicate radius >= 0 (pixel scale [0, 1] for images unless --raw); closed.")
@click.option("--norm", default="linf", show_default=True, help="linf, l2, l1 or a number p >= 1.")
@click.option("--k", "k", type=int, default=5, show_default=True,
              help="Flag the points whose K nearest neighbours all carry another label.")
@click.option("--top", type=int, default=10, show_default=True, help="Rows of each list to print (and in --json).")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False), default=None,
              help="Write every list in full as CSV files into this folder.")
@click.option("--raw", is_flag=True, help="uint8 data: distances and tau in raw 0-255 units, not [0, 1].")
@search_options(RADIUS_BACKENDS, "the searches of this command")
@click.option("--no-cache", is_flag=True, help="Recompute the training separation even when cached.")
@data_options
@json_option
def hygiene(
    dataset: str, tau: float, norm: str, k: int, top: int, csv_dir: str | None, backend: str, device: str,
    raw: bool, memory_budget: str | None, no_cache: bool, data_dir: str | None, no_download: bool,
    no_verify: bool, as_json: bool,
) -> None:
    """Near-duplicates and label-noise candidates of a data set, exact.

    Lists: test points whose nearest training point (any label) is within TAU; training
    pairs with different labels within TAU; training points closer to another class than to
    their own (margin = d(other label) - d(own label, itself excluded) < 0) or whose K
    nearest neighbours all carry another label, ranked by margin.
    """
    from ..analysis.hygiene import check_tau
    from ..analysis.hygiene import hygiene as run_hygiene
    from ..core.norms import parse_norm
    from ..core.validation import check_positive_int
    from ..datasets import open_dataset
    from ..runs.cache import cached_separation

    t = check_tau(tau)
    opts_ = options_of(backend, device, memory_budget, RADIUS_BACKENDS, "the searches of this command")
    parse_norm(norm)
    check_positive_int(k, "--k")
    if top < 0:
        raise SepcheckError(f"--top {top} is invalid: give a number of rows >= 0")
    budget = opts_.memory_budget
    if csv_dir is not None:
        for name in ("test_train", "cross_label", "label_noise"):
            check_writable(Path(csv_dir) / f"{name}.csv", "--csv")
    ds = open_dataset(dataset, data_dir=data_dir, download=not no_download, verify=not no_verify)
    X, y = ds.X, ds.y
    Xt, yt = (None, None) if ds.test_only else (ds.X_test, ds.y_test)
    opts: dict[str, Any] = {"backend": backend, "device": device, "memory_budget": budget, "progress": True}
    res, _ = cached_separation(X, y, norm=norm, dataset=ds.name, raw=raw, cache=cli_cache(no_cache), **opts)
    rep = run_hygiene(X, y, Xt, yt, tau=t, norm=norm, raw=raw, k=k, dataset=ds.name, result=res, **opts)
    written = [str(p) for p in rep.to_csv(csv_dir)] if csv_dir is not None else []
    if as_json:
        out = rep.to_dict(top=top)
        out["notes"] = list(ds.notes)
        out["csv"] = written
        emit_json(out)
        return
    _print_human(rep, top, list(ds.notes), written)


def _print_human(rep: Any, top: int, notes: list[str], written: list[str]) -> None:
    s = rep.summary()
    unit = {"pixel": " (pixel scale, [0, 1])", "raw": " (raw units, 0-255)"}.get(rep.units, "")
    for note in notes:
        click.echo(f"note: {note}")
    click.echo(f"dataset     {rep.dataset}  ({rep.norm}{unit}, tau={fmt(rep.tau)})")
    if rep.test_train is not None:
        frac = "  ".join(f"{k}: {fmt(100 * v, 2)}%" for k, v in s["test_train_fraction"].items() if v is not None)
        click.echo(f"test-train  {len(rep.test_train)} of {rep.n_test} test points have a training point "
                   f"within tau  ({frac})")
        _rows(rep.test_train, top, ("test_index", "train_index", "test_label", "train_label", "distance", "same_label"))
    click.echo(f"cross-label {len(rep.cross_label)} training pairs with different labels within tau")
    _rows(rep.cross_label, top, ("i", "j", "label_i", "label_j", "distance"))
    click.echo(f"label noise {len(rep.label_noise)} candidates ({s['negative_margin']} with margin < 0"
               + (f"; or all {rep.k} nearest of another label)" if rep.k is not None else ")"))
    cols = ("index", "label", "margin", "d_other", "other_label", "d_same", "knn_other")
    _rows(rep.label_noise, top, tuple(c for c in cols if c in rep.label_noise.columns))
    for path in written:
        click.echo(f"wrote       {path}")


def _rows(table: Any, top: int, cols: tuple[str, ...]) -> None:
    if not len(table) or top == 0:
        return
    click.echo("    " + "  ".join(f"{c:>11}" for c in cols))
    for rec in table.head(top).to_records():
        cells = [fmt(rec[c]) if isinstance(rec[c], float) else str(rec[c]) for c in cols]
        click.echo("    " + "  ".join(f"{c:>11}" for c in cells))
    if len(table) > top:
        click.echo(f"    ... {len(table) - top} more (--top, --csv)")
