"""``sepcheck datasets list|info|prepare``: the registered data sets, what is on disk, and
download + verify + convert with progress."""

from __future__ import annotations

from typing import Any

import click

from ..core.errors import SepcheckError
from ._common import data_options, emit_json, fmt, json_option

_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="Data directory (default $SEPCHECK_DATA or ~/.cache/sepcheck).")


@click.group()
def datasets() -> None:
    """Registered data sets: list them, show one, or prepare (download, verify, convert) one."""


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n}"


@datasets.command("list")
@_DATA_DIR
@json_option
def list_(data_dir: str | None, as_json: bool) -> None:
    """The registered data sets, their shapes, sizes, classes, typical linf eps and state."""
    from ..datasets import available
    from ..datasets.registry import split_status

    rows = []
    for name, info in available().items():
        d = info.to_dict()
        d["status"] = {s: split_status(name, s, data_dir) for s in info.splits}
        rows.append(d)
    if as_json:
        emit_json({"datasets": rows})
        return
    click.echo(f"{'name':<20} {'shape':<10} {'train':>7} {'test':>7} {'classes':>7}  {'eps':<8} state")
    for d in rows:
        splits = d["splits"]
        shape = "x".join(str(s) for s in d["shape"])
        eps = d["eps_text"] or "-"
        state = ", ".join(f"{s} {v}" for s, v in d["status"].items())
        click.echo(f"{d['name']:<20} {shape:<10} {_size(d['sizes'][splits[0]]):>7} {_size(d['sizes'][splits[1]]):>7} "
                   f"{d['n_classes']:>7}  {eps:<8} {state}")


@datasets.command()
@click.argument("name")
@_DATA_DIR
@json_option
def info(name: str, data_dir: str | None, as_json: bool) -> None:
    """Facts about NAME and which of its files are in the data directory."""
    from ..datasets.registry import describe

    d = describe(name, data_dir)
    if as_json:
        emit_json(d)
        return
    click.echo(f"{d['name']}: {d['title']}")
    if d["homepage"]:
        click.echo(f"homepage    {d['homepage']}")
    click.echo(f"shape       {' x '.join(str(s) for s in d['shape'])} (uint8, channels first)"
               if d["name"] != "spiral" else "shape       2 (float64 points)")
    click.echo("sizes       " + ", ".join(f"{s} {_size(n)}" for s, n in d["sizes"].items()))
    click.echo(f"classes     {d['n_classes']}")
    if d["eps"] is not None:
        click.echo(f"typical eps {d['eps_text']} = {fmt(d['eps'])} (linf; {d['eps_source']})")
    if d["directory"]:
        click.echo(f"directory   {d['directory']}")
        click.echo("state       " + ", ".join(f"{s} {v}" for s, v in d["status"].items()))
    for f in d.get("remote_files", []):
        mark = "present" if f["present"] else "missing"
        check = f"md5 {f['md5']}" if f["md5"] else (f"sha256 {f['sha256']}" if f["sha256"] else "no checksum")
        click.echo(f"file        {f['name']} ({mark}; {check}; {f['urls'][0] if f['urls'] else 'no URL'})")
    for note in d["notes"]:
        click.echo(f"note        {note}")


@datasets.command()
@click.argument("name")
@data_options
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Decoding processes (restricted-imagenet; default: all CPUs).")
@json_option
def prepare(name: str, data_dir: str | None, no_download: bool, no_verify: bool, workers: int | None,
            as_json: bool) -> None:
    """Download (when allowed), verify and convert every split of NAME to its HDF5 cache."""
    from ..core.paths import data_dir as resolve_data_dir
    from ..datasets import prepare as prepare_splits
    from ..datasets.loader import collect_notes
    from ..datasets.registry import SOURCES, require_name
    from ..datasets.splitcache import cache_file

    canonical = require_name(name)
    src = SOURCES[canonical]
    options: dict[str, Any] = {}
    if workers is not None:
        if src is None or "workers" not in src.runtime_options:
            raise SepcheckError(f"--workers applies to data sets decoded from image files (restricted-imagenet), "
                                f"not {canonical}")
        options["workers"] = workers
    if src is None:
        summary: dict[str, Any] = {"dataset": canonical, "directory": None, "splits": {}, "notes": [
            "built-in data set: generated on the fly, nothing to prepare"]}
    else:
        with collect_notes() as notes:
            splits = prepare_splits(canonical, data_dir=data_dir, download=not no_download,
                                    verify=not no_verify, **options)
        directory = resolve_data_dir(data_dir) / canonical
        summary = {"dataset": canonical, "directory": str(directory), "notes": notes, "splits": {}}
        for split, data in splits.items():
            meta = data.meta()
            cache = cache_file(directory, split, src.option_tag(src.normalize_options(options)))
            meta["cache"] = str(cache) if cache.is_file() else None
            summary["splits"][split] = meta
    if as_json:
        emit_json(summary)
        return
    for note in summary["notes"]:
        click.echo(f"note: {note}")
    for split, meta in summary["splits"].items():
        shape = "x".join(str(s) for s in meta["shape"])
        state = "verified" if meta["verified"] else "not verified"
        skipped = f", {meta['n_skipped']} skipped" if meta["n_skipped"] else ""
        click.echo(f"{canonical} {split}: {meta['n']} images {shape} ({state}{skipped}) -> "
                   f"{meta['cache'] or 'not cached'}")
