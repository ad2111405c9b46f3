"""Pinned thread pools for measurements (bench harness, not the lesson).

On 2 cores numba's threads and the BLAS's threads oversubscribe the machine unless both
pools are pinned to the same count around a timing; ratios against BLAS are only fair
with the same count on both sides.
"""
from __future__ import annotations

import contextlib

import numba


@contextlib.contextmanager
def pinned_threads(n: int):
    """Pin numba's and the BLAS's thread pools to ``n`` threads for the ``with`` block."""
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)
