"""Benchmark: the robust-accuracy ceiling curve (20 radii, linf and l2) on real MNIST 60 000 and
CIFAR-10 JPEG 50 000 training images, cold (no cache), where the time goes.

Each curve is one :func:`sepcheck.analysis.ceiling.robust_ceiling` call on the CPU: the exact nearest
different-label distance of every point (``nearest_other``), one exact radius search at
2 max(eps) among the points within that distance of another label (only they can conflict),
then per eps the conflict graph, its components, matchings and integer programs. The grids
(pixel scale [0, 1]) go from 0 past where conflicts begin (separation / 2) and, for linf, to
0.5, where every pair of different labels conflicts (the ceiling is the largest class share):

- MNIST linf 0..0.3 by 0.05, 0.36..0.49 by ~0.012, and 0.5 (typical eps 0.1, 0.3; separation
  0.737: conflicts from eps 0.37; at 0.5 every pair conflicts);
- MNIST l2 0..2.5 (typical 1.5-2; separation 2.40: conflicts from 1.2);
- CIFAR-10 linf 0..0.16 (typical 8/255 = 0.031; conflicts from ~0.1);
- CIFAR-10 l2 0..2 (typical 0.5).

Arrays: /tmp/bench_local/{mnist,cifar10}.npz (``python benchmarks/make_bench_arrays.py``
writes them). Results: benchmarks/results/bench_ceiling.json and bench_ceiling.md.

    python benchmarks/bench_ceiling.py [--cases mnist-linf,mnist-l2,cifar-linf,cifar-l2] [--time-limit S]
        [--arrays DIR] [--out DIR]
    python benchmarks/bench_ceiling.py --smoke [--out DIR]     # tiny arrays, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import _smoke
import numpy as np
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ARRAYS = Path("/tmp/bench_local")

#: case -> (file, norm, eps grid)
CASES = {
    "mnist-linf": ("mnist", "linf", np.r_[np.linspace(0.0, 0.3, 7), np.linspace(0.36, 0.49, 12), 0.5]),
    "mnist-l2": ("mnist", "l2", np.linspace(0.0, 2.5, 20)),
    "cifar-linf": ("cifar10", "linf", np.linspace(0.0, 0.16, 20)),
    "cifar-l2": ("cifar10", "l2", np.linspace(0.0, 2.0, 20)),
}


def run_case(case: str, time_limit: float, arrays: Path = ARRAYS) -> dict:
    from sepcheck.analysis.ceiling import robust_ceiling

    name, norm, grid = CASES[case]
    with np.load(arrays / f"{name}.npz") as z:
        X, y = z["X_train"], z["y_train"]
    load0 = [round(v, 2) for v in os.getloadavg()]
    t0, c0 = time.perf_counter(), time.process_time()
    res = robust_ceiling(X, y, grid, norm=norm, time_limit=time_limit, device="cpu", dataset=name)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    solve = [d["seconds"] for d in res.details]
    return {
        "case": case, "dataset": name, "n": int(X.shape[0]), "norm": norm, "time_limit": time_limit,
        "seconds": wall, "cpu_seconds": cpu, "nearest_seconds": res.extra["nearest_seconds"],
        "radius_seconds": res.extra["radius_seconds"], "graph_seconds": float(sum(solve)),
        "searched_points": res.extra["searched_points"], "pairs": res.extra["pairs"],
        "load_before": load0, "load_after": [round(v, 2) for v in os.getloadavg()],
        "curve": res.to_dict(sacrificed=False),
    }


def markdown(rows: list[dict], m: dict) -> str:
    out = ["# Robust-accuracy ceiling: 20 radii per curve, CPU", "", machine_line(m),
           "Shared with other jobs (see the load averages); cold (no "
           "cache); wall-clock seconds, and the CPU seconds of the process (all threads).", "",
           "| case | n | seconds | CPU seconds | nearest_other | radius search (points, pairs) | graphs | "
           "load before -> after |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        out.append(f"| {r['case']} | {r['n']} | {r['seconds']:.1f} | {r.get('cpu_seconds', float('nan')):.1f} | "
                   f"{r['nearest_seconds']:.1f} | "
                   f"{r['radius_seconds']:.1f} ({r['searched_points']}, {r['pairs']}) | {r['graph_seconds']:.1f} | "
                   f"{r['load_before']} -> {r['load_after']} |")
    for r in rows:
        c = r["curve"]
        out += ["", f"## {r['case']}: {c['n_points']} points, largest class {c['class_share']:.4f}", "",
                "| eps | ceiling | exact / bounds | edges | components | methods | seconds |",
                "| ---: | ---: | --- | ---: | ---: | --- | ---: |"]
        for i, e in enumerate(c["eps"]):
            d = c["details"][i]
            how = "exact" if c["exact"][i] else f"[{c['accuracy'][i]:.4f}, {c['upper'][i]:.4f}]"
            methods = ", ".join(f"{k} {v}" for k, v in d["components"].items() if v) or d.get("shortcut", "-")
            out.append(f"| {e:.4f} | {c['accuracy'][i]:.4f} | {how} | {c['n_edges'][i]} | {c['n_components'][i]} | "
                       f"{methods} | {d['seconds']:.2f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per integer program")
    ap.add_argument("--arrays", type=Path, default=ARRAYS, help="folder with mnist.npz and cifar10.npz")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:  # the four curves (20 radii each) on 60 tiny rows
        args.out = _smoke.out_dir(args.out, "bench_ceiling")
        args.arrays, args.time_limit = _smoke.write_arrays(args.out / "arrays", n_train=60, n_test=20), 2.0
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    out_json = out / "bench_ceiling.json"
    old = json.loads(out_json.read_text()) if out_json.exists() else []
    rows = {r["case"]: r for r in (old["rows"] if isinstance(old, dict) else old)}  # a list before the machine
    m = machine()
    print(machine_line(m), flush=True)
    for case in args.cases.split(","):
        print(f"{case}: load {os.getloadavg()}", flush=True)
        rows[case] = run_case(case, args.time_limit, args.arrays)
        r = rows[case]
        print(f"  {r['seconds']:.1f} s (nearest {r['nearest_seconds']:.1f}, radius {r['radius_seconds']:.1f} on "
              f"{r['searched_points']} points -> {r['pairs']} pairs, graphs {r['graph_seconds']:.1f})", flush=True)
        ordered = [rows[c] for c in CASES if c in rows]
        out_json.write_text(json.dumps({"machine": m, "smoke": args.smoke, "rows": ordered}, indent=1) + "\n")
        (out / "bench_ceiling.md").write_text(markdown(ordered, m))


if __name__ == "__main__":
    main()
