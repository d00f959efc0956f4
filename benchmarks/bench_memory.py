"""Peak extra memory of each backend against its memory budget (README "Memory").

Each measurement runs in a fresh subprocess: make the data, warm the backend up on a few
rows (imports, JIT), reset the kernel's peak-RSS counter (``/proc/self/clear_refs``), run
one search with ``memory_budget``, and report the peak RSS (``VmHWM``) minus the RSS before
the search (Linux only). The search's result arrays (n_queries x k) are part of the extra.

    python benchmarks/bench_memory.py [--budgets 64MiB 256MiB] [--sizes 300 5000 20000] [--out FILE.json]
    python benchmarks/bench_memory.py --smoke [--out DIR]     # 300 rows x 64 features, seconds

Data: synthetic uint8 rows of 3 072 features (CIFAR-10's size), 10 classes; the reference
has n rows and the queries are its first min(n, --queries) rows (memory depends on the
reference; fewer queries keep the run short on a small machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import _smoke
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, numpy as np
n, nq, dim, norm, backend, budget = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                     sys.argv[4], sys.argv[5], sys.argv[6])
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (n, dim), dtype=np.uint8)
y = rng.integers(0, 10, n)
import sepcheck, torch  # noqa: F401  (imports and JIT outside the measurement)
sepcheck.nearest_other(X[:300], y[:300], X[:20], y[:20], norm=norm, backend=backend, device="cpu")
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS")
try:
    sepcheck.nearest_other(X, y, X[:nq], y[:nq], norm=norm, backend=backend, device="cpu",
                           memory_budget=budget)
    extra = (status("VmHWM") - before) / 2**20
except sepcheck.SepcheckError as exc:
    extra = str(exc)
print(json.dumps({"data_mib": X.nbytes / 2**20, "extra_peak_mib": extra}))
"""

#: (norm, backend) pairs: every CPU backend, with the norms it is used for
CASES = [("linf", "numba"), ("l1", "numba"), ("linf", "torch"), ("l2", "torch"), ("l3", "torch"),
         ("l2", "faiss")]
#: --smoke: one case per backend (each case is one child process)
SMOKE_CASES = [("linf", "numba"), ("l2", "torch"), ("l2", "faiss")]


def measure(n: int, nq: int, dim: int, norm: str, backend: str, budget: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(nq), str(dim), norm, backend, budget],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from sepcheck.core.validation import as_memory_budget

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", nargs="+", default=["64MiB", "256MiB"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[300, 5000, 20000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=3072)
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default benchmarks/results/bench_memory.json; its .md beside it); "
                         "with --smoke a folder")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    cases = CASES
    if args.smoke:  # a child per backend on 300 rows of 64 features
        args.out = _smoke.out_dir(args.out, "bench_memory") / "bench_memory.json"
        args.budgets, args.sizes, args.queries, args.dim, cases = ["64MiB"], [300], 50, 64, SMOKE_CASES
    args.out = args.out or ROOT / "benchmarks" / "results" / "bench_memory.json"
    meta = {"machine": machine(), "smoke": args.smoke, "queries": args.queries, "dim": args.dim}
    table = [machine_line(meta["machine"]), "",
             "| n | norm | backend | data MiB | budget | extra peak MiB | within |",
             "| ---: | --- | --- | ---: | --- | ---: | --- |"]
    print("\n".join(table))
    rows = []
    for budget in args.budgets:
        limit = as_memory_budget(budget) / 2**20
        for n in args.sizes:
            for norm, backend in cases:
                r = measure(n, min(n, args.queries), args.dim, norm, backend, budget)
                extra = r["extra_peak_mib"]
                ok = "refused" if isinstance(extra, str) else ("yes" if extra <= limit else "NO")
                shown = "-" if isinstance(extra, str) else f"{extra:.1f}"  # message in the JSON
                rows.append({"n": n, "norm": norm, "backend": backend, "budget": budget, **r})
                table.append(f"| {n} | {norm} | {backend} | {r['data_mib']:.1f} | {budget} | {shown} | {ok} |")
                print(table[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    args.out.with_suffix(".md").write_text("# bench_memory: extra peak memory against the budget\n\n"
                                           + "\n".join(table) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
