"""Replicate the paper's table (Yang, Rashtchian et al. 2020) on real MNIST, on a CPU.

Data: the official MNIST test files in ../shared/data/mnist; the first 8000 images train, the
last 2000 test (the training files are not on this machine). Threat model: linf, eps = 0.1.
Network: the paper's MNIST CNN. Rows: Natural, GR, LLR, AT, TRADES (beta = 1, 3, 6).

Every row is trained with ``sepcheck.train.train`` into runs/replicate_mnist/<row> and
evaluated with ``sepcheck.train.evaluate_runs`` (the code behind ``sepcheck eval``); the bound
columns and the LipschitzNNClassifier reference row are added once. Rows run in ``--workers``
processes of ``--threads`` torch threads each (default 2 x 1: two CPU cores).

    nice -n 19 python benchmarks/replicate_mnist.py            # the committed results (~35 min)
    python benchmarks/replicate_mnist.py --epochs 1 --train-subset 1000 --out-dir /tmp/r   # smoke

Writes <out-dir>/replicate_mnist.{md,json,csv,png} with wall and CPU time and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (run name, method, method parameters)
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("natural", "natural", {}),
    ("gr", "gr", {}),
    ("llr", "llr", {}),
    ("at", "at", {}),
    ("trades1", "trades", {"beta": 1.0}),
    ("trades3", "trades", {"beta": 3.0}),
    ("trades6", "trades", {"beta": 6.0}),
]
#: rough cost per epoch relative to natural training (longest rows start first)
COST = {"natural": 1, "gr": 2, "llr": 5, "at": 7, "trades": 7}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--holdout", type=int, default=2000, help="last N images are the test set")
    p.add_argument("--train-subset", type=int, default=None, help="use only the first N training images")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--steps", type=int, default=5, help="inner steps of AT and TRADES (paper: 10; 5 to fit 45 min)")
    p.add_argument("--gr-lambda", type=float, default=None, help="GR penalty (default: the method's)")
    p.add_argument("--gr-h", type=float, default=None, help="GR finite-difference step (default: the method's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="evaluate on N test/train points")
    p.add_argument("--rows", default=",".join(r[0] for r in ROWS), help="comma-separated run names")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (at most 2)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "replicate_mnist"))
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="replicate_mnist")
    p.add_argument("--from-json", default=None, help="only re-render md/csv/png from a results JSON")
    return p.parse_args(argv)


def load_data(args: argparse.Namespace) -> Any:
    from sepcheck.train.data import load

    data = load(args.data_dir, holdout=args.holdout, download=False)
    if args.train_subset:
        n = args.train_subset
        data.X, data.y = data.X[:n], data.y[:n]
        X, y, Xt, yt = data.raw
        data.raw = (X[:n], y[:n], Xt, yt)
        data.notes.append(f"--train-subset {n}: only the first {n} training images are used")
    return data


def run_row(job: tuple[str, str, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Train and evaluate one row (in a worker process)."""
    name, method, params, a = job
    import torch

    torch.set_num_threads(a["threads"])
    from sepcheck.train import TrainConfig, evaluate_runs, train

    args = argparse.Namespace(**a)
    data = load_data(args)
    extra = dict(params)
    if method in ("at", "trades"):
        extra["steps"] = args.steps
    if method == "gr" and args.gr_lambda is not None:
        extra["lam"] = args.gr_lambda
    if method == "gr" and args.gr_h is not None:
        extra["h"] = args.gr_h
    cfg = TrainConfig.from_options(method, args.data_dir, arch="mnist_cnn", norm="linf", eps=args.eps,
                                   epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                                   schedule=args.schedule, holdout=args.holdout, seed=args.seed, device="cpu", **extra)
    t0, c0 = time.perf_counter(), time.process_time()
    res = train(cfg, Path(args.runs_dir) / name, data=data, force=True, progress=False,
                echo=lambda s: print(f"[{name}] {s}", file=sys.stderr, flush=True))
    t1, c1 = time.perf_counter(), time.process_time()
    rep = evaluate_runs([res.run_dir], subset=args.subset, bound=False, device="cpu", data=data)
    t2, c2 = time.perf_counter(), time.process_time()
    row = rep["rows"][0]
    row.update({"train_wall_s": t1 - t0, "train_cpu_s": c1 - c0, "eval_wall_s": t2 - t1, "eval_cpu_s": c2 - c1,
                "final_epoch": res.final})
    print(f"[{name}] done: train {t1 - t0:.0f}s, eval {t2 - t1:.0f}s; test acc {row['test_acc']:.4f}, adv "
          f"{row['adv_test_acc']:.4f}, lipschitz {row['test_lipschitz']:.2f}", file=sys.stderr, flush=True)
    return row


