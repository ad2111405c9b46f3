"""Lab 2 benchmarks: every matmul variant against numpy's BLAS in the same run, with the
same thread count (numba and the BLAS both pinned), n in {480, 960, 1920}, float32 and
float64; the autotuner; the roofline plot.

Sizes: naive i-j-k is measured at n = 480 (fp32, fp64) and once at n = 960 (fp32), not at
1920 (one call would take minutes) — only for its dot on the roofline: a speed-up over the
naive loop measures the naive loop, not the lesson, so it has no target.  i-k-j and blocked
at n = 1920 are timed once after no warm-up (their compile is cached by then).  Everything
else: 1 warm-up and 3 interleaved repeats (``compare``; 15 for the figure with a target).
Ratios are medians of the interleaved repeats (ours and BLAS alternate, so a busy
neighbour slows both alike); the best time of each side stays in each figure's detail.
"""
from __future__ import annotations

import numpy as np
import pytest

from mlsys_labs.common.bench import compare, figures_for, machine_name, record_figure, time_fn
from mlsys_labs.common.paths import reports_dir
from mlsys_labs.matmul import (autotune, matmul_blocked, matmul_loop_order, matmul_naive, matmul_packed,
                               matmul_threaded, roofline, tuned_config)
from mlsys_labs.matmul.plumbing import measure_ceilings, pinned_threads, plot_roofline

LAB = 2
SIZES = (480, 960, 1920)
DTYPES = {"fp32": np.float32, "fp64": np.float64}
GFLOPS: dict[tuple, float] = {}      # (variant, threads, n, dtype) -> GFLOP/s, for the roofline plot


def operands(n, dtype):
    rng = np.random.default_rng(n)
    return rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)


def gflops(n, seconds):
    return 2.0 * n**3 / seconds / 1e9


@pytest.mark.parametrize("dt", list(DTYPES))
def test_autotune(benchmark, dt):
    """Search the block sizes on this machine (1 thread) and cache the choice."""
    with pinned_threads(1):
        cfg = benchmark.pedantic(lambda: autotune(DTYPES[dt], n=480, refresh=True), rounds=1, iterations=1)
    benchmark.extra_info["config"] = cfg.__dict__
    a, b = operands(480, DTYPES[dt])
    with pinned_threads(1):
        cmp = compare(lambda: matmul_packed(a, b, config=cfg), lambda: matmul_packed(a, b), repeats=5)
    record_figure(LAB, f"autotuned blocks / default blocks speed, packed n=480 {dt}",
                  value=cmp.peer.best / cmp.ours.best,
                  unit="x", peer="BlockConfig() defaults",
                  detail={"config": cfg.__dict__, **cmp.as_dict(), "gflops_tuned": gflops(480, cmp.ours.best)})


def _variant(name, dtype, threads):
    cfg = tuned_config(dtype)
    return {
        "loop_order": matmul_loop_order,
        "blocked": matmul_blocked,
        "packed": lambda a, b, out=None: matmul_packed(a, b, out=out, config=cfg),
        "threaded": lambda a, b, out=None: matmul_threaded(a, b, out=out, config=cfg, threads=threads),
    }[name]


CASES = ([("loop_order", 1, n, d) for n in SIZES for d in DTYPES]
         + [("blocked", 1, n, d) for n in SIZES for d in DTYPES]
         + [("packed", 1, n, d) for n in SIZES for d in DTYPES]
         + [("threaded", t, n, d) for t in (1, 2) for n in SIZES for d in DTYPES])


@pytest.mark.parametrize("name,threads,n,dt", CASES, ids=[f"{c[0]}-{c[1]}t-{c[2]}-{c[3]}" for c in CASES])
def test_variant_vs_blas(benchmark, name, threads, n, dt):
    dtype = DTYPES[dt]
    a, b = operands(n, dtype)
    out, ref_out = np.empty((n, n), dtype), np.empty((n, n), dtype)
    fn = _variant(name, dtype, threads)
    slow = name in ("loop_order", "blocked") and n >= 1920
    target = ">= 0.75" if (name, threads, n, dt) == ("packed", 1, 960, "fp32") else None
    with pinned_threads(threads):
        cmp = compare(lambda: fn(a, b, out=out), lambda: np.matmul(a, b, out=ref_out),
                      warmup=0 if slow else 1, repeats=1 if slow else (15 if target else 3))
        benchmark.pedantic(lambda: fn(a, b, out=out), rounds=1, iterations=1)
    GFLOPS[(name, threads, n, dt)] = gflops(n, cmp.ours.median)
    if (name, threads) in (("packed", 1), ("threaded", 2)):      # the BLAS dots on the roofline
        GFLOPS[("blas", threads, n, dt)] = gflops(n, cmp.peer.median)
    benchmark.extra_info.update(cmp.as_dict())
    record_figure(LAB, f"{name} {threads} thread(s) speed / BLAS, n={n} {dt}", value=1.0 / cmp.ratio,
                  unit="x BLAS", target=target, peer=f"numpy BLAS, {threads} thread(s)",
                  detail={**cmp.as_dict(), "gflops_ours": GFLOPS[(name, threads, n, dt)],
                          "gflops_blas": gflops(n, cmp.peer.median), "best_over_best": cmp.peer.best / cmp.ours.best,
                          "machine": machine_name()})


