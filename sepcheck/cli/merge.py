"""``sepcheck merge PIECES... --out results.h5``: combine the pieces of a ``--shard I/N`` array."""

from __future__ import annotations

import click

from ..core.fileio import check_writable
from ._common import emit_json, fmt, json_option


@click.command()
@click.argument("pieces", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="The merged result (HDF5): a separation result, or the complete certify run.")
@json_option
def merge(pieces: tuple[str, ...], out: str, as_json: bool) -> None:
    """Combine the results of `sepcheck separation|certify ... --shard I/N --out piece-I.h5`.

    The pieces must come from the same inputs and options and cover every query exactly
    once (an overlap or a gap names the rows). The merged file equals the result of one run:
    `sepcheck separation ... --out` (or certify) with the same options.
    """
    from ..runs.merge import merge_pieces
    from ..runs.pieces import separation_result

    out_p = check_writable(out, "--out")
    merged = merge_pieces(list(pieces), out_p)
    fp = merged.fingerprint
    rep: dict = {"task": fp["task"], "pieces": len(pieces), "shards": merged.plan.count, "queries": merged.plan.n,
                 "dataset": fp.get("dataset", ""), "norm": fp["norm"], "out": str(out_p)}
    if fp["task"] == "separation":
        res = separation_result(merged)
        rep.update({"separation": res.separation, "r": res.r, "test_separation": res.test_separation,
                    "conflicts": int(res.conflicts.shape[0])})
    if as_json:
        emit_json(rep)
        return
    click.echo(f"merged      {rep['pieces']} pieces, {rep['shards']} shards, {rep['queries']} queries "
               f"({rep['task']}, {rep['dataset']}, {rep['norm']})")
    if "separation" in rep:
        click.echo(f"separation  {fmt(rep['separation'])}  (r {fmt(rep['r'])})")
        if rep["test_separation"] is not None:
            click.echo(f"test-train  {fmt(rep['test_separation'])}")
    click.echo(f"wrote       {rep['out']}")
