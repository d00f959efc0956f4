"""Benchmark: the vectorised CPU kernel (sepcheck.engine.kernels.simd) on natural images and MNIST.

Cases (uint8 pixels, k = 1, nearest row of a different label):

- CIFAR-10, the JPEG copy in ../shared/data/cifar10-jpeg (pixels differ from the official
  files by ~6/255 on average), 10 000 training images (a fixed random subset, seed 0; the
  folder order is by class) train-train linf and l1; all 50 000 train-train + 10 000
  test-train linf;
- MNIST (../shared/data/mnist-full): 10 000 test-test linf; 60 000 train-train + 10 000
  test-train linf;

Every result is checked against an integer brute force in numpy on a random sample of
queries. For each case the table gives wall and CPU seconds, the pairs pruned by each bound,
the bytes the kernel touched (estimated from its counters) and the fraction of the vector
peak that a brute force would need (see ``PEAK_*``). The load average is printed: the
machine may be shared. Decoded CIFAR arrays are cached in /tmp as .npy.

    python benchmarks/bench_cpu_kernels.py [--quick] [--sample N] [--threads T] [--data DIR] [--out DIR]
    python benchmarks/bench_cpu_kernels.py --smoke [--out DIR]     # tiny fake data, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import _smoke
import numpy as np
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = Path("/tmp/sepcheck_bench")

#: byte lanes per 512-bit vector and 512-bit integer ops per cycle per core (Zen 4 / AVX-512:
#: two 256-bit pipes pairs, i.e. ~2 zmm ops per cycle), and vector ops per pair-feature of
#: linf (max, min, sub, running max): the peak rate of a brute-force linf in pair-features/s
PEAK_LANES = 64
PEAK_ZMM_PER_CYCLE = 2
OPS_PER_PAIR_FEATURE = 4


def cpu_hz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    except OSError:
        pass
    return 2.5e9


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0:3].__str__()
    except OSError:
        return "n/a"


def load_cifar(data: Path = DATA, cache: Path = CACHE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cache.mkdir(parents=True, exist_ok=True)
    files = [cache / f"cifar10_jpeg_{n}.npy" for n in ("X", "y", "Xt", "yt")]
    if not all(f.exists() for f in files):
        from sepcheck.datasets import load_imagefolder

        ds = load_imagefolder(data / "cifar10-jpeg", progress=False)
        arrays = (ds.X.reshape(len(ds.X), -1), ds.y, ds.X_test.reshape(len(ds.X_test), -1), ds.y_test)
        for f, a in zip(files, arrays, strict=True):
            np.save(f, np.ascontiguousarray(a))
    X, y, Xt, yt = (np.load(f) for f in files)
    return X, y.astype(np.int64), Xt, yt.astype(np.int64)


def load_mnist_full(data: Path = DATA) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sepcheck.datasets import read_idx_pair

    folder = data / "mnist-full"
    X, y = read_idx_pair(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    Xt, yt = read_idx_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    return (np.ascontiguousarray(X.reshape(len(X), -1)), y.astype(np.int64),
            np.ascontiguousarray(Xt.reshape(len(Xt), -1)), yt.astype(np.int64))


def oracle_check(Xq, yq, X, y, p, dist, idx, sample: int, seed: int = 1) -> dict:
    """Integer brute force (numpy, 256 rows at a time) for ``sample`` random queries."""
    rows = np.random.default_rng(seed).choice(len(Xq), min(sample, len(Xq)), replace=False)
    bad = 0
    for q in rows:
        best, best_j = np.iinfo(np.int64).max, -1
        for s in range(0, len(X), 256):
            diff = np.abs(X[s : s + 256].astype(np.int16) - Xq[q].astype(np.int16))
            D = diff.max(axis=1).astype(np.int64) if math.isinf(p) else diff.sum(axis=1, dtype=np.int64)
            D[y[s : s + 256] == yq[q]] = np.iinfo(np.int64).max
            j = int(np.argmin(D))
            if D[j] < best:
                best, best_j = int(D[j]), s + j
        bad += int(idx[q] != best_j or dist[q] != best)
    return {"sampled": int(rows.size), "mismatches": bad}


def run_simd(Xq, yq, X, y, p, threads):
    import numba

    from sepcheck.engine.kernels.simd import search_simd

    prev = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)) if threads else prev)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        dist, idx, info = search_simd(Xq, yq, X, y, p=p, k=1)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        numba.set_num_threads(prev)
    return dist[:, 0, 0], idx[:, 0, 0], wall, cpu, info


def describe(name, Xq, X, p, wall, cpu, info, check, threads_used) -> dict:
    from sepcheck.engine.kernels.simd import COARSE, LANES, PREFIX, QUERY_BLOCK

    m, n, d = len(Xq), len(X), X.shape[1]
    hz = cpu_hz()
    peak = threads_used * hz * PEAK_ZMM_PER_CYCLE * PEAK_LANES / OPS_PER_PAIR_FEATURE  # pair-features/s
    row = {"case": name, "norm": "linf" if math.isinf(p) else "l1", "m": m, "n": n, "d": d,
           "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "loadavg": loadavg(), "oracle": check}
    pairs = info.get("pairs")
    if pairs:
        n_blocks = -(-m // QUERY_BLOCK)
        first = PREFIX if math.isinf(p) else -(-d // COARSE) * 2  # bytes per row in the first bound
        first = -(-n // LANES) * LANES * first // max(n, 1)
        touched = n_blocks * n * first + pairs["features_scanned"] * X.itemsize
        row.update(pairs=pairs, bytes_touched=int(touched), extra_bytes=info["extra_bytes"],
                   brute_force_at_peak_s=round(m * n * d / peak, 3),
                   fraction_of_peak_brute_force_equivalent=round(m * n * d / peak / max(wall, 1e-9), 3))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the CIFAR 10 000 and MNIST 10 000 cases")
    ap.add_argument("--sample", type=int, default=50, help="queries checked against the oracle per case")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data", type=Path, default=DATA, help="folder with cifar10-jpeg/ and mnist-full/")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    cache = CACHE
    if args.smoke:  # every case, on a tiny ../shared/data look-alike (its own array cache)
        args.out = _smoke.out_dir(args.out, "bench_cpu_kernels")
        args.data, args.sample, cache = _smoke.fake_data(args.out / "data"), 5, args.out / "cache"
    import numba

    threads = args.threads or numba.get_num_threads()
    X, y, Xt, yt = load_cifar(args.data, cache)
    sub = np.sort(np.random.default_rng(0).permutation(len(X))[:10000])
    C10, c10 = np.ascontiguousarray(X[sub]), y[sub]
    MX, my, MXt, myt = load_mnist_full(args.data)
    cases = [("cifar 10k train-train", C10, c10, C10, c10, math.inf),
             ("cifar 10k train-train", C10, c10, C10, c10, 1.0),
             ("mnist 10k test-test", MXt, myt, MXt, myt, math.inf)]
    if not args.quick:
        cases += [("cifar 50k train-train", X, y, X, y, math.inf),
                  ("cifar 10k test-train (50k ref)", Xt, yt, X, y, math.inf),
                  ("mnist 60k train-train", MX, my, MX, my, math.inf),
                  ("mnist 10k test-train (60k ref)", MXt, myt, MX, my, math.inf)]
    # compile (cached on disk after the first run) and state the time
    t0 = time.perf_counter()
    for p in (math.inf, 1.0):
        run_simd(C10[:20], c10[:20], C10[:50], c10[:50], p, threads)
    compile_s = time.perf_counter() - t0
    m = machine()
    head = (f"{machine_line(m)} Numba threads {threads}, {cpu_hz() / 1e9:.2f} GHz; kernel load/compile "
            f"{compile_s:.2f} s; load avg {loadavg()}")
    print(head, flush=True)
    rows = []
    for name, Qx, Qy, Rx, Ry, p in cases:
        dist, idx, wall, cpu, info = run_simd(Qx, Qy, Rx, Ry, p, threads)
        check = oracle_check(Qx, Qy, Rx, Ry, p, dist, idx, args.sample)
        rows.append(describe(name, Qx, Rx, p, wall, cpu, info, check, threads))
        print(json.dumps(rows[-1]), flush=True)
    table = ["# bench_cpu_kernels: the vectorised CPU kernel (sepcheck.engine.kernels.simd)", "", head, "",
             "| case | norm | wall s | CPU s | oracle | load avg |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        ok = f"{r['oracle']['sampled'] - r['oracle']['mismatches']}/{r['oracle']['sampled']}"
        table.append(f"| {r['case']} | {r['norm']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {ok} | {r['loadavg']} |")
    print("\n".join(table[2:]))
    folder = args.out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "bench_cpu_kernels.json"
    out.write_text(json.dumps({"machine": m, "smoke": args.smoke, "compile_s": compile_s, "threads": threads,
                               "rows": rows}, indent=1))
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
