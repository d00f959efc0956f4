"""GPU benchmark of exact linf / l1 nearest-other-label search.

    python benchmarks/bench_gpu.py --cifar bench_arrays.npz [--quick] [--cases cifar,mnist]
        [--methods triton,cdist] [--imagenet-rows N] [--imagenet-queries M] [--tile-sweep] [--append]
    python benchmarks/bench_gpu.py --smoke [--out DIR]    # no GPU: every case and method on the CPU, triton in
                                                          # its interpreter (TRITON_INTERPRET=1), tiny shapes

``bench_arrays.npz`` comes from ``benchmarks/make_bench_arrays.py`` (the real CIFAR-10 JPEG
copy and MNIST-full as uint8 rows). Methods: ``triton`` (sepcheck's Triton backend: every variant of
``TRITON_VARIANTS``, e.g. ``triton-prefix``, the pruned search, and ``triton-packed``, the
brute-force tile kernel; a single variant can be named in ``--methods`` too), ``sepcheck-torch`` (today's torch backend), ``cdist`` (``torch.cdist`` p=inf
or 1 on float32 tiles, masked and reduced), ``naive`` (the paper's broadcast
``(a[:, None] - b[None]).abs().max(-1)`` in small float32 blocks) and ``faiss`` (skipped with a
note: faiss has no linf/l1 GPU index; ``IndexFlat`` with METRIC_Linf runs on the CPU only).
Slow methods run on a subset of the queries and are extrapolated linearly (marked in the
table). Every result is checked against the CPU engine (``sepcheck.nearest_other`` on the
CPU, numba) on a sample of queries: distances for every method, indices for triton.

Cases: CIFAR-10 train-train (50 000) and test-train (10 000 x 50 000), linf and l1; MNIST
train-train (60 000) linf; synthetic ImageNet-64 scale (1 281 167 x 12 288 uint8, 1 000
labels, generated on the GPU in chunks with a fixed seed): ``--imagenet-queries`` queries
against ``--imagenet-rows`` rows, extrapolated to 1 281 167 queries x 1 281 167 rows
(time x (1 281 167 / M) x (1 281 167 / N): linear in queries and in rows).

Writes benchmarks/results/bench_gpu.json and bench_gpu.md (card name included). Progress
on stderr. Timing: torch.cuda.synchronize around each call, after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import _smoke
import numpy as np
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_ROWS, IMAGENET_DIM, IMAGENET_CLASSES = 1_281_167, 12_288, 1000
#: where every method runs (--smoke sets "cpu" with TRITON_INTERPRET=1)
DEVICE = "cuda"
#: machine() of this run, for the results files
MACHINE: dict = {}


def log(msg: str) -> None:
    print(f"[bench_gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def synced(fn, *args):
    """(result, seconds) of ``fn(*args)`` between two CUDA synchronisations."""
    import torch

    if DEVICE != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn(*args)
    if DEVICE != "cpu":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


# ---------------------------------------------------------------- methods: each returns (m,) distances


class Skipped(Exception):
    """A method that cannot run here: recorded as a note, not an error."""


#: tile configurations (BQ, BR, BD, num_warps) tried by --tile-sweep with the packed lanes
SWEEP_TILES = ((64, 64, 4, 8), (64, 64, 8, 8), (64, 64, 4, 4), (32, 64, 4, 4), (64, 32, 4, 4), (128, 64, 2, 8),
               (64, 128, 4, 8), (32, 32, 8, 2))
#: --tile-sweep of the pruned search (prune='prefix'): phase-1 tiles (BQ, BR, PW, num_warps; PW
#: packed words of 4 features in the prefix bound) and REFINE_CANDIDATES (0: seeds only)
SWEEP_PREFIX = (((64, 64, 16, 8), 64), ((64, 64, 8, 8), 64), ((64, 64, 32, 8), 64), ((64, 64, 16, 4), 64),
                ((32, 64, 16, 4), 64), ((64, 128, 16, 8), 64), ((128, 64, 16, 8), 64), ((64, 64, 16, 8), 0),
                ((64, 64, 16, 8), 16), ((64, 64, 16, 8), 256))
#: the triton variants timed per case: name -> (lanes, prune); f16 is linf only
TRITON_VARIANTS = {"triton-prefix": ("packed", "prefix"), "triton-packed": ("packed", "tiles"),
                   "triton-packed-noprune": ("packed", "none"), "triton-f16": ("f16", "tiles"),
                   "triton-i32": ("i32", "tiles")}


def run_triton(Q, yq, R, yr, p, lanes, prune="auto", tiles=None, refine=None):
    from sepcheck.engine.backends import triton_backend

    old = triton_backend.REFINE_CANDIDATES
    if refine is not None:  # a module constant: set for this call only
        triton_backend.REFINE_CANDIDATES = refine
    try:
        d, i, info = triton_backend.search_triton(Q, yq, R, yr, p=p, k=1, lanes=lanes, device=DEVICE, prune=prune,
                                                  tiles=tiles)
    finally:
        triton_backend.REFINE_CANDIDATES = old
    return d[:, 0, 0], i[:, 0, 0], info


def run_sepcheck_torch(Q, yq, R, yr, p):
    import sepcheck

    d, i = sepcheck.nearest_other(R, yr, Q, yq, norm="linf" if math.isinf(p) else "l1", backend="torch",
                                  device=DEVICE, raw=True)
    return d[:, 0], i[:, 0], {}


def _tiles(Q, yq, R, yr, p, tile_fn, bq, br):
    """Min over reference tiles of a (bq x br) distance tile, masking the query's label."""
    import torch

    dev = torch.device(DEVICE)
    Rt = torch.from_numpy(R).to(dev)
    rl = torch.from_numpy(yr).to(dev)
    out = np.empty(len(Q))
    for qs in range(0, len(Q), bq):
        q = torch.from_numpy(Q[qs : qs + bq]).to(dev, torch.float32)
        ql = torch.from_numpy(yq[qs : qs + bq]).to(dev)
        best = torch.full((q.shape[0],), math.inf, device=dev)
        for rs in range(0, len(R), br):
            r = Rt[rs : rs + br].to(torch.float32)
            t = tile_fn(q, r, p)
            t.masked_fill_(ql[:, None] == rl[None, rs : rs + br], math.inf)
            best = torch.minimum(best, t.min(dim=1).values)
        out[qs : qs + bq] = best.cpu().numpy()
    return out, None, {}


