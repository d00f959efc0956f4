"""Benchmark: exact l2 k=1 on the CPU, sepcheck against faiss ``IndexFlatL2`` per class.

Data: CIFAR-10 (the JPEG copy, ``X_train`` uint8 (50000, 3072) in an .npz such as the one
``make_bench_arrays.py`` writes), a seeded random subset of ``--n`` training images,
train-train, nearest row of a different label. Baseline: for every class c an
``IndexFlatL2`` of the rows of class c; every query searches the indexes of the other
classes (k=1) and takes the minimum. sepcheck's answer is checked against faiss (the
distances to float32 rounding) and, on a sample, against an integer brute force. Both are
timed ``--repeat`` times alternately in the same run; the load average is printed because
the machine may be shared.

    python benchmarks/bench_l2_cpu.py [--npz PATH] [--n 10000] [--repeat 3] [--k 1] [--out DIR]
    python benchmarks/bench_l2_cpu.py --smoke [--out DIR]     # 200 tiny rows, seconds

Results: benchmarks/results/bench_l2_cpu.{json,md}.
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

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def load(npz: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(npz) as f:
        X, y = f["X_train"], f["y_train"]
    rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], n, replace=False))
    return np.ascontiguousarray(X[rows]), np.asarray(y[rows]).astype(np.int64)


def faiss_per_class(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    Xf = X.astype(np.float32)
    best_d = np.full(X.shape[0], np.inf, dtype=np.float32)
    best_i = np.full(X.shape[0], -1, dtype=np.int64)
    for c in np.unique(y):
        ref = np.flatnonzero(y == c)
        index = faiss.IndexFlatL2(X.shape[1])
        index.add(Xf[ref])
        q = np.flatnonzero(y != c)
        d, i = index.search(Xf[q], 1)
        better = d[:, 0] < best_d[q]
        best_d[q[better]] = d[better, 0]
        best_i[q[better]] = ref[i[better, 0]]
    return np.sqrt(np.maximum(best_d, 0)) / 255.0, best_i


def brute(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact integer l2 / 255 of the nearest different-label row for ``rows``."""
    out = np.empty(rows.size)
    Xi = X.astype(np.int64)
    for j, r in enumerate(rows):
        sq = ((Xi - Xi[r]) ** 2).sum(axis=1).astype(np.float64)
        sq[y == y[r]] = np.inf
        out[j] = np.sqrt(sq.min()) / 255.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", default="/tmp/bench_local/cifar10.npz")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--by-class", action="store_true", help="also time nearest_by_class l2")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:  # both searches, the checks and the results on 200 tiny rows
        args.out = _smoke.out_dir(args.out, "bench_l2_cpu")
        args.npz = str(_smoke.write_arrays(args.out / "arrays") / "cifar10.npz")
        args.n, args.repeat, args.by_class = 200, 1, True

    from sepcheck import nearest_other
    from sepcheck.engine import nearest_by_class

    X, y = load(args.npz, args.n, args.seed)
    m = machine()
    print(f"data {X.shape} {X.dtype}, classes {np.unique(y).size}; {machine_line(m)}")
    times: dict[str, list[float]] = {"faiss": [], "sepcheck": []}
    if args.by_class:
        times["by_class"] = []
    for rep in range(args.repeat):
        print(f"rep {rep} loadavg {os.getloadavg()}", flush=True)
        t = time.perf_counter()
        fd, fi = faiss_per_class(X, y)
        times["faiss"].append(time.perf_counter() - t)
        info: dict = {}
        t = time.perf_counter()
        sd, si = nearest_other(X, y, norm="l2", k=args.k, device="cpu", info=info)
        times["sepcheck"].append(time.perf_counter() - t)
        if args.by_class:
            t = time.perf_counter()
            nearest_by_class(X, y, X[:2000], norm="l2", device="cpu")
            times["by_class"].append(time.perf_counter() - t)
        print(
            "  " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
            + f"  ratio {times['sepcheck'][-1] / times['faiss'][-1]:.2f}  info {info}",
            flush=True,
        )
    d1 = sd[:, 0] if sd.ndim == 2 else sd
    np.testing.assert_allclose(d1, fd, rtol=1e-4, atol=1e-4)
    sample = np.random.default_rng(1).choice(X.shape[0], 50, replace=False)
    np.testing.assert_array_equal(d1[sample], brute(X, y, sample))
    best = {k: min(v) for k, v in times.items()}
    line = ("best " + "  ".join(f"{k} {v:.2f}s" for k, v in best.items())
            + f"  ratio {best['sepcheck'] / best['faiss']:.2f}" + f"  loadavg {os.getloadavg()}")
    print(line)
    out = (args.out or RESULTS) / "bench_l2_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": m, "smoke": args.smoke, "args": vars(args), "data": list(X.shape),
                               "seconds": times, "best": best, "info": info, "checked": "faiss (all), brute "
                               "force (50 rows)", "loadavg": os.getloadavg()}, indent=1, default=str))
    out.with_suffix(".md").write_text(f"# bench_l2_cpu: exact l2 k={args.k}, sepcheck against faiss IndexFlatL2 "
                                      f"per class\n\n{machine_line(m)}\n\nData {X.shape} from {args.npz}, "
                                      f"{args.repeat} repeats: {line}\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
