"""Benchmark: exact radius search (``neighbors_within``) on real CIFAR-10 and MNIST images,
train-train, other label, against ``nearest_other``'s time on the same data and norm.

Cases (uint8 pixels, radius on the [0, 1] pixel scale: 2 eps of the usual eps):

- CIFAR-10 JPEG 50 000 train-train: linf at 2 * 8/255, l2 at 2 * 0.5;
- MNIST 60 000 train-train: linf at 2 * 0.3, l2 at 2 * 2.0;
- ``*-l2-q5``: l2 at the 5 % quantile of the nearest-other-label distance (taken from the
  ``nearest_other`` run of the same case): a radius at which some points have neighbours,
  where the radius search must not cost more than the k-nearest search.

Each search runs with ``device="cpu"`` and ``backend="auto"`` (numba for linf; for l2 the
path ``auto`` picks, named in the table: projection bounds on the CPU). Exactness: the rows of a random sample of queries equal an integer numpy
brute force (closed ball, other label, sorted by (distance, index)). The machine is shared:
the load average is recorded next to every number.

Arrays: /tmp/bench_local/{cifar10,mnist}.npz (``python benchmarks/make_bench_arrays.py``
builds them). Results: benchmarks/results/bench_radius.json and bench_radius.md.

    python benchmarks/bench_radius.py [--cases cifar-linf,mnist-l2] [--sample 20] [--arrays DIR] [--out DIR]
    python benchmarks/bench_radius.py --smoke [--out DIR]     # tiny arrays, seconds
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

#: case -> (arrays file, norm, radius, description)
CASES = {
    "cifar-linf": ("cifar10", "linf", 2 * 8 / 255, "CIFAR-10 JPEG 50 000 train-train, linf, r = 2 * 8/255"),
    "cifar-l2": ("cifar10", "l2", 2 * 0.5, "CIFAR-10 JPEG 50 000 train-train, l2, r = 2 * 0.5"),
    "mnist-linf": ("mnist", "linf", 2 * 0.3, "MNIST 60 000 train-train, linf, r = 2 * 0.3"),
    "mnist-l2": ("mnist", "l2", 2 * 2.0, "MNIST 60 000 train-train, l2, r = 2 * 2.0"),
    "cifar-l2-q5": ("cifar10", "l2", None, "CIFAR-10 JPEG 50 000 train-train, l2, r = 5 % quantile of nearest other"),
    "mnist-l2-q5": ("mnist", "l2", None, "MNIST 60 000 train-train, l2, r = 5 % quantile of nearest other"),
}


def _load(name: str, arrays: Path = ARRAYS) -> tuple[np.ndarray, np.ndarray]:
    f = arrays / f"{name}.npz"
    if not f.exists():
        raise SystemExit(f"{f} is missing: run python benchmarks/make_bench_arrays.py")
    with np.load(f) as z:
        return z["X_train"].reshape(len(z["X_train"]), -1), z["y_train"]


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _exact_on_sample(X, y, res, norm, radius, sample, rng) -> bool:
    p = {"linf": np.inf, "l2": 2.0}[norm]
    for i in rng.choice(X.shape[0], size=sample, replace=False):
        diff = np.abs(X.astype(np.int64) - X[i].astype(np.int64))
        d = diff.max(axis=1) / 255 if np.isinf(p) else np.sqrt((diff * diff).sum(axis=1)) / 255
        cand = np.flatnonzero((d <= radius) & (y != y[i]))
        want = cand[np.lexsort((cand, d[cand]))]
        got, dist = res.row(int(i))
        if not (np.array_equal(got, want) and np.array_equal(dist, d[want])):
            return False
    return True


def run_case(case: str, sample: int, arrays: Path = ARRAYS) -> dict:
    from sepcheck import nearest_other, neighbors_within

    data, norm, radius, desc = CASES[case]
    X, y = _load(data, arrays)
    load0 = os.getloadavg()
    info: dict = {}
    ninfo: dict = {}
    # load / compile the kernels outside the timing: both searches on every 20th row (at
    # least 2 048 rows on the real data, so that the same l2 path runs)
    w = slice(None, None, 20 if len(X) >= 20 * 2048 else 1)
    Xw, yw = np.ascontiguousarray(X[w]), np.ascontiguousarray(y[w])
    dw = nearest_other(Xw, yw, norm=norm, device="cpu")[0]
    neighbors_within(Xw, yw, radius if radius is not None else float(np.quantile(dw[:, 0], 0.05)),
                     norm=norm, device="cpu")
    (d, _), t_n, c_n = _timed(lambda: nearest_other(X, y, norm=norm, device="cpu", info=ninfo))
    if radius is None:  # the 5 % quantile of the nearest-other distance
        radius = float(np.quantile(d[:, 0], 0.05))
    res, t_r, c_r = _timed(lambda: neighbors_within(X, y, radius, norm=norm, device="cpu", info=info))
    exact = _exact_on_sample(X, y, res, norm, radius, sample, np.random.default_rng(0))
    return {
        "case": case, "description": desc, "norm": norm, "radius": radius, "n": int(X.shape[0]),
        "backend": info["backend"] + (f" ({info['l2_path']})" if info.get("l2_path") else ""),
        "nearest_other_backend": ninfo["backend"] + (f" ({ninfo['l2_path']})" if ninfo.get("l2_path") else ""),
        "seconds": round(t_r, 2), "cpu_seconds": round(c_r, 2),
        "pairs": res.nnz, "queries_with_pairs": int((res.counts() > 0).sum()),
        "candidates": info["candidates"], "spilled": info["spilled"],
        "nearest_other_seconds": round(t_n, 2), "nearest_other_cpu_seconds": round(c_n, 2),
        "points_within_by_nearest_other": int((d[:, 0] <= radius).sum()),
        "exact_on_sample": exact, "sample": sample,
        "load_before": [round(v, 2) for v in load0],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write(rows: list[dict], meta: dict, out: Path = RESULTS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_radius.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {r["case"] for r in rows}
    rows = [r for r in old if r["case"] not in done] + rows
    rows.sort(key=lambda r: list(CASES).index(r["case"]))
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# bench_radius: exact radius search (neighbors_within), other label, CPU", "",
        machine_line(meta["machine"]),
        "The machine is shared: the load "
        "average (1, 5, 15 min) before and after each case is given; wall times under load are "
        "pessimistic.", "",
        "| case | backend | seconds (CPU s) | pairs | queries with a pair | candidates checked "
        "| nearest_other seconds (CPU s) | exact on sample | load before -> after |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['description']} | {r['backend']} | {r['seconds']} ({r['cpu_seconds']}) | "
            f"{r['pairs']} | {r['queries_with_pairs']} | {r['candidates']} | "
            f"{r['nearest_other_seconds']} ({r['nearest_other_cpu_seconds']}) | "
            f"{'yes' if r['exact_on_sample'] else 'NO'} ({r['sample']} queries) | "
            f"{r['load_before']} -> {r['load_after']} |"
        )
    (out / "bench_radius.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--sample", type=int, default=20)
    ap.add_argument("--arrays", type=Path, default=ARRAYS, help="folder with cifar10.npz and mnist.npz")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:  # the four cases on 240 tiny rows
        args.out = _smoke.out_dir(args.out, "bench_radius")
        args.arrays, args.sample = _smoke.write_arrays(args.out / "arrays"), 5
    meta = {"machine": machine(), "smoke": args.smoke}
    print(machine_line(meta["machine"]), flush=True)
    rows = []
    for case in args.cases.split(","):
        row = run_case(case, args.sample, args.arrays)
        print(json.dumps(row), flush=True)
        rows.append(row)
        write(rows, meta, args.out or RESULTS)


if __name__ == "__main__":
    main()