def run_cdist(Q, yq, R, yr, p):
    import torch

    return _tiles(Q, yq, R, yr, p, lambda q, r, p: torch.cdist(q, r, p=p), 1024, 8192)


def run_naive(Q, yq, R, yr, p):
    def tile(q, r, p):
        diff = (q[:, None, :] - r[None]).abs()
        return diff.amax(-1) if math.isinf(p) else diff.sum(-1)

    return _tiles(Q, yq, R, yr, p, tile, 16, 4096)


def run_faiss(Q, yq, R, yr, p):
    try:
        import faiss  # noqa: F401
    except ImportError as exc:
        raise Skipped("faiss is not installed on this machine") from exc
    raise Skipped("faiss-gpu has no linf/l1 index (METRIC_Linf / METRIC_L1 are CPU-only): not comparable")


def skip_prefix(*_args):
    raise Skipped("uniform random rows: every pair's prefix bound reaches the threshold, the pruned search "
                  "degenerates (use triton-packed)")


METHODS = {"triton": None, "sepcheck-torch": run_sepcheck_torch, "cdist": run_cdist, "naive": run_naive,
           "faiss": run_faiss}


# ---------------------------------------------------------------- cases


def load_cases(args):
    """name -> (queries, labels, reference, labels, p, self_search, full_queries) (lazy for imagenet)."""
    cases = {}
    if args.cifar:
        z = np.load(args.cifar)
        if "X_train" in z:
            Xtr, ytr, Xte, yte = z["X_train"], z["y_train"].astype(np.int64), z["X_test"], z["y_test"].astype(np.int64)
            for norm, p in (("linf", math.inf), ("l1", 1.0)):
                cases[f"cifar10-train-train-{norm}"] = lambda p=p: (Xtr, ytr, Xtr, ytr, p)
                cases[f"cifar10-test-train-{norm}"] = lambda p=p: (Xte, yte, Xtr, ytr, p)
        if "mnist_X_train" in z:
            Xm, ym = z["mnist_X_train"], z["mnist_y_train"].astype(np.int64)
            cases["mnist-train-train-linf"] = lambda: (Xm, ym, Xm, ym, math.inf)
    cases["imagenet64-synthetic-linf"] = lambda: imagenet(args)
    return cases


