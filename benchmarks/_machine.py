"""Where a benchmark ran: the one description every script records in its results.

:func:`machine` returns a JSON-ready dict (CPU model, the SIMD flags that matter to the
kernels, logical cores, memory, GPU, thread counts, library versions, git commit);
:func:`machine_line` renders it as the single Markdown line the results files print::

    CPU: Intel(R) Xeon(R) ... (avx2, avx512f, avx512_vnni, amx_int8), 2 cores; 7.7 GiB memory; ...

Imported by the scripts as ``from _machine import machine, machine_line`` (a script's folder is
first on ``sys.path``); private (``_``) so that the smoke test does not take it for a script.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: CPU flags (x86 /proc/cpuinfo "flags", aarch64 "Features") shown when present, in this order
SIMD_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16",
              "asimd", "asimddp", "sve", "sve2")
#: module -> distributions that may provide it (the first installed one gives the version)
VERSIONS = {"numpy": ("numpy",), "torch": ("torch",), "numba": ("numba",),
            "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss"), "triton": ("triton",),
            "sepcheck": ("sepcheck",)}


def cpu() -> tuple[str, list[str]]:
    """(model name, the :data:`SIMD_FLAGS` it has) from /proc/cpuinfo, else ``platform``."""
    model, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name" and not model:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), [f for f in SIMD_FLAGS if f in flags]


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def versions() -> dict[str, str | None]:
    """Installed versions of :data:`VERSIONS` (None: not importable here)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for module, dists in VERSIONS.items():
        out[module] = None
        if importlib.util.find_spec(module) is None:
            continue
        for dist in dists:
            try:
                out[module] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def commit() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes), or None outside git."""
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True,  # noqa: E731
                                        text=True, timeout=10)
        head = run("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """Where this process runs (see the module docstring); cheap: torch is imported only when
    installed, and CUDA is only asked whether it is available."""
    model, simd = cpu()
    out: dict[str, Any] = {
        "cpu": model, "simd": simd, "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(), "gpu": None, "node": platform.node(), "platform": platform.platform(),
        "python": platform.python_version(), "versions": versions(), "commit": commit(),
    }
    if out["versions"]["torch"]:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    if out["versions"]["numba"]:
        import numba

        out["numba_threads"] = numba.get_num_threads()
    return out


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown line: ``CPU: <model> (<flags>), <n> cores; memory; GPU; versions; commit``."""
    simd = f" ({', '.join(m['simd'])})" if m.get("simd") else ""
    parts = [f"CPU: {m.get('cpu', '?')}{simd}, {m.get('cpus', '?')} cores"]
    if m.get("usable_cpus") not in (None, m.get("cpus")):
        parts[0] += f" ({m['usable_cpus']} usable)"
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']:g} GiB memory")
    parts.append(f"GPU: {m.get('gpu') or 'none'}")
    v = m.get("versions") or {}
    parts.append(", ".join(f"{k} {x}" for k, x in v.items() if x) or f"python {m.get('python', '?')}")
    threads = [f"{k} {m[f'{k}_threads']}" for k in ("torch", "numba") if m.get(f"{k}_threads")]
    if threads:
        parts.append("threads: " + ", ".join(threads))
    if m.get("commit"):
        parts.append(f"commit {m['commit']}")
    return "; ".join(parts) + "."
