"""The evaluation table (Markdown, CSV) and the plot of adversarial accuracy against the
Lipschitz estimate, one point per run."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..core.fileio import atomic_write

#: (key, header) of the paper's table, then the bound columns
PAPER_COLUMNS = [("train_acc", "train acc"), ("test_acc", "test acc"), ("adv_test_acc", "adv test acc"),
                 ("adv_test_acc_autoattack", "AutoAttack acc"), ("test_lipschitz", "test lipschitz"),
                 ("test_lipschitz_paper_code", "test lipschitz (paper code)")]
#: 1/r is the theorem's per-class constant (each score 1 - d(x, X_i)/r is 1/r-Lipschitz);
#: "lip / ref" divides a model's estimate by the reference classifier's, same estimator
BOUND_COLUMNS = [("separation", "separation"), ("r", "r"), ("inv_r", "1/r (per class)"),
                 ("lipschitz_vs_reference", "lip / ref")]
#: columns shown only when some row has them
_OPTIONAL = {"adv_test_acc_autoattack", "test_lipschitz", "test_lipschitz_paper_code", "lipschitz_vs_reference"}
_PERCENT = {"train_acc", "test_acc", "adv_test_acc", "adv_test_acc_autoattack"}
_NORM_SYMBOL = {"linf": "ℓ∞", "l2": "ℓ₂"}


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if key in _PERCENT:
        return f"{100.0 * float(value):.2f}"
    if key in ("separation", "r"):
        return f"{float(value):.4f}"
    return f"{float(value):.2f}"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells: one row per run, then one reference row per bound."""
    rows = report["rows"]
    multi = len({(r["dataset"], r["norm"], r["eps"]) for r in rows}) > 1
    has_bound = any("r" in r for r in rows)
    cols = [(k, h) for k, h in PAPER_COLUMNS + (BOUND_COLUMNS if has_bound else [])
            if k not in _OPTIONAL or any(r.get(k) is not None for r in rows)]
    header = (["dataset", "eps"] if multi else []) + ["method"] + [h for _, h in cols]
    out = []
    for r in rows:
        label = r["label"] + ("" if r.get("finished", True) else " (unfinished)")
        cells = ([r["dataset"], f"{r['eps']:g}"] if multi else []) + [label]
        out.append(cells + [_cell(k, r.get(k)) for k, _ in cols])
    for b in report.get("bounds", []):
        ref = b.get("reference") or {}
        if not ref.get("available"):
            continue
        cells = ([b["dataset"], f"{b['eps']:g}"] if multi else []) + ["LipschitzNN (reference, certified)"]
        values = {"train_acc": None, "test_acc": ref["test_acc"], "adv_test_acc": ref["certified_test_acc"],
                  "adv_test_acc_autoattack": ref["certified_test_acc"],
                  "test_lipschitz": ref.get("test_lipschitz"),
                  "test_lipschitz_paper_code": ref.get("test_lipschitz_paper_code"),
                  "separation": b["separation"], "r": b["r"], "inv_r": b["inv_r"],
                  "lipschitz_vs_reference": 1.0 if ref.get("test_lipschitz") or ref.get("test_lipschitz_paper_code")
                  else None}
        out.append(cells + [_cell(k, values.get(k)) for k, _ in cols])
    return header, out


def to_markdown(report: dict[str, Any]) -> str:
    """The table in Markdown, with a line on the settings and footnotes."""
    header, rows = table_rows(report)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = []
    if report.get("settings", {}).get("description"):
        notes.append(f"Attack and estimate: {report['settings']['description']}.")
    if any(b.get("reference", {}).get("available") for b in report.get("bounds", [])):
        notes.append("Reference row: the 1-nearest-neighbour classifier rounded from the theorem's scores "
                     "1 - d(x, X_i)/r (each 1/r-Lipschitz: 1/r is a per-class constant); its adv test acc "
                     "(and AutoAttack acc, where shown) is the accuracy certified at eps (a guarantee that no "
                     "attack can lower; no attack is run on it) and its test lipschitz is "
                     "the same estimator as the models' applied to its torch module (all C scores, "
                     "l1 over classes), so the columns compare like with like.")
    for b in report.get("bounds", []):
        ref = b.get("reference") or {}
        if ref and not ref.get("available"):
            notes.append(f"Reference row unavailable: {ref.get('note')}.")
    if any("r" in r for r in report["rows"]):
        notes.append("separation and r: train-train, in the threat model's norm; lip / ref is a model's "
                     "test lipschitz divided by the reference row's, both by the same estimator.")
    for n in report.get("notes", []):
        notes.append(f"Note: {n}.")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def to_csv(report: dict[str, Any]) -> str:
    header, rows = table_rows(report)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


