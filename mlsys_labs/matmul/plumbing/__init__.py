"""Plumbing around lab 2's kernels — not the lesson.

- :mod:`ceilings` — the roofline's ceilings measured on this machine (the lesson's L1 peak and
  STREAM triad beside numpy's BLAS, the peer) and cached per machine.
- :mod:`pinning` — :func:`pinned_threads`: numba's and the BLAS's thread pools pinned to one
  count around a measurement.
- :mod:`plots` — the roofline plot.
- :mod:`demo` — ``mlsys-labs run 2`` / ``make lab-2``: ceilings, autotuning, every step
  against BLAS, the cache-miss table, the roofline.
"""
from .ceilings import blas_flops, measure_ceilings
from .pinning import pinned_threads
from .plots import plot_roofline

__all__ = ["blas_flops", "measure_ceilings", "pinned_threads", "plot_roofline"]
