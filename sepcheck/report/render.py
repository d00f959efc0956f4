"""The text of a report: report.md (:func:`to_markdown`) and report.html (:func:`to_html`)
from a :class:`~sepcheck.report.model.Report`'s data and figures, with the summary table
(:func:`summary_rows`) and the first rows of the hygiene lists (:func:`hygiene_tables`) they
share. Pure string building: reads nothing but its argument, writes nothing.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .values import NORMS

if TYPE_CHECKING:
    from .model import Report


def _f(x: Any, digits: int = 4) -> str:
    """A number as shown in the tables: ``digits`` decimals, "inf", "–" for None."""
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf"
        return f"{x:.{digits}f}"
    return str(x)


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(quantity, value) rows of the summary table."""
    s = data["summary"]
    rows = [("data set", str(data["dataset"])), ("n (train)", str(data["n"])), ("n (test)", str(data["n_test"])),
            ("dimension", str(data["dim"])), ("classes", str(data["n_classes"]))]
    for norm in NORMS:
        if norm not in s:
            continue
        v = s[norm]
        rows.append((f"{norm} separation (train-train)", _f(v["separation"])))
        rows.append((f"{norm} r = separation / 2", _f(v["r"])))
        if "test_separation" in v:
            rows.append((f"{norm} test-train separation", _f(v["test_separation"])))
        if "drop" in v:
            rows.append((f"{norm} separation after dropping the {v['drop']['k']} closest points",
                         _f(v["drop"]["separation"])))
    lin = s.get("linf", {})
    conf = f"{lin.get('conflicts', 0)} pairs ({lin.get('conflict_points', 0)} points)"
    if "test_conflicts" in lin:
        conf += f"; test-train {lin['test_conflicts']} pairs"
    rows.append(("conflicts (identical inputs, different labels)", conf))
    for norm, e in data["typical_eps"].items():
        if e is not None:
            given = data.get("eps_given", {}).get(norm, False)
            rows.append((f"{'given' if given else 'typical'} ε ({norm})", _f(e)))
            c = data.get("ceiling", {}).get(norm)
            at = _ceiling_at(c, e) if c else None
            if at is not None:
                where = f"ε = {_f(e)}" if at[0] == e else f"the largest grid ε ≤ {_f(e)}, ε = {_f(at[0])}"
                rows.append((f"ceiling at {where} ({norm})", _f(at[1])))
    h = data.get("hygiene", {})
    if "test_train_duplicates" in h:
        rows.append((f"test points with a training point within τ = {_f(h['tau'])} (linf)",
                     f"{h['test_train_duplicates']} ({100 * h['test_train_fraction']['1tau']:.2f} %)"))
    if h:
        rows.append((f"cross-label training pairs within τ = {_f(h['tau'])} (linf)", str(h["cross_label_pairs"])))
        rows.append(("label-noise candidates (closer to another class, linf)", str(h["label_noise_candidates"])))
    return rows


def _ceiling_at(c: dict[str, Any], e: float) -> tuple[float, float] | None:
    """(grid eps, ceiling there) at ``e`` when the grid holds it, else at the largest grid eps
    below it; None when there is none."""
    eps = np.asarray(c["eps"], dtype=np.float64)
    ok = np.flatnonzero(eps <= e)
    return None if ok.size == 0 else (float(eps[ok[-1]]), float(c["accuracy"][ok[-1]]))


#: rows of each hygiene list shown in report.html / report.md (report.json keeps 50)
HYGIENE_ROWS = 10