@pytest.mark.parametrize("dt", list(DTYPES))
def test_two_threads_vs_one(benchmark, dt):
    """The threaded kernel on 2 threads against itself on 1 thread (n = 960)."""
    n, dtype = 960, DTYPES[dt]
    a, b = operands(n, dtype)
    out = np.empty((n, n), dtype)
    cfg = tuned_config(dtype)

    def run(t):
        with pinned_threads(t):
            matmul_threaded(a, b, out=out, config=cfg, threads=t)

    cmp = compare(lambda: run(1), lambda: run(2), repeats=7)
    benchmark.pedantic(lambda: run(2), rounds=1, iterations=1)
    benchmark.extra_info.update(cmp.as_dict())
    record_figure(LAB, f"threaded 2 threads / 1 thread speed-up, n=960 {dt}", value=cmp.ratio,
                  unit="x",
                  target=">= 1.6" if dt == "fp32" else None, peer="itself on 1 thread", detail=cmp.as_dict())


@pytest.mark.parametrize("dt,n", [("fp32", 480), ("fp64", 480), ("fp32", 960)])
def test_naive(benchmark, dt, n):
    """naive i-j-k on 1 thread, for its dot on the roofline (no target: how far the lesson's
    kernels are from BLAS is the figure that counts, not how slow the textbook loop is).

    At n = 480 B (0.9 MB fp32) still fits in the 1 MiB L2, so naive's column walk hits L2;
    at n = 960 (3.7 MB) it does not."""
    dtype = DTYPES[dt]
    a, b = operands(n, dtype)
    out = np.empty((n, n), dtype)
    matmul_naive(a[:8, :8].copy(), b[:8, :8].copy())                      # compile outside the timing
    with pinned_threads(1):
        naive = time_fn(lambda: matmul_naive(a, b, out=out), warmup=0, repeats=2 if n <= 480 else 1)
        benchmark.pedantic(lambda: matmul_naive(a, b, out=out), rounds=1, iterations=1)
    GFLOPS[("naive", 1, n, dt)] = gflops(n, naive.median)
    benchmark.extra_info.update({"naive_s": naive.times})
    record_figure(LAB, f"naive i-j-k GFLOP/s, n={n} {dt}", value=gflops(n, naive.median), unit="GFLOP/s",
                  detail={"naive_s": naive.times, "gflops_naive": gflops(n, naive.median), "machine": machine_name()})


def test_roofline(benchmark):
    """Measure the ceilings (1 and 2 threads) and plot every variant measured above at n = 960."""
    ceil1 = benchmark.pedantic(lambda: measure_ceilings(threads=1, refresh=True), rounds=1, iterations=1)
    ceil2 = measure_ceilings(threads=2, refresh=True)
    for key, c in (("1 thread", ceil1), ("2 threads", ceil2)):
        record_figure(LAB, f"ceiling: micro-kernel L1 peak fp32, {key}", value=c["peak_flops_fp32"] / 1e9,
                      unit="GFLOP/s", peer="numpy BLAS large n", detail=c)
        record_figure(LAB, f"ceiling: STREAM triad bandwidth (DRAM), {key}", value=c["bandwidth_bytes"] / 1e9,
                      unit="GB/s")
        record_figure(LAB, f"ceiling: STREAM triad bandwidth (in L3), {key}", value=c["bandwidth_l3_bytes"] / 1e9,
                      unit="GB/s")
        record_figure(LAB, f"ceiling: micro-kernel peak / BLAS large-n matmul fp32, {key}",
                      value=c["peak_flops_fp32"] / c["blas_flops_fp32"], unit="x")
    measured = _measured_gflops()
    for dt in DTYPES:
        s = np.dtype(DTYPES[dt]).itemsize
        points = []
        for name, t, n in [("naive", 1, 960), ("naive", 1, 480), ("loop_order", 1, 960), ("blocked", 1, 960),
                           ("packed", 1, 960), ("blas", 1, 960), ("threaded", 2, 960), ("blas", 2, 960)]:
            if (name, t, n, dt) in measured:
                blocks = {"config": tuned_config(DTYPES[dt])} if name in ("packed", "threaded") else {}
                ai = roofline.arithmetic_intensity(name, n, n, n, s, **blocks)
                points.append({"label": f"{name} ({t}t, n={n})", "intensity": ai,
                               "gflops": measured[(name, t, n, dt)]})
        path = plot_roofline(points, ceil1, reports_dir("lab2") / f"roofline_{dt}.png", dtype=dt,
                                      more_ceilings=ceil2, title=f"Roofline, {dt}, {machine_name()}")
        benchmark.extra_info[f"roofline_{dt}"] = str(path)


def _measured_gflops() -> dict:
    """GFLOP/s measured in this session, else the ones recorded on this machine by earlier runs
    (so ``-k roofline`` alone replots from the stored figures)."""
    measured = dict(GFLOPS)
    for f in figures_for(LAB):
        d = f.detail
        if "speed / BLAS" in f.name and "gflops_ours" in d:
            name, threads = f.name.split()[0], int(f.name.split()[1])
            n, dt = f.name.rsplit("n=", 1)[1].split()
            measured.setdefault((name, threads, int(n), dt), d["gflops_ours"])
            if (name, threads) in (("packed", 1), ("threaded", 2)):
                measured.setdefault(("blas", threads, int(n), dt), d["gflops_blas"])
        if f.name.startswith("naive i-j-k GFLOP/s") and "gflops_naive" in d:
            n, dt = f.name.rsplit("n=", 1)[1].split()
            measured.setdefault(("naive", 1, int(n), dt), d["gflops_naive"])
    return measured
