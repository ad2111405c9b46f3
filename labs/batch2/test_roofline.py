"""The roofline pieces: the triad kernel, the measured ceilings, the cost model, the plot."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlsys_labs.matmul import roofline


@pytest.mark.points(1)
def test_stream_triad_computes_the_triad(rng):
    b, c = rng.standard_normal(1000), rng.standard_normal(1000)
    a = np.full(1000, np.nan)
    roofline.stream_triad(a, b, c, 1.5, 2)
    np.testing.assert_allclose(a, b + 1.5 * c, rtol=1e-15)


@pytest.mark.points(2)
def test_measured_ceilings_are_plausible():
    """Positive and finite (no timing comparisons: the machine may be shared)."""
    ceil = roofline.measure_ceilings(quick=True)
    for key in ("peak_flops_fp32", "peak_flops_fp64", "blas_flops_fp32", "bandwidth_bytes"):
        assert math.isfinite(ceil[key]) and ceil[key] > 1e8, (key, ceil)


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
    path = roofline.plot_roofline(pts, ceil, tmp_path / "roof.png")
    assert path.exists() and path.stat().st_size > 5000