def hygiene_tables(data: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, first rows) of each non-empty hygiene list, for the HTML and Markdown."""
    h = data.get("hygiene", {})
    tau = _f(h.get("tau"))
    out = []
    for key, title in (("test_train", f"Test-train near-duplicates within τ = {tau} (linf)"),
                       ("cross_label", f"Cross-label training pairs within τ = {tau} (linf)"),
                       ("label_noise", "Label-noise candidates: margin = d(other label) − d(own label) < 0 (linf)")):
        rows = (h.get(key) or {}).get("rows") or []
        if rows:
            out.append((title, rows[:HYGIENE_ROWS]))
    return out


def to_markdown(report: Report) -> str:
    """report.md: the summary table, each figure (PNG, PDF link), the hygiene lists and runs."""
    d = report.data
    lines = [f"# sepcheck report: {d['dataset']}", ""]
    for n in d.get("notes", []):
        lines += [f"> note: {n}", ""]
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(d)]
    lines.append("")
    for f in report.figures:
        lines += [f"## {f.title}", "", f"![{f.title}](figures/{f.name}.png)", "", f.caption,
                  f"([PDF](figures/{f.name}.pdf))", ""]
    for title, rows in hygiene_tables(d):
        cols = list(rows[0])
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        lines += ["| " + " | ".join(_f(r[c]) for c in cols) + " |" for r in rows]
        lines.append("")
    if d.get("runs"):
        lines += ["## Trained runs", "", "| run | norm | ε | attack | robust accuracy | ceiling (its test points) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['label']} | {r['norm']} | {_f(r['eps'])} | {r['attack']} | {_f(r['accuracy'])} | "
                  f"{_f(r['ceiling'])}{' **above**' if r['above'] else ''} |" for r in d["runs"]]
        lines.append("")
    t = d.get("timing", {})
    if "total" in t:
        lines.append(f"Computed in {t['total']:.1f} s. All numbers: report.json.")
    return "\n".join(lines) + "\n"


def to_html(report: Report) -> str:
    """report.html: what :func:`to_markdown` says, as one page that opens from disk."""
    d = report.data
    e = html.escape
    rows = "\n".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in summary_rows(d))
    notes = "".join(f"<p class='note'>note: {e(n)}</p>" for n in d.get("notes", []))
    figs = "\n".join(
        f"<section><h2>{e(f.title)}</h2><img src='figures/{e(f.name)}.png' alt='{e(f.title)}'>"
        f"<p>{e(f.caption)} <a href='figures/{e(f.name)}.pdf'>PDF</a></p></section>"
        for f in report.figures
    )
    for title, hrows in hygiene_tables(d):
        cols = list(hrows[0])
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(_f(r[c]))}</td>" for c in cols) + "</tr>" for r in hrows)
        figs += f"\n<section><h2>{e(title)}</h2><table><tr>{head}</tr>{body}</table></section>"
    runs = ""
    if d.get("runs"):
        body = "".join(f"<tr><td>{e(str(r['label']))}</td><td>{e(r['norm'])}</td><td>{e(_f(r['eps']))}</td>"
                       f"<td>{e(r['attack'])}</td><td>{e(_f(r['accuracy']))}</td>"
                       f"<td>{e(_f(r['ceiling']))}{' <b>above</b>' if r['above'] else ''}</td></tr>"
                       for r in d["runs"])
        runs = ("<section><h2>Trained runs</h2><table><tr><th>run</th><th>norm</th><th>ε</th><th>attack</th>"
                f"<th>robust accuracy</th><th>ceiling (its test points)</th></tr>{body}</table></section>")
    total = d.get("timing", {}).get("total")
    foot = f"<p class='foot'>Computed in {total:.1f} s. All numbers: <a href='report.json'>report.json</a>.</p>" \
        if total is not None else ""
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "img{max-width:100%}.note{color:#955}.foot{color:#777}")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>sepcheck report: "
            f"{e(str(d['dataset']))}</title><style>{style}</style></head><body>\n"
            f"<h1>sepcheck report: {e(str(d['dataset']))}</h1>{notes}\n<table>{rows}</table>\n{figs}\n{runs}\n"
            f"{foot}\n</body></html>\n")


__all__ = ["HYGIENE_ROWS", "hygiene_tables", "summary_rows", "to_html", "to_markdown"]
