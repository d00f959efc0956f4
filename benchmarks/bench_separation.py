"""Benchmark: exact test-test separation of the real MNIST test set (10 000 x 784).

Times every sepcheck backend for linf and l2, and the baselines a user would otherwise run:
faiss-cpu ``IndexFlat(d, METRIC_Linf)`` / ``IndexFlatL2`` per class and scikit-learn
``NearestNeighbors(metric="minkowski", p=inf)`` per class (the original paper's method).
Every result is checked against an exact float64/integer oracle computed here with plain
numpy. Prints a table and writes JSON to benchmarks/results/.

    python benchmarks/bench_separation.py [--mnist DIR] [--skip-slow] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from sepcheck.datasets.idx import read_idx_pair

    X, y = read_idx_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    return np.ascontiguousarray(X.reshape(len(X), -1)), y


# ----- oracles (plain numpy, exact) ------------------------------------------------------

def oracle_linf(X: np.ndarray, y: np.ndarray, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Exact linf in uint8 arithmetic (max - min never overflows); ties to lowest index."""
    n = len(X)
    dist = np.empty(n, dtype=np.int64)
    idx = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk):
        a = X[s : s + chunk, None, :]
        D = (np.maximum(a, X[None]) - np.minimum(a, X[None])).max(axis=2).astype(np.int64)
        D[y[s : s + chunk, None] == y[None, :]] = 1 << 40
        idx[s : s + chunk] = D.argmin(axis=1)
        dist[s : s + chunk] = D[np.arange(D.shape[0]), idx[s : s + chunk]]
    return dist / 255.0, idx


