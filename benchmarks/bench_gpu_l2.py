"""GPU l2 benchmark: sepcheck's exact l2 search on CUDA (torch's int8 GEMM, the fused
Triton kernel, float32 candidates + rerank, projection bounds in torch operations; the
target for the last: CIFAR-10 50 000 within 0.3 s on one H100) against a plain
float32 GEMM + argmin per class (what faiss-gpu ``IndexFlatL2`` computes; used here as its
stand-in where faiss-gpu is not installed, and *not* exact).

    python benchmarks/bench_gpu_l2.py --data bench_arrays.npz [--n 50000] [--out DIR]
    python benchmarks/bench_gpu_l2.py --smoke [--out DIR]     # no GPU: CPU, TRITON_INTERPRET=1, tiny shapes

``bench_arrays.npz`` comes from ``benchmarks/make_bench_arrays.py`` (the CIFAR-10 JPEG copy).
Every result is checked against an exact float64 brute force on a sample of queries.
Writes ``bench_gpu_l2.json`` and ``.md`` under ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import _smoke
import numpy as np
import torch
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: where every method runs (--smoke: "cpu", triton in its interpreter)
DEVICE = "cuda"


def timed(fn):
    if DEVICE != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if DEVICE != "cpu":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def gemm_argmin(X: np.ndarray, y: np.ndarray, block: int = 4096):
    """Nearest other-label row by a float32 GEMM (faiss IndexFlatL2's arithmetic), on the GPU."""
    R = torch.from_numpy(X).to(DEVICE).float()
    lab = torch.from_numpy(y).to(DEVICE)
    sq = (R * R).sum(1)
    best_d = torch.empty(len(X), device=DEVICE)
    best_i = torch.empty(len(X), dtype=torch.int64, device=DEVICE)
    for s in range(0, len(X), block):
        q = R[s : s + block]
        d = sq[s : s + block, None] + sq[None, :] - 2.0 * (q @ R.T)
        d.masked_fill_(lab[s : s + block, None] == lab[None, :], float("inf"))
        v, i = d.min(1)
        best_d[s : s + block], best_i[s : s + block] = v, i
    return best_d.clamp_min(0).sqrt().cpu().numpy(), best_i.cpu().numpy()


def forced_path(X, y, info, path: str):
    """sepcheck with its l2 path forced (SEPCHECK_L2_PATH): 'float32' (GEMM candidates,
    reranked) or 'projection' (projection bounds; torch operations on CUDA)."""
    from sepcheck import nearest_other

    keep = os.environ.get("SEPCHECK_L2_PATH")
    os.environ["SEPCHECK_L2_PATH"] = path
    try:
        return nearest_other(X, y, norm="l2", device=DEVICE, info=info)
    finally:
        if keep is None:
            os.environ.pop("SEPCHECK_L2_PATH", None)
        else:
            os.environ["SEPCHECK_L2_PATH"] = keep


def oracle(X, y, rows):
    out_d, out_i = [], []
    Xf = X.astype(np.float64)
    for r in rows:
        d = ((Xf - Xf[r]) ** 2).sum(1)
        d[y == y[r]] = np.inf
        j = int(np.argmin(d))
        out_d.append(np.sqrt(d[j])), out_i.append(j)
    return np.array(out_d), np.array(out_i)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="bench_arrays.npz from make_bench_arrays.py (required but with --smoke)")
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--sample", type=int, default=64)
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    global DEVICE
    if args.smoke:  # every method on the CPU; triton in its interpreter (read at its import), so tiny shapes
        os.environ["TRITON_INTERPRET"] = "1"
        DEVICE, args.out = "cpu", _smoke.out_dir(args.out, "bench_gpu_l2")
        args.data = _smoke.write_arrays(Path(args.out) / "arrays", n_train=32, n_test=8, cifar_dim=40,
                                        mnist_dim=16) / "bench_arrays.npz"
        args.sample = 8
    elif args.data is None:
        ap.error("--data is required (or --smoke)")
    elif not torch.cuda.is_available():
        sys.exit("bench_gpu_l2.py needs a CUDA GPU (torch.cuda.is_available() is False); --smoke runs on the CPU")
    args.out = args.out or ROOT / "benchmarks" / "results"
    from sepcheck import nearest_other

    z = np.load(args.data)
    X, y = z["X_train"][: args.n], z["y_train"][: args.n].astype(np.int64)
    rows = np.random.default_rng(0).choice(len(X), min(args.sample, len(X)), replace=False)
    od, oi = oracle(X, y, rows)
    m = machine()
    res = {"card": m["gpu"] or "no GPU: smoke run on the CPU, TRITON_INTERPRET=1", "n": len(X), "d": X.shape[1],
           "machine": m, "smoke": args.smoke, "rows": []}
    print(machine_line(m), file=sys.stderr, flush=True)
    warm = np.random.default_rng(1).choice(len(X), min(2000, len(X)), replace=False)
    nearest_other(X[warm], y[warm], norm="l2", device=DEVICE)  # warm-up (and triton's compile)
    nearest_other(X[warm], y[warm], norm="l2", device=DEVICE, backend="triton")
    gemm_argmin(X[warm], y[warm])
    forced_path(X[warm], y[warm], {}, "projection")
    info: dict = {}
    for name, fn in [
        ("sepcheck auto (exact int8 GEMM)", lambda: nearest_other(X, y, norm="l2", device=DEVICE, info=info)),
        ("sepcheck triton (fused int8 tl.dot + running best)",
         lambda: nearest_other(X, y, norm="l2", device=DEVICE, backend="triton", info=info)),
        ("sepcheck float32 GEMM candidates + exact rerank", lambda: forced_path(X, y, info, "float32")),
        ("sepcheck projection bounds (forced; torch operations on CUDA)",
         lambda: forced_path(X, y, info, "projection")),
        ("float32 GEMM + argmin (faiss-gpu IndexFlatL2 arithmetic)", lambda: gemm_argmin(X, y)),
    ]:
        info.clear()  # each row's own: the lambdas share the dict
        (d, i), s = timed(fn)
        d = np.asarray(d).reshape(len(X), -1)[:, 0]
        i = np.asarray(i).reshape(len(X), -1)[:, 0]
        scale = 255.0 if "sepcheck" in name else 1.0
        row = {"method": name, "seconds": round(s, 3),
               "dist_exact_on_sample": bool(np.array_equal(d[rows] * scale, od)),
               "max_rel_err": float(np.max(np.abs(d[rows] * scale - od) / np.maximum(od, 1e-12))),
               "idx_match_on_sample": bool(np.array_equal(i[rows], oi)), "info": {k: v for k, v in info.items() if isinstance(v, (int, float, str))}}
        res["rows"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu_l2.json").write_text(json.dumps(res, indent=1))
    lines = [f"# bench_gpu_l2: exact l2 on {res['card']}, {res['n']} x {res['d']} train-train", "", machine_line(m), "",
             "| method | seconds | distances exact on sample | max rel err | indices match |", "|---|---:|---|---:|---|"]
    lines += [f"| {r['method']} | {r['seconds']} | {r['dist_exact_on_sample']} | {r['max_rel_err']:.1e} | "
              f"{r['idx_match_on_sample']} |" for r in res["rows"]]
    (out / "bench_gpu_l2.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