_COLORS = {"natural": "#4C72B0", "gr": "#55A868", "llr": "#8172B2", "at": "#C44E52"}
_TRADES_SHADES = ("#F2B279", "#DD8452", "#B5581D", "#7F3A0E")
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "h")


def _style(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(colour, marker) per run: a colour per method (TRADES darker with larger beta), a
    distinct marker per run."""
    betas = sorted({float((r.get("params") or {}).get("beta") or 0) for r in rows if r["method"] == "trades"})
    out = []
    for i, r in enumerate(rows):
        if r["method"] == "trades":
            b = float((r.get("params") or {}).get("beta") or 0)
            color = _TRADES_SHADES[min(betas.index(b), len(_TRADES_SHADES) - 1)]
        else:
            color = _COLORS.get(r["method"], "#333333")
        out.append((color, _MARKERS[i % len(_MARKERS)]))
    return out


def plot(report: dict[str, Any], ax: Any = None) -> Any:
    """Adversarial test accuracy against the test Lipschitz estimate, one point per run (named
    in the legend); a dotted line at the theorem's constant 1/r and a star for the reference
    classifier (its certified accuracy, at 1/r)."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 3.6), dpi=200)
    rows = report["rows"]
    key = next((k for k in ("test_lipschitz", "test_lipschitz_paper_code") if rows[0].get(k) is not None),
               "test_lipschitz")
    xs = [r[key] for r in rows]
    for r, (color, marker) in zip(rows, _style(rows), strict=True):
        ax.scatter([r[key]], [100.0 * r["adv_test_acc"]], s=42, color=color, marker=marker,
                   zorder=3, edgecolor="black", linewidth=0.4, label=r["label"])
    for b in report.get("bounds", []):
        if not b.get("inv_r"):
            continue
        xs.append(b["inv_r"])
        ax.axvline(b["inv_r"], color="#555555", linestyle=":", linewidth=0.9,
                   label=f"1/r = {b['inv_r']:.2f} (theorem, per class)")
        ref = b.get("reference") or {}
        if ref.get("available"):
            x_ref = ref.get(key) or b["inv_r"]
            xs.append(x_ref)
            ax.scatter([x_ref], [100.0 * ref["certified_test_acc"]], marker="*", s=110, color="#222222",
                       zorder=4, label="1-NN, certified")
    positive = [x for x in xs if x and x > 0]
    if positive and max(positive) / min(positive) > 8:
        ax.set_xscale("log")
    ax.margins(x=0.08)
    norm = _NORM_SYMBOL.get(rows[0]["norm"], rows[0]["norm"])
    protocol = "ascent" if key == "test_lipschitz" else "paper-code"
    ax.set_xlabel(f"test Lipschitz estimate, {protocol} (‖Δ logits‖₁ / ‖Δx‖{norm[1:]})")
    ax.set_ylabel("adversarial test accuracy (%, PGD)")
    ax.set_ylim(-3, 103)
    ax.set_title(f"{rows[0]['dataset']}, {norm} ε = {rows[0]['eps']:g}", fontsize=10)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.figure.tight_layout()
    return ax


def save_plot(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ax = plot(report)
    out = atomic_write(path, lambda tmp: ax.figure.savefig(tmp, format="png"))
    plt.close(ax.figure)
    return out


__all__ = ["table_rows", "to_markdown", "to_csv", "plot", "save_plot", "write_text"]