def oracle_l2(X: np.ndarray, y: np.ndarray, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared l2 of integer pixels: float64 GEMM of integers < 2^53 is exact."""
    F = X.astype(np.float64)
    sq = (F * F).sum(axis=1)
    n = len(X)
    dist = np.empty(n)
    idx = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk):
        D2 = sq[s : s + chunk, None] + sq[None, :] - 2.0 * (F[s : s + chunk] @ F.T)
        D2[y[s : s + chunk, None] == y[None, :]] = np.inf
        idx[s : s + chunk] = D2.argmin(axis=1)
        dist[s : s + chunk] = np.sqrt(D2[np.arange(D2.shape[0]), idx[s : s + chunk]]) / 255.0
    return dist, idx


# ----- baselines -----------------------------------------------------------------------

def faiss_per_class(X: np.ndarray, y: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """What a faiss user writes: per class c, an index of the other classes, query class c."""
    import faiss

    Xf = X.astype(np.float32) / 255.0
    dist = np.empty(len(X))
    idx = np.empty(len(X), dtype=np.int64)
    for c in np.unique(y):
        other = np.flatnonzero(y != c)
        own = np.flatnonzero(y == c)
        index = faiss.IndexFlatL2(X.shape[1]) if norm == "l2" else faiss.IndexFlat(X.shape[1], faiss.METRIC_Linf)
        index.add(Xf[other])
        D, nn_idx = index.search(Xf[own], 1)
        dist[own] = np.sqrt(D[:, 0]) if norm == "l2" else D[:, 0]
        idx[own] = other[nn_idx[:, 0]]
    return dist, idx


def sklearn_per_class(X: np.ndarray, y: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """The original paper's approach: scikit-learn NearestNeighbors per class."""
    from sklearn.neighbors import NearestNeighbors

    Xf = X.astype(np.float64) / 255.0
    dist = np.empty(len(X))
    idx = np.empty(len(X), dtype=np.int64)
    p = np.inf if norm == "linf" else 2
    for c in np.unique(y):
        other = np.flatnonzero(y != c)
        own = np.flatnonzero(y == c)
        nn = NearestNeighbors(n_neighbors=1, metric="minkowski", p=p, n_jobs=-1).fit(Xf[other])
        D, nn_idx = nn.kneighbors(Xf[own])
        dist[own] = D[:, 0]
        idx[own] = other[nn_idx[:, 0]]
    return dist, idx


def sepcheck_backend(backend: str):
    def run(X: np.ndarray, y: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
        from sepcheck import nearest_other

        d, i = nearest_other(X, y, norm=norm, backend=backend, device="cpu")
        return d[:, 0], i[:, 0]

    return run


def timed(fn, X, y, norm, repeat: int) -> tuple[float, list[float], tuple[np.ndarray, np.ndarray]]:
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(X, y, norm)
        times.append(time.perf_counter() - t)
    return min(times), times, out


def exactness(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray], norm: str) -> dict:
    d, i = got
    od, oi = want
    rel = np.abs(d - od) / np.maximum(od, 1e-300)
    return {
        "max_rel_err": float(rel.max()),
        "index_mismatches": int((i != oi).sum()),
        "separation": float(d.min()),
        "exact": bool((i == oi).all() and (rel.max() <= (0.0 if norm == "linf" else 1e-6))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--skip-slow", action="store_true", help="skip faiss linf, sklearn and sepcheck-faiss linf")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each fast method (min is reported)")
    ap.add_argument("--norm", choices=["linf", "l2"], default=None,
                    help="run one norm only and replace its rows in an existing --out file")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_separation.json")
    args = ap.parse_args()
    if not args.mnist.exists():
        raise SystemExit(f"real MNIST not found at {args.mnist}")
    X, y = load_mnist(args.mnist)
    print(f"MNIST test set {X.shape}, {os.cpu_count()} cpus, load avg {os.getloadavg()}", flush=True)

    # compile the numba kernels outside the timings (numba caches them on disk anyway)
    from sepcheck import nearest_other

    t = time.perf_counter()
    nearest_other(X[:200], y[:200], norm="linf", backend="numba")
    nearest_other(X[:200], y[:200], norm="l1", backend="numba")
    first_call = time.perf_counter() - t

    oracles = {}
    for norm, fn in (("linf", oracle_linf), ("l2", oracle_l2)):
        if args.norm and norm != args.norm:
            continue
        t = time.perf_counter()
        oracles[norm] = fn(X, y)
        print(f"oracle {norm}: {time.perf_counter() - t:.1f} s, separation {oracles[norm][0].min():.6f}", flush=True)

    methods = {
        "linf": [
            ("sepcheck auto (numba)", sepcheck_backend("auto"), args.repeat),
            ("sepcheck numba", sepcheck_backend("numba"), args.repeat),
            ("sepcheck torch", sepcheck_backend("torch"), 1),
            ("sepcheck faiss", sepcheck_backend("faiss"), 1),
            ("faiss IndexFlat METRIC_Linf per class", faiss_per_class, 1),
            ("sklearn NearestNeighbors p=inf per class", sklearn_per_class, 1),
        ],
        "l2": [
            ("sepcheck auto (torch)", sepcheck_backend("auto"), args.repeat),
            ("sepcheck torch", sepcheck_backend("torch"), args.repeat),
            ("sepcheck faiss", sepcheck_backend("faiss"), args.repeat),
            ("faiss IndexFlatL2 per class", faiss_per_class, args.repeat),
            ("sklearn NearestNeighbors p=2 per class", sklearn_per_class, 1),
        ],
    }
    slow = {"sepcheck faiss", "faiss IndexFlat METRIC_Linf per class", "sklearn NearestNeighbors p=inf per class",
            "sepcheck torch"}
    rows = []
    kept: list[dict] = []
    if args.norm and args.out.exists():
        kept = [r for r in json.loads(args.out.read_text())["rows"] if r["norm"] != args.norm]
    for norm, entries in methods.items():
        if args.norm and norm != args.norm:
            continue
        for name, fn, rep in entries:
            if args.skip_slow and norm == "linf" and name in slow:
                continue
            best, times, out = timed(fn, X, y, norm, rep)
            row = {"norm": norm, "method": name, "seconds": best, "runs": times, **exactness(out, oracles[norm], norm)}
            rows.append(row)
            print(f"{norm:5s} {name:45s} {best:8.2f} s  exact={row['exact']}", flush=True)
    rows = sorted(kept + rows, key=lambda r: r["norm"] != "linf")
    for norm in ("linf", "l2"):
        ref = next((r["seconds"] for r in rows if r["norm"] == norm and r["method"].startswith("faiss")), None)
        for r in rows:
            if r["norm"] == norm:
                r["speedup_vs_faiss"] = (ref / r["seconds"]) if ref else None

    print()
    print("| norm | method | seconds | speed-up vs faiss | exact vs oracle |")
    print("| --- | --- | ---: | ---: | --- |")
    for r in rows:
        sp = f"{r['speedup_vs_faiss']:.1f}x" if r["speedup_vs_faiss"] else "-"
        ex = "yes" if r["exact"] else f"no ({r['index_mismatches']} index mismatches, max rel err {r['max_rel_err']:.1e})"
        print(f"| {r['norm']} | {r['method']} | {r['seconds']:.2f} | {sp} | {ex} |")
    meta = {
        "data": "MNIST test set, 10 000 x 784 uint8, test-test, k=1",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "load_average_end": os.getloadavg(),
        "numba_first_call_seconds": first_call,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(meta, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
