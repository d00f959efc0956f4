"""Every benchmark script runs in its smoke mode and its results name the machine they ran on.

Every script in benchmarks/ (``*.py`` but the private helpers ``_*.py``) runs
``python SCRIPT --smoke --out TMP`` in a subprocess: the same functions as its full run on tiny
data, no GPU, no network, no ../shared. It must exit 0, write its results into TMP (and nothing
into benchmarks/results), and every JSON / Markdown results file must name the machine
(``benchmarks/_machine.py``). A new script without ``--smoke`` fails here (argparse exits 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
#: seconds one smoke run may take before it counts as hung (they take a few seconds)
TIMEOUT = 300


def _machine(results: dict) -> dict | None:
    """The machine a results JSON records: at the top or in its ``meta``."""
    return results.get("machine") or (results.get("meta") or {}).get("machine")


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


def test_scripts_are_discovered():
    names = {p.name for p in SCRIPTS}
    assert {"bench_separation.py", "bench_gpu.py", "make_bench_arrays.py", "replicate_mnist.py"} <= names
    assert not any(n.startswith("_") for n in names)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_smoke_run_writes_results(script: Path, tmp_path: Path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "CUDA_VISIBLE_DEVICES": "", "SEPCHECK_OFFLINE": "1", "MPLBACKEND": "Agg"}
    results = _snapshot(BENCHMARKS / "results")
    run = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT)
    tail = f"\n--- stdout ---\n{run.stdout[-3000:]}\n--- stderr ---\n{run.stderr[-5000:]}"
    assert run.returncode == 0, f"{script.name} --smoke exited {run.returncode}{tail}"
    written = [p for p in out.iterdir() if p.is_file()] if out.is_dir() else []
    assert written, f"{script.name} --smoke wrote no results file in {out}{tail}"
    assert _snapshot(BENCHMARKS / "results") == results, f"{script.name} --smoke wrote into benchmarks/results"
    for f in written:
        if f.suffix == ".json":
            machine = _machine(json.loads(f.read_text()))
            assert isinstance(machine, dict) and machine.get("cpu") and "simd" in machine, f"{f.name}: no machine"
        elif f.suffix == ".md":
            assert "\nCPU: " in "\n" + f.read_text(), f"{f.name} has no 'CPU: ...' line"
