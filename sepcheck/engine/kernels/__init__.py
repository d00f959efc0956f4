"""Computational pieces the backends share: ``simd`` (numba linf/l1 kernels),
``triton_kernels`` (GPU kernels), ``exact`` (exact pair distances), ``candidates`` (the GEMM
error bound, prune, finish), ``select`` / ``select_torch`` (top-k merges)."""
