"""Measured machine ceilings for rooflines: peak FLOP/s and memory bandwidth.

Virtual machines report wrong clocks and cache sizes, so the ceilings are measured,
not read from ``/proc/cpuinfo``: peak FLOP/s as the best of a few large BLAS matmuls
(2·n³ flops each), bandwidth as the best of a few large array copies (2 bytes moved
per byte copied: one read, one write).  Labs that teach these measurements (lab 2's
numba kernels, lab 4's device copy) measure their own; this module is the quick,
shared version, cached per machine in ``.mlsys/ceilings.json``.
"""
from __future__ import annotations

import json
import time

import numpy as np

from .bench import machine_slug
from .paths import state_dir


def peak_flops(dtype=np.float32, n: int = 1536, repeats: int = 3) -> float:
    """FLOP/s of numpy's BLAS on an n×n×n matmul (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b  # warm-up: threads, pages
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def memory_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 3) -> float:
    """Bytes/s of a large copy (read + write counted), best of ``repeats``."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * src.nbytes / best


def machine_ceilings(refresh: bool = False) -> dict:
    """{'peak_flops_fp32', 'peak_flops_fp64', 'bandwidth_bytes'} measured once per machine."""
    path = state_dir() / "ceilings.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = machine_slug()
    if refresh or key not in cache:
        cache[key] = {
            "peak_flops_fp32": peak_flops(np.float32),
            "peak_flops_fp64": peak_flops(np.float64),
            "bandwidth_bytes": memory_bandwidth(),
        }
        path.write_text(json.dumps(cache, indent=1))
    return cache[key]
