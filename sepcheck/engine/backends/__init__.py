"""The engine's backends: each module's ``search(problem, ...)`` answers a validated problem
(the contract in :mod:`sepcheck.engine`). ``numba_backend`` (CPU linf/l1 on the kernels of
:mod:`..kernels.simd`), ``torch_backend`` (blocked tiles on CPU or CUDA, the int8 and float32
l2 GEMMs), ``l2`` (which exact l2 path runs) with ``projection`` / ``projection_torch`` (l2 by
projection bounds), ``triton_backend`` (GPU kernels) with ``gpu_data`` (the reference on the
GPU), ``faiss_backend`` and ``fallback`` (exact recomputation)."""