def imagenet(args):
    """Synthetic uint8 rows generated on the GPU in chunks (fixed seed); host copies."""
    import torch

    n, m, dim = args.imagenet_rows, args.imagenet_queries, args.imagenet_dim
    g = torch.Generator(device=DEVICE).manual_seed(0)
    R = np.empty((n, dim), dtype=np.uint8)
    for s in range(0, n, 65536):
        e = min(n, s + 65536)
        R[s:e] = torch.randint(0, 256, (e - s, dim), generator=g, device=DEVICE, dtype=torch.uint8).cpu().numpy()
    y = torch.randint(0, IMAGENET_CLASSES, (n,), generator=g, device=DEVICE).cpu().numpy().astype(np.int64)
    return R[:m], y[:m], R, y, math.inf


def cpu_check(Q, yq, R, yr, p, sample):
    """The CPU engine's answer for the sample queries (plain numpy if the engine fails here)."""
    import sepcheck

    try:
        d, i = sepcheck.nearest_other(R, yr, Q[sample], yq[sample], norm="linf" if math.isinf(p) else "l1",
                                      device="cpu", raw=True)
        return d[:, 0], i[:, 0]
    except Exception as exc:  # noqa: BLE001 - e.g. no numba on the GPU machine
        log(f"CPU engine failed ({type(exc).__name__}: {exc}); checking with plain numpy instead")
    d = np.empty(sample.size)
    i = np.empty(sample.size, dtype=np.int64)
    for t, s in enumerate(sample):
        row = np.zeros(len(R), dtype=np.int64)
        for c in range(0, R.shape[1], 256):
            diff = np.abs(R[:, c : c + 256].astype(np.int16) - Q[s, c : c + 256].astype(np.int16))
            row = np.maximum(row, diff.max(1)) if math.isinf(p) else row + diff.sum(1)
        row = np.where(yr != yq[s], row, np.iinfo(np.int64).max)
        i[t] = int(np.argmin(row))
        d[t] = row[i[t]] if row[i[t]] < np.iinfo(np.int64).max else np.inf
    return d, i


