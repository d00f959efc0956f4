"""Benchmark: exact nearest-other-label search on real CIFAR-10 and MNIST images, against the
baselines a user would otherwise run, every method checked against an exact oracle.

Data (uint8 pixels, k = 1, the nearest row of a different label):

- CIFAR-10, the JPEG-compressed copy in ../shared/data/cifar10-jpeg (pixel values differ from
  the official files by ~6/255 on average; classes in sorted folder order): ``cifar10k`` =
  10 000 training images, a seeded random sample (``np.random.default_rng(0)``, the first
  10 000 of a permutation of the 50 000, kept in index order), train-train; ``cifar50k`` =
  all 50 000 train-train; ``cifar-test`` = the 10 000 test images against the 50 000;
- MNIST (../shared/data/mnist-full): ``mnist60k`` = 60 000 train-train; ``mnist-test`` =
  the 10 000 test images against the 60 000; ``mnist10k`` = 10 000 test-test.

Methods: sepcheck ``nearest_other(device="cpu")`` for linf and l1 (backend numba) and l2
(backend auto), each in a child process that reports its wall and CPU time and its extra
peak memory (VmHWM after the search minus VmRSS before it, the peak reset in between);
faiss ``IndexFlatL2`` per class (l2) and ``IndexFlat(METRIC_Linf)`` per class (linf),
scikit-learn ``NearestNeighbors(p=inf)`` per class and torch ``cdist(p=inf)`` on float32
tiles per class. Per class c a baseline indexes the rows of the other classes and queries the
rows of class c. Slow baselines run on a random subset of the queries and their time is
extrapolated linearly (marked ``*`` in the table). Every method is checked on the same random
sample of queries against an integer numpy brute force (ties to the lowest index).

Arrays are read from ``--arrays`` (cifar10.npz / mnist.npz, or bench_arrays.npz from
benchmarks/make_bench_arrays.py); when none is there they are built from ../shared/data with
make_bench_arrays.py. Results: benchmarks/results/bench_separation.json (rows of the cases
run replace the rows of the same cases already there) and bench_separation.md.

    python benchmarks/bench_separation.py [--quick] [--cases cifar10k,mnist10k] [--norms linf,l1]
        [--sample N] [--out FILE.json]
    python benchmarks/bench_separation.py --smoke [--out DIR]     # tiny arrays, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _smoke
import numpy as np
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data"
ARRAYS = Path("/tmp/bench_local")
SEED = 0

#: case -> (data set, query split, reference split, description)
CASES = {
    "cifar10k": ("cifar", "train10k", "train10k", "CIFAR-10 JPEG, 10 000 train (seeded sample) train-train"),
    "cifar50k": ("cifar", "train", "train", "CIFAR-10 JPEG, 50 000 train-train"),
    "cifar-test": ("cifar", "test", "train", "CIFAR-10 JPEG, 10 000 test vs 50 000 train"),
    "mnist60k": ("mnist", "train", "train", "MNIST, 60 000 train-train"),
    "mnist-test": ("mnist", "test", "train", "MNIST, 10 000 test vs 60 000 train"),
    "mnist10k": ("mnist", "test", "test", "MNIST, 10 000 test-test"),
}
QUICK = ("cifar10k", "mnist10k")
#: sums shown in the table: (name, parts)
TOTALS = (("CIFAR-10 50 000 train-train + 10 000 test-train", ("cifar50k", "cifar-test")),
          ("MNIST 60 000 train-train + 10 000 test-train", ("mnist60k", "mnist-test")))
#: sepcheck rows: (norm, backend, SEPCHECK_L2_PATH or None); the forced l2 paths show each
#: exact path on this machine (int8 only where the CPU runs it fast: elsewhere it is the slow
#: path 'auto' avoids, minutes on CIFAR)
SEPCHECK = (("linf", "numba", None), ("l1", "numba", None), ("l2", "auto", None),
            ("l2", "auto", "projection"), ("l2", "auto", "float32"), ("l2", "auto", "int8"))


# ----- data ------------------------------------------------------------------------------

def load_arrays(folder: Path) -> dict[str, np.ndarray]:
    """``cifar_X_train`` .. and ``mnist_X_train`` .. from ``folder``; built when absent."""
    out: dict[str, np.ndarray] = {}
    for name in ("cifar10", "mnist"):
        f = folder / f"{name}.npz"
        if f.exists():
            with np.load(f) as z:
                out.update({f"{name[:5]}_{k}": z[k] for k in z.files})
    combined = folder / "bench_arrays.npz"
    if not out and not combined.exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"building {combined} from {DATA} (make_bench_arrays.py)", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_bench_arrays.py"),
                        "--data", str(DATA), "--out", str(combined)], check=True)
    if not out:
        with np.load(combined) as z:
            for k in z.files:
                out[k if k.startswith("mnist_") else f"cifar_{k}"] = z[k]
    return out


def case_arrays(arrays: dict, case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(reference, labels, queries, labels); queries None for a train-train / test-test case."""
    data, qs, rs, _ = CASES[case]

    def split(s):
        if s == "train10k":
            X, y = arrays[f"{data}_X_train"], arrays[f"{data}_y_train"]
            rows = np.sort(np.random.default_rng(SEED).permutation(len(X))[:10000])
            return X[rows], y[rows]
        return arrays[f"{data}_X_{s}"], arrays[f"{data}_y_{s}"]

    R, yr = split(rs)
    R, yr = np.ascontiguousarray(R.reshape(len(R), -1)), yr.astype(np.int64)
    if qs == rs:
        return R, yr, None, None
    Q, yq = split(qs)
    return R, yr, np.ascontiguousarray(Q.reshape(len(Q), -1)), yq.astype(np.int64)


