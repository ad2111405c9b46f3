"""The roofline pieces (README step 7): the triad kernel, how the bandwidth is measured (a
fake clock, no timing asserts), the cost model's exact formulas, the plot."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlsys_labs.matmul import BlockConfig, roofline, tile_sizes
from mlsys_labs.matmul.plumbing import measure_ceilings, plot_roofline

from matmul_checks import FakeClock

pytestmark = pytest.mark.step(7)


@pytest.mark.points(1)
def test_stream_triad_computes_the_triad(rng):
    for n in (1, 7, 1000):
        b, c = rng.standard_normal(n), rng.standard_normal(n)
        a = np.full(n, np.nan)
        roofline.stream_triad(a, b, c, 1.5, 2)
        np.testing.assert_allclose(a, b + 1.5 * c, rtol=1e-15, err_msg=f"triad n={n}")


@pytest.mark.points(2)
@pytest.mark.parametrize("sweeps, repeats", [(1, 3), (5, 4), (3, 1)])
def test_triad_bandwidth_measurement(monkeypatch, sweeps, repeats):
    """One warm-up call of one sweep (untimed, here the fastest of all), then `repeats`
    timed calls of `sweeps` sweeps, the best counted as 3 * 8 * n * sweeps bytes; numba's
    thread count set during the calls and restored after."""
    import numba

    clock = FakeClock()
    per_sweep = [0.001] + [0.4, 0.3, 0.2, 0.5][:repeats]         # the warm-up, then the timed calls
    calls = []
    threads_seen = []

    def fake_triad(a, b, c, scalar, reps):
        assert a.shape == b.shape == c.shape and a.dtype == np.float64
        calls.append(reps)
        threads_seen.append(numba.get_num_threads())
        clock.now += per_sweep[len(calls) - 1] * reps if len(calls) <= len(per_sweep) else 100.0

    monkeypatch.setattr(roofline, "stream_triad", fake_triad)
    monkeypatch.setattr(roofline.time, "perf_counter", clock)
    n = 1234
    before = numba.get_num_threads()
    bw = roofline.triad_bandwidth(n, threads=1, repeats=repeats, sweeps=sweeps)
    assert numba.get_num_threads() == before, "triad_bandwidth did not restore numba's thread count"
    assert calls == [1] + [sweeps] * repeats, f"stream_triad called with reps {calls}"
    assert threads_seen == [1] * len(calls), f"numba threads during the calls: {threads_seen}"
    best = min(per_sweep[1:]) * sweeps
    assert bw == pytest.approx(3 * 8 * n * sweeps / best, rel=1e-9), (bw, 3 * 8 * n * sweeps / best)


class PlantedFailure(Exception):
    """Raised by a fake kernel (not a RuntimeError: NotImplementedError is one)."""


@pytest.mark.points(1)
def test_triad_bandwidth_restores_threads_on_error(monkeypatch):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads to see a change")

    def failing_triad(a, b, c, scalar, reps):
        raise PlantedFailure("planted failure")

    monkeypatch.setattr(roofline, "stream_triad", failing_triad)
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        with pytest.raises(PlantedFailure):
            roofline.triad_bandwidth(100, threads=1)
        assert numba.get_num_threads() == 2, "numba's thread count not restored when the kernel raised"
    finally:
        numba.set_num_threads(previous)


@pytest.mark.points(2)
def test_measured_ceilings_are_plausible():
    """Positive and finite (no timing comparisons: the machine may be shared)."""
    ceil = measure_ceilings(quick=True)
    for key in ("peak_flops_fp32", "peak_flops_fp64", "blas_flops_fp32", "bandwidth_bytes"):
        assert math.isfinite(ceil[key]) and ceil[key] > 1e8, (key, ceil)


def model(variant, m, n, k, s, cache_bytes=roofline.L2_BYTES, cfg=None):
    """The cost model's formulas (bytes_moved's docstring), written again here."""
    compulsory = s * (m * k + k * n + m * n)
    fits = compulsory <= cache_bytes
    if variant == "naive":
        return compulsory if fits else m * n * k * 64 + s * (m * k + m * n)
    if variant == "loop_order":
        return compulsory if fits else s * (m * k * n + m * k + 2 * m * n)
    if variant == "blocked":
        tm, tk, tn = tile_sizes(s)
        return s * (k * n * -(-m // tm) + m * k * -(-n // tn) + 2 * m * n * -(-k // tk))
    if variant in ("packed", "threaded"):
        cfg = cfg or roofline.DEFAULT_CONFIG
        return s * (m * k * -(-n // cfg.nc) + k * n + 2 * m * n * -(-k // cfg.kc))
    return compulsory


SHAPES = [(960, 960, 960), (100, 1500, 70), (1, 2049, 3), (97, 65, 1025), (300, 7, 4097), (5, 5, 5)]


@pytest.mark.points(2)
@pytest.mark.parametrize("variant", ["naive", "loop_order", "blocked", "packed", "threaded", "blas"])
def test_cost_model_values(variant):
    """Exact byte counts, both item sizes, sizes that are not multiples of any block or tile."""
    for m, n, k in SHAPES:
        for s in (4, 8):
            got = roofline.bytes_moved(variant, m, n, k, s)
            assert isinstance(got, float)
            assert got == model(variant, m, n, k, s), (variant, (m, n, k), s, got, model(variant, m, n, k, s))
            assert roofline.arithmetic_intensity(variant, m, n, k, s) == pytest.approx(
                2 * m * n * k / model(variant, m, n, k, s), rel=1e-12)
    if variant in ("packed", "threaded"):
        cfg = BlockConfig(mc=16, kc=300, nc=200, mr=4, nr=4)
        for m, n, k in SHAPES:
            assert roofline.bytes_moved(variant, m, n, k, 4, config=cfg) == model(variant, m, n, k, 4, cfg=cfg)


@pytest.mark.points(1)
@pytest.mark.parametrize("variant", ["naive", "loop_order"])
def test_cost_model_cache_fit_boundary(variant):
    """Operands that fill the cache exactly still fit; one byte less of cache and they do not."""
    m, n, k, s = 16, 16, 16, 8
    compulsory = s * 3 * 16 * 16
    assert roofline.bytes_moved(variant, m, n, k, s, cache_bytes=compulsory) == compulsory
    assert roofline.bytes_moved(variant, m, n, k, s, cache_bytes=compulsory - 1) == model(
        variant, m, n, k, s, cache_bytes=compulsory - 1)
    with pytest.raises(ValueError):
        roofline.bytes_moved("no_such_variant", m, n, k, s)


@pytest.mark.points(1)
def test_cost_model_orders_the_steps():
    n, s = 960, 4
    ai = {v: roofline.arithmetic_intensity(v, n, n, n, s) for v in ("naive", "loop_order", "blocked", "packed", "blas")}
    assert ai["naive"] < ai["loop_order"] < ai["blocked"] < ai["packed"] <= ai["blas"], ai
    for v in ai:   # never more than the compulsory traffic allows
        assert roofline.bytes_moved(v, n, n, n, s) >= s * 3 * n * n
    assert roofline.flops(2, 3, 4) == 48


@pytest.mark.points(1)
def test_roofline_plot_is_written(tmp_path):
    ceil = {"peak_flops_fp32": 1e11, "blas_flops_fp32": 1.2e11, "bandwidth_bytes": 2e10, "threads": 1}
    pts = [{"label": v, "intensity": roofline.arithmetic_intensity(v, 256, 256, 256, 4), "gflops": g}
           for v, g in (("naive", 0.5), ("loop_order", 8.0), ("packed", 60.0))]
    path = plot_roofline(pts, ceil, tmp_path / "roof.png")
    assert path.exists() and path.stat().st_size > 5000