def bench_case(name, make, args, methods, rows):
    log(f"case {name}: loading")
    Q, yq, R, yr, p = make()
    m_full = len(Q)
    if name.startswith("imagenet"):
        m_full = IMAGENET_ROWS
    rng = np.random.default_rng(0)
    n_sample = min(args.sample, 8) if name.startswith("imagenet") else args.sample
    sample = np.sort(rng.choice(len(Q), size=min(n_sample, len(Q)), replace=False))
    log(f"case {name}: CPU reference on {sample.size} sample queries ({len(R)} rows x {R.shape[1]})")
    want_d, want_i = cpu_check(Q, yq, R, yr, p, sample)
    variants = [(vname, lambda Q, yq, R, yr, p, lanes=lanes, prune=prune: run_triton(Q, yq, R, yr, p, lanes, prune))
                for vname, (lanes, prune) in TRITON_VARIANTS.items()
                if ("triton" in methods or vname in methods) and (lanes != "f16" or math.isinf(p))
                and (prune != "prefix" or math.isinf(p) or args.prefix_l1)]
    if args.tile_sweep and name.startswith("cifar10-train-train"):  # per variant named (or "triton")
        if methods & {"triton", "triton-prefix"} and (math.isinf(p) or args.prefix_l1):
            variants += [(f"triton-prefix-{'x'.join(map(str, t))}-r{refine}",
                          lambda Q, yq, R, yr, p, t=t, refine=refine: run_triton(Q, yq, R, yr, p, "packed", "prefix", t,
                                                                                 refine))
                         for t, refine in SWEEP_PREFIX]
        if methods & {"triton", "triton-packed"}:
            variants += [(f"triton-packed-{'x'.join(map(str, t))}",
                          lambda Q, yq, R, yr, p, t=t: run_triton(Q, yq, R, yr, p, "packed", "tiles", t))
                         for t in SWEEP_TILES]
    variants += [(mname, fn) for mname, fn in METHODS.items() if fn is not None and mname in methods]
    if name.startswith("imagenet"):  # uniform random bytes: every linf is ~255, no bound prunes
        variants = [(v, skip_prefix) if v.startswith("triton-prefix") else (v, fn) for v, fn in variants]
    for mname, fn in variants:
        row = {"case": name, "method": mname, "n_ref": len(R), "dim": int(R.shape[1]), "norm": "linf" if math.isinf(p) else "l1"}
        try:
            slow = not mname.startswith("triton")
            m = min(len(Q), args.slow_queries if slow else (args.quick_queries if args.quick else len(Q)))
            if slow and name.startswith("imagenet"):
                m = min(m, 256)
            qi = np.union1d(np.arange(m), sample)
            log(f"{name} / {mname}: warm-up")
            if slow:
                fn(Q[:64], yq[:64], R[: min(len(R), 4096)], yr[: min(len(R), 4096)], p)
            else:  # the same shapes as the timed call: triton compiles per shape class
                fn(Q[qi], yq[qi], R, yr, p)
            log(f"{name} / {mname}: {qi.size} queries x {len(R)} rows")
            (d, i, info), secs = synced(fn, Q[qi], yq[qi], R, yr, p)
            pos = np.searchsorted(qi, sample)
            dist_ok = bool(np.array_equal(d[pos], want_d))
            idx_ok = None if i is None else bool(np.array_equal(i[pos], want_i))
            # queries extrapolated linearly; synthetic ImageNet rows quadratically (train-train)
            scale = m_full / qi.size * (IMAGENET_ROWS / len(R) if name.startswith("imagenet") else 1.0)
            row.update(queries_run=int(qi.size), queries_full=int(m_full), seconds_run=secs, scale=scale,
                       seconds=secs * scale, extrapolated=scale != 1.0, distances_match_cpu=dist_ok,
                       indices_match_cpu=idx_ok, info={k: v for k, v in info.items() if k != "device"})
            pairs = (f"; pairs after the prefix bound {info['pairs_prefix']}, complete {info['pairs_complete']} "
                     f"of {qi.size * len(R)}; stage seconds "
                     + ", ".join(f"{k} {v:.3f}" for k, v in info["stage_seconds"].items())) if "pairs_prefix" in info else ""
            log(f"{name} / {mname}: {secs:.3f} s for {qi.size} queries -> {secs * scale:.3f} s for {m_full}; "
                f"distances match CPU: {dist_ok}, indices: {idx_ok}{pairs}")
        except Skipped as exc:
            row.update(note=str(exc))
            log(f"{name} / {mname}: skipped: {exc}")
        except Exception as exc:  # noqa: BLE001 - every case records its error and the run goes on
            row.update(error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            log(f"{name} / {mname}: FAILED {row['error']}")
            traceback.print_exc(file=sys.stderr)
        rows.append(row)
        write(rows, args)


def write(rows, args):
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    card = torch.cuda.get_device_name(0) if DEVICE != "cpu" else "no GPU: smoke run on the CPU, TRITON_INTERPRET=1"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = None
    meta = {"card": card, "torch": torch.__version__, "triton": tv, "python": platform.python_version(),
            "cuda": torch.version.cuda, "quick": args.quick, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": MACHINE, "smoke": args.smoke}
    (out / "bench_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    lines = [f"# GPU benchmark: exact nearest other-label search ({card})", "",
             f"torch {meta['torch']}, triton {tv}, CUDA {meta['cuda']}; {meta['time']}."
             " `*`: run on a subset of the queries and extrapolated linearly (queries run / all queries).", "",
             machine_line(MACHINE), "",
             "| case | method | seconds | queries run | matches CPU (dist / idx) |", "|---|---|---|---|---|"]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['case']} | {r['method']} | skipped: {r['note']} | | |")
            continue
        if "error" in r:
            lines.append(f"| {r['case']} | {r['method']} | error: {r['error']} | | |")
            continue
        star = "*" if r["extrapolated"] else ""
        lines.append(f"| {r['case']} | {r['method']} | {r['seconds']:.3f}{star} | {r['queries_run']} / {r['queries_full']} | "
                     f"{r['distances_match_cpu']} / {r['indices_match_cpu']} |")
    (out / "bench_gpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar", type=Path, help="bench_arrays.npz from make_bench_arrays.py (CIFAR-10 + MNIST)")
    ap.add_argument("--cases", default="", help="comma-separated substrings of case names (default: all)")
    ap.add_argument("--methods", default="triton,sepcheck-torch,cdist,naive,faiss")
    ap.add_argument("--quick", action="store_true", help="triton on --quick-queries queries too (extrapolated)")
    ap.add_argument("--quick-queries", type=int, default=8192)
    ap.add_argument("--slow-queries", type=int, default=1024, help="queries for the slow methods (extrapolated)")
    ap.add_argument("--sample", type=int, default=32, help="queries checked against the CPU engine")
    ap.add_argument("--imagenet-rows", type=int, default=IMAGENET_ROWS)
    ap.add_argument("--imagenet-queries", type=int, default=8192)
    ap.add_argument("--imagenet-dim", type=int, default=IMAGENET_DIM, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--tile-sweep", action="store_true",
                    help="CIFAR-10 train-train: also time the pruned search with the configurations of "
                         "SWEEP_PREFIX and the packed tile kernel with SWEEP_TILES")
    ap.add_argument("--prefix-l1", action="store_true",
                    help="time triton-prefix on the l1 cases too (a prefix sum is a weak l1 bound: most pairs "
                         "survive it, which costs time and GPU memory)")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of other cases already in bench_gpu.json (runs split over commands)")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    global DEVICE, MACHINE, SWEEP_PREFIX, SWEEP_TILES
    if args.smoke:  # every case and method on the CPU; triton in its interpreter, so tiny shapes
        os.environ["TRITON_INTERPRET"] = "1"  # read when triton is imported: before any import of it
        DEVICE, args.out = "cpu", _smoke.out_dir(args.out, "bench_gpu")
        args.cifar = _smoke.write_arrays(args.out / "arrays", n_train=32, n_test=16, cifar_dim=16,
                                         mnist_dim=16) / "bench_arrays.npz"
        args.imagenet_rows, args.imagenet_queries, args.imagenet_dim = 32, 16, 16
        args.sample, args.tile_sweep, args.prefix_l1 = 8, True, True
        SWEEP_PREFIX, SWEEP_TILES = SWEEP_PREFIX[:2], SWEEP_TILES[:2]  # the sweep's code, not its length
    args.out = args.out or ROOT / "benchmarks" / "results"
    import torch

    MACHINE = machine()
    if DEVICE != "cpu" and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); --smoke runs on the CPU")
    log(f"card: {MACHINE['gpu'] if DEVICE != 'cpu' else 'none (the CPU, TRITON_INTERPRET=1)'}; {machine_line(MACHINE)}")
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    cases = {name: make for name, make in load_cases(args).items() if not wanted or any(w in name for w in wanted)}
    rows: list[dict] = []
    old = Path(args.out) / "bench_gpu.json"
    if args.append and old.exists():
        rows = [r for r in json.loads(old.read_text())["rows"] if r["case"] not in cases]
    for name, make in cases.items():
        try:
            bench_case(name, make, args, methods, rows)
        except Exception as exc:  # noqa: BLE001
            rows.append({"case": name, "method": "-", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]})
            traceback.print_exc(file=sys.stderr)
            write(rows, args)
    log(f"wrote {args.out}/bench_gpu.json and bench_gpu.md")
    failed = [f"{r['case']} / {r['method']}: {r['error']}" for r in rows if "error" in r]
    if args.smoke and failed:  # a full run records them and goes on; a smoke run is for finding them
        sys.exit("smoke run failed:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
