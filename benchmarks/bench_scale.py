"""Out-of-core search at scale: peak memory against ``--memory-budget`` and the cost of streaming.

    python benchmarks/bench_scale.py [--cases mnist cifar10] [--scale 0.25] [--budget 256MiB]
                                     [--work-dir /tmp/sepcheck-scale] [--norm linf] [--out PATH]
    python benchmarks/bench_scale.py --smoke [--out DIR]     # files of a few hundred rows, seconds

Data (built once, cached under ``--work-dir``; chunked uint8 HDF5 with ``X`` (n, d) and
``y``):

* ``mnist``: 240 000 x 784, four copies of the real MNIST training set (60 000), copy c
  jittered with integer noise uniform in [-2, 2] (numpy seed c), clipped to [0, 255];
* ``cifar10``: 200 000 x 3 072, the 60 000 real CIFAR-10 JPEG-copy images (train then test)
  repeated, copy c jittered the same way (seed 100 + c), cut at 200 000.

Arrays come from ``/tmp/bench_local/{mnist,cifar10}.npz`` when present
(``benchmarks/make_bench_arrays.py`` builds them from ``../shared/data``), else from
``../shared/data`` with sepcheck's readers. ``--scale s`` searches the first ``s * n`` rows.

Each case runs train-train (``nearest_other(X, y)``, k = 1) in three fresh subprocesses:

* ``stream``: from the HDF5 file with ``memory_budget``: the baseline RSS (``ru_maxrss``
  after the imports and a tiny streamed search from the same file) and the peak RSS of the
  whole run (``ru_maxrss`` at the end); the search's block sizes;
* ``array``: the same rows in memory as an ``ArraySource`` streamed at the same block sizes
  (what streaming from disk costs over the same computation);
* ``memory``: the plain in-memory search (the rows loaded, no blocks).

Results: ``benchmarks/results/bench_scale.{json,md}``. New cases: add a function to
:data:`CASES` (it returns the rows of the table) and name it in ``--cases``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _smoke
import numpy as np
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LOCAL = Path("/tmp/bench_local")
RESULTS = ROOT / "benchmarks" / "results"

#: rows per HDF5 chunk
CHUNK_ROWS = 1024
#: the jitter: integer noise uniform in [-JITTER, JITTER]
JITTER = 2
SIZES = {"mnist": 240_000, "cifar10": 200_000}
#: --smoke: rows of the files made of _smoke.fake_data (120 MNIST-like, 33 CIFAR-like rows; the
#: child warms up on 300)
SMOKE_SIZES = {"mnist": 480, "cifar10": 330}


# ----- data --------------------------------------------------------------------------------
def real_arrays(name: str, data: Path = DATA, local_dir: Path = LOCAL) -> tuple[np.ndarray, np.ndarray]:
    """The real rows (n, d) uint8 and labels that the copies are made of."""
    local = local_dir / f"{name}.npz"
    if local.is_file():
        z = np.load(local)
        if name == "mnist":
            return z["X_train"], z["y_train"]
        return np.concatenate([z["X_train"], z["X_test"]]), np.concatenate([z["y_train"], z["y_test"]])
    if name == "mnist":
        from sepcheck.datasets import read_idx_pair

        folder = data / "mnist-full"
        X, y = read_idx_pair(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
        return X.reshape(len(X), -1), y
    from sepcheck.datasets import load_imagefolder

    ds = load_imagefolder(data / "cifar10-jpeg", progress=True)
    X = np.concatenate([ds.X.reshape(len(ds.X), -1), ds.X_test.reshape(len(ds.X_test), -1)])
    return X, np.concatenate([ds.y, ds.y_test])


def build(name: str, work: Path, size: int | None = None, data: Path = DATA, local_dir: Path = LOCAL) -> Path:
    """The jittered HDF5 file of ``name`` (built once), of ``size`` rows (default ``SIZES[name]``)."""
    import h5py

    n = size or SIZES[name]
    path = work / f"{name}-{n}.h5"
    if path.is_file():
        return path
    work.mkdir(parents=True, exist_ok=True)
    X0, y0 = real_arrays(name, data, local_dir)
    d = X0.shape[1]
    seed0 = 0 if name == "mnist" else 100
    tmp = path.with_suffix(".part")
    with h5py.File(tmp, "w") as f:
        dx = f.create_dataset("X", shape=(n, d), dtype=np.uint8, chunks=(min(CHUNK_ROWS, n), d))
        f.create_dataset("y", data=np.resize(y0, n).astype(np.int64))
        for c, start in enumerate(range(0, n, len(X0))):
            rows = min(len(X0), n - start)
            rng = np.random.default_rng(seed0 + c)
            for s in range(0, rows, 8192):  # bounded memory while building
                block = X0[s : min(rows, s + 8192)].astype(np.int16)
                block += rng.integers(-JITTER, JITTER + 1, block.shape, dtype=np.int16)
                dx[start + s : start + s + len(block)] = np.clip(block, 0, 255).astype(np.uint8)
        f.attrs["made_of"] = f"{name}: {len(X0)} real rows, copy c jittered by U{{-{JITTER}..{JITTER}}} (seed {seed0}+c)"
    os.replace(tmp, path)
    return path


# ----- one measurement in a fresh process ----------------------------------------------------
CHILD = r"""
import json, resource, sys, time
import numpy as np
mode, path, n, budget, norm, q_rows, b_rows, repeat = sys.argv[1:9]
n, q_rows, b_rows, repeat = int(n), int(q_rows), int(b_rows), int(repeat)
import h5py, sepcheck
from sepcheck.engine.sources import ArraySource, open_source
from sepcheck.engine.options import SearchOptions
from sepcheck.engine.stream import stream_search
with h5py.File(path, "r") as f:
    y = f["y"][:n]
