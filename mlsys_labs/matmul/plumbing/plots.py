"""The roofline plot (Williams, Waterman & Patterson, CACM 2009) of the measured ceilings
and the variants' measured GFLOP/s at their modelled arithmetic intensity."""
from __future__ import annotations

import numpy as np


def plot_roofline(points: list[dict], ceilings: dict, path, dtype: str = "fp32", title: str | None = None,
                  more_ceilings: dict | None = None):
    """Save a log-log roofline: the bandwidth slope, the compute roof(s) and one dot per
    point ``{'label', 'intensity', 'gflops'}``; ``more_ceilings`` (e.g. the 2-thread
    ceilings) adds a second, dashed roof.  Returns the path."""
    from mlsys_labs.common.plotting import figure, save

    peak = ceilings[f"peak_flops_{dtype}"] / 1e9
    blas = ceilings.get(f"blas_flops_{dtype}", 0) / 1e9
    bw = ceilings["bandwidth_bytes"] / 1e9
    xs = np.logspace(-2.5, 3, 200)
    fig, ax = figure(7.0, 4.6)
    ax.loglog(xs, np.minimum(peak, bw * xs), "k-", lw=2,
              label=f"DRAM roof: triad {bw:.1f} GB/s, micro-kernel peak {peak:.0f} GFLOP/s")
    if "bandwidth_l3_bytes" in ceilings:
        bw3 = ceilings["bandwidth_l3_bytes"] / 1e9
        ax.loglog(xs, np.minimum(peak, bw3 * xs), color="C7", lw=1.5,
                  label=f"L3 roof: triad in L3 {bw3:.1f} GB/s")
    if more_ceilings:
        peak2 = more_ceilings[f"peak_flops_{dtype}"] / 1e9
        bw2 = more_ceilings["bandwidth_bytes"] / 1e9
        ax.loglog(xs, np.minimum(peak2, bw2 * xs), "k--", lw=1,
                  label=f"{more_ceilings.get('threads', 2)} threads: triad {bw2:.1f} GB/s, peak {peak2:.0f} GFLOP/s")
    if blas:
        ax.axhline(blas, color="gray", ls="--", lw=1, label=f"BLAS large-n matmul {blas:.0f} GFLOP/s (check)")
    ax.axvline(peak / bw, color="gray", ls=":", lw=1)
    for i, p in enumerate(points):
        ax.plot(p["intensity"], p["gflops"], "o", ms=8, color=f"C{i}", label=f"{p['label']}: {p['gflops']:.1f} GFLOP/s")
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved past L2, modelled)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title or f"Roofline ({dtype}, {ceilings.get('threads', 1)} thread(s))")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return save(fig, path)
