"""The roofline's ceilings on this machine, measured and cached (plumbing around ``roofline.py``).

:func:`measure_ceilings` runs the lesson's measurements — the micro-kernel's L1 peak
(``roofline.peak_flops``) and the STREAM triad (``roofline.triad_bandwidth``) — beside the
peer, numpy's BLAS on a large matmul (:func:`blas_flops`), and keeps the best of each per
machine and thread count in ``.mlsys/lab2/ceilings.json``.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np

from mlsys_labs.common.bench import machine_slug
from mlsys_labs.common.paths import state_dir

from ..roofline import peak_flops, triad_bandwidth


def blas_flops(dtype=np.float32, threads: int = 1, n: int = 1536, repeats: int = 5) -> float:
    """FLOP/s of numpy's BLAS on an n^3 matmul, pinned to ``threads`` threads (the check)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    with threadpool_limits(limits=threads):
        a @ b
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def measure_ceilings(threads: int = 1, refresh: bool = False, quick: bool = False) -> dict:
    """Peak FLOP/s (fp32, fp64; ours and BLAS) and triad bandwidth, cached per machine
    and thread count in ``.mlsys/lab2/ceilings.json``.  ``quick`` shrinks the runs (tests).

    A ceiling is the best the machine has shown: noise from other jobs only ever lowers a
    measurement, so ``refresh`` measures again and keeps, per ceiling, the larger of the new
    and the cached value (delete the file to start over on changed hardware)."""
    path = state_dir("lab2") / "ceilings.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = f"{machine_slug()}/threads={threads}"
    if refresh or key not in cache or quick:
        seconds, n_blas, n_triad, l3_sweeps = (0.02, 256, 2**20, 2) if quick else (0.2, 1536, 16 * 2**20, 40)
        entry = {
            "peak_flops_fp32": peak_flops(np.float32, threads, seconds=seconds),
            "peak_flops_fp64": peak_flops(np.float64, threads, seconds=seconds),
            "blas_flops_fp32": blas_flops(np.float32, threads, n=n_blas),
            "blas_flops_fp64": blas_flops(np.float64, threads, n=n_blas),
            "bandwidth_bytes": triad_bandwidth(n_triad, threads),
            # 3 x 2 MiB: past L2 (1 MiB per core), inside L3 (32 MiB): what the cost model's
            # "traffic past L2" moves at when the operands fit in L3
            "bandwidth_l3_bytes": triad_bandwidth(2**18, threads, sweeps=l3_sweeps),
            "threads": threads,
        }
        if quick:
            return entry
        previous = cache.get(key, {})
        cache[key] = {name: max(value, previous.get(name, value)) for name, value in entry.items()}
        path.write_text(json.dumps(cache, indent=1))
    return cache[key]
