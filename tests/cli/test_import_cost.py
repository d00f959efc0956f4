"""What a command imports: ``import sepcheck`` and an l-inf separation of uint8 data on the
CPU (numba) import no torch (torch's import alone takes about a second); an l2 search does."""

import subprocess
import sys
import textwrap

import numpy as np

PROBE = textwrap.dedent(
    """
    import sys
    from sepcheck.cli import main
    try:
        main({args!r}, standalone_mode=False)
    finally:
        print("IMPORTED", sorted(m for m in ("torch", "triton", "faiss") if m in sys.modules))
    """
)


def _imported(args: list[str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().splitlines()[-1]


def test_import_sepcheck_imports_no_torch():
    code = "import sys, sepcheck; print(sorted(m for m in ('torch', 'numba', 'triton') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_linf_separation_of_uint8_on_the_cpu_imports_no_torch(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "small.npz"
    np.savez(data, X=rng.integers(0, 256, (300, 64), dtype=np.uint8), y=np.arange(300) % 3)
    base = ["separation", str(data), "--device", "cpu", "--no-cache", "--json"]
    assert _imported(base + ["--norm", "linf"]) == "IMPORTED []"
    # the check can fail: an l2 search runs on torch
    assert _imported(base + ["--norm", "l2"]) == "IMPORTED ['torch']"
