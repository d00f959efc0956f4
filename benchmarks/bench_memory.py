"""Peak extra memory of each backend (README "Memory").

Each measurement runs in a fresh subprocess: load the data, reset the kernel's peak-RSS
counter (``/proc/self/clear_refs``), run one search, and report the peak RSS (``VmHWM``)
minus the RSS before the search (Linux only).

    python benchmarks/bench_memory.py [--copies 6]

Data: the real MNIST test set (10 000 x 784), and 6 jittered copies of it (60 000 x 784,
pixels +-2) to show that the extra memory does not grow with n x n.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, numpy as np
from pathlib import Path
spec, norm, backend = sys.argv[1], sys.argv[2], sys.argv[3]
from sepcheck.datasets.idx import read_idx_pair
d = Path(sys.argv[4])
X, y = read_idx_pair(d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz")
X = X.reshape(len(X), -1)
if spec != "mnist":  # "mnist-xT": T jittered copies of MNIST (+-2 grey levels)
    t = int(spec.split("x")[1])
    rng = np.random.default_rng(0)
    X = np.concatenate([np.clip(X.astype(np.int16) + rng.integers(-2, 3, X.shape), 0, 255).astype(np.uint8)
                        for _ in range(t)])
    y = np.tile(y, t)
import sepcheck, torch  # noqa: F401  (imports and JIT outside the measurement)
sepcheck.nearest_other(X[:300], y[:300], norm=norm, backend=backend, device="cpu")
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS")
sepcheck.nearest_other(X, y, norm=norm, backend=backend, device="cpu")
peak = status("VmHWM")
print(json.dumps({"data_mib": X.nbytes / 2**20, "extra_peak_mib": (peak - before) / 2**20}))
"""


def measure(spec: str, norm: str, backend: str, mnist: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, spec, norm, backend, str(mnist)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_memory.json")
    args = ap.parse_args()
    cases = [("mnist", n, b) for n, b in [("linf", "numba"), ("l1", "numba"), ("l2", "torch"), ("l2", "faiss"), ("linf", "torch")]]
    big = f"mnist-x{args.copies}"
    cases += [(big, "linf", "numba"), (big, "l2", "torch")]
    rows = []
    print("| data | norm | backend | data MiB | extra peak MiB |")
    print("| --- | --- | --- | ---: | ---: |")
    for spec, norm, backend in cases:
        r = measure(spec, norm, backend, args.mnist)
        rows.append({"data": spec, "norm": norm, "backend": backend, **r})
        print(f"| {spec} | {norm} | {backend} | {r['data_mib']:.1f} | {r['extra_peak_mib']:.1f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