src = open_source(path).rows(0, n)
tiny = src.rows(0, 300)
stream_search(tiny, np.arange(300) % 2, norm=norm, options=SearchOptions(memory_budget=budget))  # imports, kernels, h5py
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = {"mode": mode, "n": n, "baseline_bytes": peak()}
info = {}
X = None if mode == "stream" else src.read(0, n)
times = []
for _ in range(repeat):
    t = time.perf_counter()
    if mode == "stream":
        sepcheck.nearest_other(src, y, norm=norm, memory_budget=budget, info=info)
    elif mode == "array":
        stream_search(ArraySource(X), y, norm=norm, options=SearchOptions(memory_budget=budget), query_rows=q_rows,
                      block_rows=b_rows, info=info)
    else:
        sepcheck.nearest_other(X, y, norm=norm, info=info)
    times.append(time.perf_counter() - t)
out["seconds"] = min(times)
out["all_seconds"] = times
out["cpu_seconds"] = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
out["peak_bytes"] = peak()
out["info"] = info
out["load"] = list(__import__("os").getloadavg())
print(json.dumps(out))
"""


def child(mode: str, path: Path, n: int, args: argparse.Namespace, q_rows: int = 0, b_rows: int = 0) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(n), args.budget, args.norm, str(q_rows), str(b_rows),
         str(args.repeat)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if res.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def streaming_case(name: str, args: argparse.Namespace) -> dict:
    """The three runs of one data set (see the module docstring)."""
    size = SMOKE_SIZES[name] if args.smoke else SIZES[name]
    path = build(name, args.work_dir, size, args.data, args.arrays)
    n = min(size, max(1000, int(round(size * args.scale))))
    print(f"{name}: n={n} from {path}", file=sys.stderr)
    stream = child("stream", path, n, args)
    q_rows, b_rows = stream["info"]["query_rows"], stream["info"]["block_rows"]
    array = child("array", path, n, args, q_rows, b_rows)
    memory = child("memory", path, n, args)
    from sepcheck.core.validation import as_memory_budget

    budget = as_memory_budget(args.budget)
    extra = stream["peak_bytes"] - stream["baseline_bytes"]
    return {
        "case": name, "n": n, "d": int(h5_shape(path)[1]), "norm": args.norm,
        "budget_bytes": budget, "query_rows": q_rows, "block_rows": b_rows,
        "stream": stream, "array": array, "memory": memory,
        "stream_over_array": stream["seconds"] / array["seconds"],
        "stream_over_memory": stream["seconds"] / memory["seconds"],
        "peak_minus_baseline_bytes": extra, "peak_within_budget": extra <= budget,
    }


CASES = {"mnist": streaming_case, "cifar10": streaming_case}


def h5_shape(path: Path) -> tuple[int, ...]:
    import h5py

    with h5py.File(path, "r") as f:
        return f["X"].shape


def markdown(rows: list[dict], args: argparse.Namespace, m: dict) -> str:
    mib = 2**20
    lines = [
        "# bench_scale: streamed search from HDF5 (memory and throughput)",
        "",
        f"`python benchmarks/bench_scale.py --scale {args.scale} --budget {args.budget} --norm {args.norm} "
        f"--repeat {args.repeat}` (seconds: the fastest of the repeats), "
        f"{time.strftime('%Y-%m-%d %H:%M')}; shared machine: load averages per run below. Train-train, k = 1, "
        "backend auto (CPU).",
        "",
        machine_line(m),
        "",
        "| case | n x d | blocks (query block / reference block rows) | baseline RSS MiB | peak RSS MiB "
        "| peak - baseline MiB (budget) | streamed s | in-memory at same blocks s | plain in-memory s "
        "| stream / same blocks | stream / plain | load (1 min) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        s, a, m = r["stream"], r["array"], r["memory"]
        lines.append(
            f"| {r['case']} | {r['n']} x {r['d']} | {r['query_rows']} / {r['block_rows']} "
            f"| {s['baseline_bytes'] / mib:.0f} | {s['peak_bytes'] / mib:.0f} "
            f"| {r['peak_minus_baseline_bytes'] / mib:.0f} ({r['budget_bytes'] / mib:.0f}) "
            f"| {s['seconds']:.1f} | {a['seconds']:.1f} | {m['seconds']:.1f} "
            f"| {r['stream_over_array']:.2f} | {r['stream_over_memory']:.2f} "
            f"| {s['load'][0]:.1f} / {a['load'][0]:.1f} / {m['load'][0]:.1f} |"
        )
    lines += [
        "",
        "Data: `mnist` = four copies of the real MNIST training set, `cifar10` = the 60 000 CIFAR-10 "
        f"JPEG-copy images repeated, each copy jittered by integer noise in [-{JITTER}, {JITTER}] "
        "(a different seed per copy), clipped; the first n rows of the file are searched. Peak and "
        "baseline are `ru_maxrss` of the streamed run's process (baseline: after the imports and a "
        "300-row streamed search).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--scale", type=float, default=1.0, help="search the first scale * n rows")
    ap.add_argument("--budget", default="256MiB")
    ap.add_argument("--norm", default="linf")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest is reported")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/sepcheck-scale"))
    ap.add_argument("--build-only", action="store_true", help="build the HDF5 files and stop")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with mnist-full/ and cifar10-jpeg/")
    ap.add_argument("--arrays", type=Path, default=LOCAL, help="folder with mnist.npz / cifar10.npz (used first)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results path without suffix (default benchmarks/results/bench_scale; .json and .md "
                         "written); with --smoke a folder")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:  # files of SMOKE_SIZES rows made of a tiny ../shared/data look-alike, the smallest budget
        folder = _smoke.out_dir(args.out, "bench_scale")
        args.out, args.work_dir, args.arrays = folder / "bench_scale", folder / "work", folder / "no-arrays"
        args.data, args.budget, args.repeat = _smoke.fake_data(folder / "data"), "16MiB", 1
    args.out = args.out or RESULTS / "bench_scale"
    if args.build_only or args.smoke:
        for name in args.cases:
            print(build(name, args.work_dir, SMOKE_SIZES[name] if args.smoke else None, args.data, args.arrays))
        if args.build_only:
            return
        args.cases = args.cases[:1]  # smoke: every file built (each reader), the child processes on one case
    m = machine()
    rows = [CASES[name](name, args) for name in args.cases]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"machine": m, "args": {k: str(v) for k, v in vars(args).items()},
                                                         "rows": rows}, indent=2))
    args.out.with_suffix(".md").write_text(markdown(rows, args, m))
    print(markdown(rows, args, m))


if __name__ == "__main__":
    main()
