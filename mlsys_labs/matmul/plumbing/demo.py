"""``mlsys-labs run 2``: the lab end to end on this machine, in a few minutes on 2 cores.

1. measure the ceilings (micro-kernel peak, BLAS, STREAM triad) on 1 and 2 threads;
2. autotune the packed kernel's block sizes (cached per machine);
3. time every step against numpy's BLAS with pinned thread counts, print one table;
4. count cache misses of the loop orders with the simulator (and perf, where it works);
5. plot the roofline with every step on it under ``reports/lab2/``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from mlsys_labs.common.bench import machine_name
from mlsys_labs.common.cli_args import at_least
from mlsys_labs.common.paths import reports_dir

from .. import roofline
from ..autotune import autotune
from ..blocked import matmul_blocked
from ..cachesim import CacheConfig, miss_table, perf_available
from ..loop_order import matmul_loop_order
from ..naive import matmul_naive
from ..packed import matmul_packed
from ..threaded import matmul_threaded
from .ceilings import measure_ceilings
from .pinning import pinned_threads
from .plots import plot_roofline


def best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _show_ceilings(dt: str) -> tuple[dict, dict]:
    print("\n[1/5] ceilings (measured, not read from cpuinfo)")
    ceil1 = measure_ceilings(threads=1, refresh=True)
    ceil2 = measure_ceilings(threads=2, refresh=True)
    for label, c in (("1 thread", ceil1), ("2 threads", ceil2)):
        print(f"  {label}: micro-kernel peak {c[f'peak_flops_{dt}'] / 1e9:.1f} GFLOP/s, "
              f"BLAS {c[f'blas_flops_{dt}'] / 1e9:.1f} GFLOP/s, triad DRAM {c['bandwidth_bytes'] / 1e9:.1f} GB/s, "
              f"L3 {c['bandwidth_l3_bytes'] / 1e9:.1f} GB/s, "
              f"ridge {c[f'peak_flops_{dt}'] / c['bandwidth_bytes']:.1f} FLOP/byte")
    return ceil1, ceil2


def _time_steps(n: int, n0: int, dtype, cfg, repeats: int) -> list[tuple]:
    """(step, threads, n, our GFLOP/s, BLAS GFLOP/s) for every step against numpy's BLAS."""
    print("\n[3/5] every step against numpy's BLAS (same thread count)")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    a0, b0 = a[:n0, :n0].copy(), b[:n0, :n0].copy()
    out = np.empty((n, n), dtype)
    steps = [
        ("naive i-j-k", 1, n0, lambda: matmul_naive(a0, b0), lambda: a0 @ b0, 1),
        ("loop order i-k-j", 1, n, lambda: matmul_loop_order(a, b, out=out), lambda: a @ b, 1),
        ("blocked", 1, n, lambda: matmul_blocked(a, b, out=out), lambda: a @ b, 1),
        ("packed", 1, n, lambda: matmul_packed(a, b, out=out, config=cfg), lambda: a @ b, repeats),
        ("threaded", 2, n, lambda: matmul_threaded(a, b, out=out, config=cfg, threads=2), lambda: a @ b, repeats),
    ]
    rows = []
    for name, threads, size, ours, blas, reps in tqdm(steps, desc="timing"):
        with pinned_threads(threads):
            t_ours = best_seconds(ours, reps)
            t_blas = best_seconds(blas, repeats)
        rows.append((name, threads, size, 2.0 * size**3 / t_ours / 1e9, 2.0 * size**3 / t_blas / 1e9))
    print(f"  {'step':18s} {'threads':>7s} {'n':>5s} {'GFLOP/s':>8s} {'BLAS':>8s} {'ours/BLAS':>9s}")
    for name, threads, size, g, gb in rows:
        print(f"  {name:18s} {threads:7d} {size:5d} {g:8.1f} {gb:8.1f} {g / gb:9.2f}")
    return rows


def _show_cache_misses() -> None:
    print("\n[4/5] cache misses, LRU simulator: n=64 float64, 8 KiB 4-way cache, 64 B lines, 16x16 tiles")
    table = miss_table(64, 8, CacheConfig(8 * 1024, 4, 64), tile=16)
    for name, row in table.items():
        print(f"  {name:8s} {row['misses']:8d} misses  {row['misses_per_inner_step']:.3f} per inner step")
    print("  perf stat hardware counters: " + ("available (see cachesim.perf_counters)" if perf_available()
                                               else "not available on this machine (VM exposes no PMU)"))


def _plot_roofline(rows, n: int, n0: int, dtype, dt: str, cfg, ceilings: tuple[dict, dict]) -> None:
    print("\n[5/5] roofline")
    s = dtype.itemsize
    ai = {"naive i-j-k": roofline.arithmetic_intensity("naive", n0, n0, n0, s),
          "loop order i-k-j": roofline.arithmetic_intensity("loop_order", n, n, n, s),
          "blocked": roofline.arithmetic_intensity("blocked", n, n, n, s),
          "packed": roofline.arithmetic_intensity("packed", n, n, n, s, config=cfg),
          "threaded": roofline.arithmetic_intensity("threaded", n, n, n, s, config=cfg)}
    points = [{"label": f"{name} ({threads}t)", "intensity": ai[name], "gflops": g}
              for name, threads, size, g, gb in rows]
    points.append({"label": "BLAS (1t)", "intensity": roofline.arithmetic_intensity("blas", n, n, n, s),
                   "gflops": rows[3][4]})
    path = plot_roofline(points, ceilings[0], reports_dir("lab2") / f"roofline_{dt}.png", dtype=dt,
                         more_ceilings=ceilings[1], title=f"Roofline, {dt}, {machine_name()}")
    print(f"  saved {path}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mlsys-labs run 2", description=__doc__)
    p.add_argument("--n", type=at_least(1), default=960, help="matrix size for the fast variants (default 960)")
    p.add_argument("--naive-n", type=at_least(1), default=320, help="matrix size for naive i-j-k (default 320)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeats", type=at_least(1), default=3)
    args = p.parse_args(argv)
    dtype = np.dtype(args.dtype)
    dt = "fp32" if dtype == np.float32 else "fp64"
    n, n0 = args.n, args.naive_n
    print(f"Lab 2 — cache-aware matmul on {machine_name()}  ({args.dtype}, n={n}; naive at n={n0})")
    ceilings = _show_ceilings(dt)
    print("\n[2/5] autotuning the packed kernel (1 thread; cached in .mlsys/lab2/autotune.json)")
    with pinned_threads(1):
        cfg = autotune(dtype, n=480, progress=True)
    print(f"  chose MC={cfg.mc} KC={cfg.kc} NC={cfg.nc} MR x NR={cfg.mr}x{cfg.nr}")
    rows = _time_steps(n, n0, dtype, cfg, args.repeats)
    _show_cache_misses()
    _plot_roofline(rows, n, n0, dtype, dt, cfg, ceilings)
    return 0
