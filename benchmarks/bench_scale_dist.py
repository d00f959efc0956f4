"""Resumable and distributed runs at scale: the time a SIGKILL at 50 % costs, and one process
against two (torchrun, gloo) on the same cores.

    python benchmarks/bench_scale_dist.py [--case mnist] [--n 20000] [--shards 32]
                                          [--work-dir /tmp/sepcheck-scale] [--out PATH]
    python benchmarks/bench_scale_dist.py --smoke [--out DIR]     # 480 rows in 4 shards, seconds

The data is the first ``--n`` rows of ``bench_scale.py``'s jittered HDF5 file (``mnist``:
four jittered copies of the real MNIST training set; built once by :func:`bench_scale.build`),
copied to its own chunked HDF5 file so that ``sepcheck separation FILE.h5`` streams exactly
those rows. Every run is the command line in a fresh process (train-train linf, k = 1,
``--device cpu``, ``--shard-rows n / shards``):

* ``whole``: one process, 2 threads (``SEPCHECK_THREADS=2``), ``--out``: uninterrupted;
* ``killed`` + ``resumed``: the same run killed with SIGKILL once half of the shards are in
  the journal (polled), then ``--resume``; the time lost is killed + resumed - whole, and the
  shards computed after the resume are counted;
* ``ranks2``: ``torchrun --standalone --nproc_per_node 2 -m sepcheck separation ...`` (gloo,
  each rank 1 thread: sepcheck gives each rank cores / local ranks), compared with ``whole``.

All answers are compared (separation, distances, neighbours). Results:
``benchmarks/results/bench_scale_dist.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _smoke  # noqa: E402
from _machine import machine, machine_line  # noqa: E402
from bench_scale import DATA, LOCAL, SIZES, SMOKE_SIZES, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable
TORCHRUN = shutil.which("torchrun", path=str(Path(PY).parent)) or "torchrun"


def subset(src: Path, n: int, work: Path) -> Path:
    """The first n rows of ``src`` in their own chunked HDF5 file (X, y)."""
    import h5py

    path = work / f"{src.stem}-first{n}.h5"
    if path.is_file():
        return path
    with h5py.File(src, "r") as f, h5py.File(path.with_suffix(".part"), "w") as g:
        d = f["X"].shape[1]
        g.create_dataset("X", data=f["X"][:n], chunks=(min(1024, n), d))
        g.create_dataset("y", data=f["y"][:n])
    os.replace(path.with_suffix(".part"), path)
    return path


def env(threads: int) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "SEPCHECK_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads)}


def cli(data: Path, out: Path, rows: int, *extra: str) -> list[str]:
    return ["-m", "sepcheck", "separation", str(data), "--device", "cpu", "--no-cache", "--json",
            "--shard-rows", str(rows), "--out", str(out), *extra]


def timed(cmd: list[str], threads: int) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(threads), cwd=ROOT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()][:5]
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(errors) + f"\n{r.stderr[-1500:]}")
    return wall, json.loads(r.stdout)


def killed_at_half(data: Path, out: Path, rows: int, total: int) -> tuple[float, int]:
    """Start the run, SIGKILL it once half of the shards are in the journal; (seconds, shards kept)."""
    journal = out.with_name(out.name + ".parts")
    t = time.perf_counter()
    proc = subprocess.Popen([PY, *cli(data, out, rows)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env(2), cwd=ROOT)
    while proc.poll() is None:
        if journal.is_dir() and len(list(journal.glob("shard-*.npz"))) >= total // 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    return time.perf_counter() - t, len(list(journal.glob("shard-*.npz")))


def same_answer(a: Path, b: Path) -> bool:
    import sepcheck

    x, y = sepcheck.SeparationResult.load(a), sepcheck.SeparationResult.load(b)
    return bool(np.array_equal(x.distances, y.distances) and np.array_equal(x.neighbors, y.neighbors))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="mnist", choices=list(SIZES))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/sepcheck-scale"))
    ap.add_argument("--data", type=Path, default=DATA, help="folder with mnist-full/ and cifar10-jpeg/")
    ap.add_argument("--out", type=Path, default=None,
                    help="results path without suffix (default benchmarks/results/bench_scale_dist; .json and "
                         ".md written); with --smoke a folder")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    size, arrays = None, LOCAL
    if args.smoke:  # every run (whole, killed, resumed, torchrun) on the smoke file of bench_scale.py
        folder = _smoke.out_dir(args.out, "bench_scale_dist")
        args.out, args.work_dir, args.data = folder / "bench_scale_dist", folder / "work", folder / "data"
        _smoke.fake_data(args.data)
        size, arrays = SMOKE_SIZES[args.case], folder / "no-arrays"
        args.n, args.shards = min(args.n, size), 4
    args.out = args.out or RESULTS / "bench_scale_dist"
    data = subset(build(args.case, args.work_dir, size, args.data, arrays), args.n, args.work_dir)
    runs = args.work_dir / "dist-runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    rows = -(-args.n // args.shards)
    total = -(-args.n // rows)
    m = machine()
    res: dict = {"case": args.case, "n": args.n, "shards": total, "shard_rows": rows,
                 "cpus": os.cpu_count(), "machine": m, "smoke": args.smoke}
    res["load_before"] = list(os.getloadavg())
    res["whole_s"], whole = timed([PY, *cli(data, runs / "whole.h5", rows)], 2)
    res["killed_s"], res["kept_shards"] = killed_at_half(data, runs / "r.h5", rows, total)
    res["resumed_s"], resumed = timed([PY, *cli(data, runs / "r.h5", rows, "--resume")], 2)
    res["computed_after_resume"] = resumed["shards"]["computed"]
    res["whole_search_s"], res["resumed_search_s"] = whole["shards"]["seconds"], resumed["shards"]["seconds"]
    res["lost_s"] = res["killed_s"] + res["resumed_s"] - res["whole_s"]
    res["resume_identical"] = same_answer(runs / "whole.h5", runs / "r.h5")
    res["ranks2_s"], two = timed([TORCHRUN, "--standalone", "--nproc_per_node", "2",
                                  *cli(data, runs / "two.h5", rows)], 1)
    res["ranks2_search_s"] = two["shards"]["seconds"]
    res["ranks2_identical"] = same_answer(runs / "whole.h5", runs / "two.h5")
    res["ranks2_over_whole"] = res["ranks2_s"] / res["whole_s"]
    res["separation"] = whole["separation"]
    res["load_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    md = markdown(res, args)
    args.out.with_suffix(".md").write_text(md)
    print(md)


def markdown(r: dict, args: argparse.Namespace) -> str:
    return "\n".join([
        "# bench_scale_dist: kill at 50 % and resume; one process against two (torchrun, gloo)",
        "",
        f"`python benchmarks/bench_scale_dist.py --case {r['case']} --n {r['n']} --shards {args.shards}`, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {r['cpus']} CPUs shared with other jobs (load "
        f"average {r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after). Train-train linf, k = 1, "
        f"the first {r['n']} rows of the jittered {r['case']} HDF5 file streamed by the CLI, "
        f"{r['shards']} shards of {r['shard_rows']} queries; wall-clock seconds of the whole command "
        "(interpreter start, imports, input digest included).",
        "",
        machine_line(r["machine"]),
        "",
        "| run | seconds (command) | seconds (shards, in the process) | notes |",
        "| --- | ---: | ---: | --- |",
        f"| uninterrupted, 1 process x 2 threads | {r['whole_s']:.1f} | {r['whole_search_s']:.1f} "
        f"| separation {r['separation']:.4f} |",
        f"| killed with SIGKILL at 50 % | {r['killed_s']:.1f} | | {r['kept_shards']} of {r['shards']} shards in the journal |",
        f"| `--resume` | {r['resumed_s']:.1f} | {r['resumed_search_s']:.1f} | {r['computed_after_resume']} shards computed; identical result: "
        f"{r['resume_identical']} |",
        f"| time lost to the kill | {r['lost_s']:.1f} | | killed + resumed - uninterrupted "
        f"({100 * r['lost_s'] / r['whole_s']:.0f} % of a run; one shard is {100 / r['shards']:.1f} %) |",
        f"| torchrun, 2 processes x 1 thread (gloo) | {r['ranks2_s']:.1f} | {r['ranks2_search_s']:.1f} "
        f"| {r['ranks2_over_whole']:.2f} x the "
        f"1-process time; identical result: {r['ranks2_identical']} |",
        "",
    ])


if __name__ == "__main__":
    main()