class LoadSampler:
    """os.getloadavg() every ``period`` seconds in a background thread."""

    def __init__(self, period: float = 20.0) -> None:
        self.samples: list[tuple[float, float, float]] = [os.getloadavg()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self.samples.append(os.getloadavg())

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg())

    def summary(self) -> dict[str, Any]:
        one = [s[0] for s in self.samples]
        return {"start": self.samples[0], "end": self.samples[-1], "mean_1min": sum(one) / len(one),
                "max_1min": max(one), "n_samples": len(one)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return render(json.loads(Path(args.from_json).read_text()), Path(args.out_dir), args.name)
    if args.threads > 2:
        print("--threads is capped at 2 on this shared machine", file=sys.stderr)
        args.threads = 2
    import multiprocessing as mp

    import torch

    torch.set_num_threads(args.threads)
    from sepcheck.train.evaluate import (
        AttackSettings,
        LipschitzSettings,
        describe_settings,
        separation_bound,
    )
    wanted = [r for r in ROWS if r[0] in args.rows.split(",")]
    jobs = sorted(wanted, key=lambda r: -COST[r[1]])
    t0, c0 = time.perf_counter(), time.process_time()
    with LoadSampler() as load:
        if args.workers > 1:
            with mp.get_context("spawn").Pool(args.workers) as pool:
                rows = pool.map(run_row, [(n, m, p, vars(args)) for n, m, p in jobs], chunksize=1)
        else:
            rows = [run_row((n, m, p, vars(args))) for n, m, p in jobs]
        data = load_data(args)
        tb, cb = time.perf_counter(), time.process_time()
        bound = separation_bound(data, "linf", args.eps, subset=args.subset)
        bound_wall, bound_cpu = time.perf_counter() - tb, time.process_time() - cb
    wall = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (time.process_time() - c0) + children.ru_utime + children.ru_stime
    order = [r[0] for r in ROWS]
    rows.sort(key=lambda r: order.index(Path(r["run"]).name))
    for r in rows:
        r.update({"separation": bound["separation"], "r": bound["r"], "inv_r": bound["inv_r"],
                  "lipschitz_times_r": r["test_lipschitz"] * bound["r"]})
    attack, lip = AttackSettings(), LipschitzSettings()
    report = {
        "rows": rows,
        "bounds": [bound],
        "settings": {"attack": attack.resolved(args.eps), "lipschitz": asdict(lip),
                     "subset": args.subset, "description": describe_settings("linf", args.eps, attack, lip)},
        "notes": sorted(set(data.notes)),
        "setup": {k: v for k, v in vars(args).items() if k not in ("runs_dir", "out_dir")},
        "timing": {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_s_main": time.process_time() - c0,
            "bound_wall_s": bound_wall,
            "bound_cpu_s": bound_cpu,
            "loadavg": load.summary(),
            "cores": os.cpu_count(),
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "machine": platform.processor() or platform.machine(),
            "torch": str(torch.__version__),
            "note": "wall time on a machine shared with other developers; see loadavg",
        },
    }
    return render(_jsonable(report), Path(args.out_dir), args.name)


def render(report: dict[str, Any], out: Path, name: str) -> int:
    """Write <name>.md, .csv, .json and .png from a report (rows, bounds, settings, timing)."""
    from sepcheck.train.report import save_plot, to_csv, to_markdown, write_text

    out.mkdir(parents=True, exist_ok=True)
    s, t = report["setup"], report["timing"]
    md = to_markdown(report)
    md += (f"\nSetup: MNIST CNN, linf eps={s['eps']:g}, {s['epochs']} epochs, batch {s['batch_size']}, "
           f"{s['optimizer']} lr {s['lr']:g} ({s['schedule']}), AT/TRADES {s['steps']} inner steps, seed {s['seed']}. "
           f"Time: {t['wall_s'] / 60:.1f} min wall, {t['cpu_s'] / 60:.1f} min CPU on {t['workers']} worker(s) x "
           f"{t['threads_per_worker']} thread(s); load average mean {t['loadavg']['mean_1min']:.2f} "
           f"(max {t['loadavg']['max_1min']:.2f}) on {t['cores']} cores (shared machine).\n")
    write_text(out / f"{name}.md", md)
    write_text(out / f"{name}.csv", to_csv(report))
    write_text(out / f"{name}.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    save_plot(report, out / f"{name}.png")
    print(md)
    return 0


def _jsonable(obj: Any) -> Any:
    from sepcheck.fileio import to_jsonable

    return to_jsonable(obj)


if __name__ == "__main__":
    raise SystemExit(main())