# ----- exact oracle (integer numpy brute force) --------------------------------------------

def oracle(R, yr, Q, yq, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw distances and indices (lowest index on ties) of the sampled queries, all norms."""
    out = {n: (np.empty(rows.size), np.empty(rows.size, dtype=np.int64)) for n in ("linf", "l1", "l2")}
    big = np.iinfo(np.int64).max
    for t, q in enumerate(rows):
        x = Q[q]
        best = {n: (big, -1) for n in out}
        for s in range(0, len(R), 2048):
            diff = np.maximum(R[s : s + 2048], x) - np.minimum(R[s : s + 2048], x)  # uint8, exact
            other = yr[s : s + 2048] != yq[q]
            for n, D in (("linf", diff.max(axis=1).astype(np.int64)),
                         ("l1", diff.sum(axis=1, dtype=np.int64)),
                         ("l2", np.einsum("ij,ij->i", diff.astype(np.int32), diff.astype(np.int32),
                                          dtype=np.int64))):
                D = np.where(other, D, big)
                j = int(np.argmin(D))
                if D[j] < best[n][0]:
                    best[n] = (int(D[j]), s + j)
        for n, (v, j) in best.items():
            out[n][0][t] = math.sqrt(v) if n == "l2" else v
            out[n][1][t] = j
    return out


def check(dist: np.ndarray, idx: np.ndarray, want: tuple[np.ndarray, np.ndarray], tol: float) -> dict:
    """Agreement of raw distances / indices of the sampled queries with the oracle."""
    od, oi = want
    rel = float((np.abs(dist - od) / np.maximum(od, 1e-300)).max()) if od.size else 0.0
    mism = int((idx != oi).sum())
    return {"checked": int(od.size), "index_mismatches": mism, "max_rel_err": rel,
            "exact": bool(mism == 0 and rel <= tol)}


# ----- sepcheck, in a child process (time and extra peak memory) ---------------------------

def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(spec: dict) -> None:
    """Run one sepcheck search on the arrays in ``spec['dir']``; print a JSON line."""
    folder = Path(spec["dir"])
    R, yr = np.load(folder / "R.npy"), np.load(folder / "yr.npy")
    Q = np.load(folder / "Q.npy") if (folder / "Q.npy").exists() else None
    yq = np.load(folder / "yq.npy") if Q is not None else None
    from sepcheck import nearest_other

    kw = {"norm": spec["norm"], "backend": spec["backend"], "device": "cpu", "raw": True}
    # rows of every class (folders are sorted), enough for the paths of the full search (l2:
    # projection from 2 048 rows)
    warm = slice(None, None, max(1, len(R) // 2100))
    nearest_other(R[warm], yr[warm], **kw)  # load / compile the kernels outside the timing
    try:  # reset the peak RSS (Linux >= 4.0) so that VmHWM measures this search only
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    rss0 = _status_kib("VmRSS")
    info: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    d, i = nearest_other(R, yr, Q, yq, info=info, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(folder / "out_d.npy", d[:, 0])
    np.save(folder / "out_i.npy", i[:, 0])
    print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "extra_peak_mib": max(peak - rss0, 0) / 1024,
                      "backend_used": str(info.get("backend", spec["backend"])),
                      "l2_path": info.get("l2_path"), "pairs_exact": info.get("pairs_exact"),
                      "pairs_bounded": info.get("pairs_bounded")}))


def run_sepcheck(folder: Path, norm: str, backend: str, path: str | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    spec = json.dumps({"dir": str(folder), "norm": norm, "backend": backend})
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SEPCHECK_L2_PATH", None)
    if path is not None:
        env["SEPCHECK_L2_PATH"] = path
    res = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"sepcheck {norm} failed:\n{res.stderr[-2000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    return row, np.load(folder / "out_d.npy"), np.load(folder / "out_i.npy")


def _int8_fast() -> bool:
    """Whether this CPU runs torch's int8 GEMM fast (sepcheck's own test)."""
    import torch

    from sepcheck.engine.backends.torch_backend import int8_gemm_fast

    return int8_gemm_fast(torch.device("cpu"))


# ----- baselines (float32 pixel values 0..255, per class) --------------------------------

def per_class(R, yr, Q, yq, rows: np.ndarray, search) -> tuple[np.ndarray, np.ndarray]:
    """For every class c: ``search(reference rows of the other classes, queries of class c)``
    -> (dist, local index, seconds spent building the index), for the queries ``rows``.
    Returns the distances, indices and the total build seconds (not extrapolated)."""
    dist = np.empty(rows.size)
    idx = np.empty(rows.size, dtype=np.int64)
    build = 0.0
    for c in np.unique(yq[rows]):
        own = np.flatnonzero(yq[rows] == c)
        other = np.flatnonzero(yr != c)
        d, j, b = search(R[other], Q[rows[own]])
        dist[own], idx[own] = d, other[j]
        build += b
    return dist, idx, build


def faiss_search(norm: str):
    def search(Rc, Qc):
        import faiss

        t = time.perf_counter()
        index = faiss.IndexFlatL2(Rc.shape[1]) if norm == "l2" else faiss.IndexFlat(Rc.shape[1], faiss.METRIC_Linf)
        index.add(Rc.astype(np.float32))
        build = time.perf_counter() - t
        D, J = index.search(Qc.astype(np.float32), 1)
        return (np.sqrt(np.maximum(D[:, 0], 0)) if norm == "l2" else D[:, 0]).astype(np.float64), J[:, 0], build

    return search


def sklearn_search(Rc, Qc):
    from sklearn.neighbors import NearestNeighbors

    t = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=1, metric="minkowski", p=np.inf, n_jobs=-1).fit(Rc.astype(np.float32))
    build = time.perf_counter() - t
    D, J = nn.kneighbors(Qc.astype(np.float32))
    return D[:, 0].astype(np.float64), J[:, 0], build


def cdist_search(Rc, Qc, tile: int = 256, rtile: int = 8192):
    import torch

    t = time.perf_counter()
    Rt = torch.from_numpy(Rc.astype(np.float32))
    build = time.perf_counter() - t
    dist = np.empty(len(Qc))
    idx = np.empty(len(Qc), dtype=np.int64)
    for s in range(0, len(Qc), tile):
        q = torch.from_numpy(Qc[s : s + tile].astype(np.float32))
        best = torch.full((len(q),), float("inf"))
        arg = torch.zeros(len(q), dtype=torch.int64)
        for r in range(0, len(Rt), rtile):
            v, j = torch.cdist(q, Rt[r : r + rtile], p=float("inf")).min(dim=1)
            better = v < best
            best = torch.where(better, v, best)
            arg = torch.where(better, j + r, arg)
        dist[s : s + tile], idx[s : s + tile] = best.double().numpy(), arg.numpy()
    return dist, idx, build


#: baseline -> (norm, search, pair-features it may compute (queries x rows x features) before
#: it runs on a subset of the queries, at least the oracle's sample; None = all queries);
#: --quick halves the budgets
BASELINES = {
    "faiss IndexFlatL2 per class": ("l2", faiss_search("l2"), None),
    "faiss IndexFlat METRIC_Linf per class": ("linf", faiss_search("linf"), 1.5e9),
    "scikit-learn NearestNeighbors p=inf per class": ("linf", sklearn_search, 1e9),
    "torch cdist p=inf float32 tiles per class": ("linf", cdist_search, 4e9),
}
#: faiss l2 on cases with more queries than this runs on this many and is extrapolated
FAISS_L2_MAX = 10000


# ----- driver ----------------------------------------------------------------------------

def run_case(case: str, arrays: dict, sample: int, quick: bool, tmp: Path, norms: list[str]) -> list[dict]:
    R, yr, Q, yq = case_arrays(arrays, case)
    folder = tmp / case
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in (("R", R), ("yr", yr), ("Q", Q), ("yq", yq)):
        if a is not None:
            np.save(folder / f"{name}.npy", a)
    if Q is None:
        Q, yq = R, yr
    m = len(Q)
    order = np.random.default_rng(SEED + 1).permutation(m)  # the oracle sample and the subsets
    rows = np.sort(order[:sample])
    t = time.perf_counter()
    want = oracle(R, yr, Q, yq, rows)
    print(f"[{case}] {m} queries x {len(R)} rows x {R.shape[1]}; oracle on {rows.size} queries "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    out = []
    base = {"case": case, "data": CASES[case][3], "queries": m, "reference": len(R), "features": R.shape[1]}
    for norm, backend, path in (sb for sb in SEPCHECK if sb[0] in norms):
        if path == "int8" and not _int8_fast():
            continue
        res, d, i = run_sepcheck(folder, norm, backend, path)
        ok = check(d[rows], i[rows], want[norm], 1e-12 if norm == "l2" else 0.0)
        how = f"{backend}: {res['l2_path']}" if res.get("l2_path") else backend
        forced = f" forced {path}" if path else ""
        row = {**base, "norm": norm, "method": f"sepcheck {norm}{forced} ({how})", "subset": None, **res, **ok}
        out.append(row)
        print(f"  {row['method']:48s} {res['seconds']:8.2f} s  cpu {res['cpu_seconds']:7.2f} s  "
              f"+{res['extra_peak_mib']:.0f} MiB  exact={ok['exact']}", flush=True)
    for name, (norm, search, budget) in BASELINES.items():
        s = None if budget is None else int(budget / (2 if quick else 1) / (len(R) * R.shape[1]))
        if name.startswith("faiss IndexFlatL2") and m > FAISS_L2_MAX:
            s = FAISS_L2_MAX // 5
        s = m if s is None else max(min(s, m), rows.size)
        sub = np.sort(order[:s])
        t0, c0 = time.perf_counter(), time.process_time()
        d, i, build = per_class(R, yr, Q, yq, sub, search)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        scale = m / s  # the per-class index builds are not extrapolated, the searches are
        pos = np.searchsorted(sub, rows)
        ok = check(d[pos], i[pos], want[norm], 1e-5)
        row = {**base, "norm": norm, "method": name, "subset": None if s == m else s,
               "seconds": build + (wall - build) * scale, "cpu_seconds": cpu * scale,
               "measured_seconds": wall, "build_seconds": build, **ok}
        out.append(row)
        mark = f" (on {s} queries, extrapolated)" if s < m else ""
        print(f"  {name:48s} {row['seconds']:8.2f} s{mark}  exact={ok['exact']}", flush=True)
    return out


def fmt_s(r: dict) -> str:
    return f"{r['seconds']:.2f}" + ("*" if r.get("subset") else "")


def markdown(meta: dict, rows: list[dict]) -> str:
    m = meta["machine"]
    lines = [
        "# bench_separation: exact nearest-other-label search, k = 1, CPU",
        "",
        machine_line(m),
        "Load average (1, 5, 15 min) at the start and end of each case below (the machine may be "
        "shared: wall times under load are pessimistic; CPU seconds less so).",
        "CIFAR-10 is the JPEG-compressed copy (pixels differ from the official files by ~6/255 on "
        f"average); the 10 000-image case is a random sample of the training set (seed {SEED}).",
        "Times are wall seconds; `*` = measured on a random subset of the queries and extrapolated "
        "linearly. Exact = indices and distances of a random sample of queries equal to an integer "
        "numpy brute force (ties to the lowest index; baselines: distances within 1e-5 relative). "
        "Extra memory = peak RSS of the search above the RSS before it (sepcheck rows).",
        "",
    ]
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        lines += [f"## {rs[0]['data']}", "",
                  f"{rs[0]['date']}, load average {rs[0]['load_average_start']} -> {rs[0]['load_average_end']}.", "",
                  "| norm | method | seconds | CPU seconds | extra memory | exact vs oracle |",
                  "| --- | --- | ---: | ---: | ---: | --- |"]
        for r in rs:
            mem = f"{r['extra_peak_mib']:.0f} MiB" if "extra_peak_mib" in r else "-"
            ex = (f"yes ({r['checked']} queries)" if r["exact"] else
                  f"no ({r['index_mismatches']}/{r['checked']} indices differ, rel err {r['max_rel_err']:.1e})")
            cpu = f"{r['cpu_seconds']:.2f}" + ("*" if r.get("subset") else "")
            lines.append(f"| {r['norm']} | {r['method']} | {fmt_s(r)} | {cpu} | {mem} | {ex} |")
        lines.append("")
    for title, parts in TOTALS:
        have = [p for p in parts if any(r["case"] == p for r in rows)]
        if len(have) < len(parts):
            continue
        lines += [f"## {title} (sum of the two cases)", "", "| norm | method | seconds |", "| --- | --- | ---: |"]
        for r in (r for r in rows if r["case"] == parts[0]):
            other = next((o for o in rows if o["case"] == parts[1] and o["method"] == r["method"]), None)
            if other is not None:
                star = "*" if r.get("subset") or other.get("subset") else ""
                lines.append(f"| {r['norm']} | {r['method']} | {r['seconds'] + other['seconds']:.2f}{star} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help=f"comma-separated, of {', '.join(CASES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help=f"cases {', '.join(QUICK)} and smaller baseline subsets")
    ap.add_argument("--sample", type=int, default=30, help="queries checked against the oracle per case")
    ap.add_argument("--norms", default="linf,l1,l2", help="sepcheck rows to run (default: linf,l1,l2)")
    ap.add_argument("--arrays", type=Path, default=ARRAYS, help="folder with cifar10.npz and mnist.npz")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default benchmarks/results/bench_separation.json; its .md beside it); "
                         "with --smoke a folder")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.smoke:  # every step of a full run (children, baselines, oracle, save), one case of tiny arrays
        folder = _smoke.out_dir(args.out, "bench_separation")
        args.arrays = _smoke.write_arrays(folder / "arrays")
        args.out, args.cases, args.sample = folder / "bench_separation.json", "mnist-test", 5
    args.out = args.out or RESULTS / "bench_separation.json"
    cases = args.cases.split(",") if args.cases else list(QUICK if args.quick else CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}: choose from {', '.join(CASES)}")
    arrays = load_arrays(args.arrays)
    meta = {"machine": machine(), "smoke": args.smoke}
    print(f"{machine_line(meta['machine'])} Load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_separation_") as tmp:
        for case in cases:  # saved after every case: a long run that is stopped keeps its cases
            load0 = [round(x, 2) for x in os.getloadavg()]
            new = run_case(case, arrays, args.sample, args.quick, Path(tmp), args.norms.split(","))
            load1 = [round(x, 2) for x in os.getloadavg()]
            for r in new:
                r.update(load_average_start=load0, load_average_end=load1, date=time.strftime("%Y-%m-%d %H:%M"))
            md = save(args.out, meta, case, new)
    print("\n" + md + f"\nwrote {args.out} and {args.out.with_suffix('.md')}")


def save(out: Path, meta: dict, case: str, new: list[dict]) -> str:
    """Replace the rows of ``case`` in ``out`` (JSON) by ``new``, rewrite the Markdown table."""
    old = json.loads(out.read_text()) if out.exists() else {}
    rows = [r for r in old.get("rows", []) if r["case"] != case]
    for r in rows:  # rows of a run that recorded its load per run, not per case
        run = next((u for u in old.get("runs", []) if r["case"] in u["cases"]), None)
        if "load_average_start" not in r and run is not None:
            r.update(load_average_start=run["load_average_start"], load_average_end=run["load_average_end"],
                     date=run["date"][:16])
    rows = [r for r in rows if "load_average_start" in r] + new
    rows.sort(key=lambda r: list(CASES).index(r["case"]))
    meta = {**meta, "cases": list(dict.fromkeys(r["case"] for r in rows)), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(meta, indent=1))
    md = markdown(meta, rows)
    out.with_suffix(".md").write_text(md + "\n")
    return md

if __name__ == "__main__":
    main()
