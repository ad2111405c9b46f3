"""Step 5: multithreading the five loops.

Which loop to parallelise (Smith, Van de Geijn et al., "Anatomy of High-Performance
Many-Threaded Matrix Multiplication", IPDPS 2014): loop 3 (the ic loop over MC blocks of
A) gives each thread its own packed A~ block in its own L2, while the packed B~ panel
(in the shared L3) is read by all of them.  The blocks of C the threads write are
disjoint, so no synchronisation is needed beyond the join at the end of each ``prange``.

Thread counts are pinned for measurements: numba's pool with ``numba.set_num_threads``
and numpy's BLAS with ``threadpoolctl`` — on 2 cores, numba's threads and BLAS's
threads oversubscribe the machine otherwise (see :func:`pinned_threads`).
"""
from __future__ import annotations

import contextlib

import numba
import numpy as np
from numba import njit, prange

from .operands import c_or_transposed, check_operands, finish, output_buffer
from .packed import DEFAULT_CONFIG, BlockConfig, macro_kernel, pack_panel_a, pack_panel_b


@njit(cache=True, parallel=True)
def gemm_threaded(a, trans_a, b, trans_b, c, mc, kc, nc, mr, nr):
    """The five loops with loop 3 (ic) in a ``prange``; each iteration packs its own A~."""
    # BEGIN SOLUTION hint: as gemm_packed, but the ic loop is prange over MC-block indices, each with its own A~ buffer and tile
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    c[:, :] = 0
    bp = np.empty(((nc + nr - 1) // nr) * nr * kc, dtype=c.dtype)
    n_blocks = (m + mc - 1) // mc
    for jc in range(0, n, nc):                      # loop 5
        nc_b = min(nc, n - jc)
        for pc in range(0, k, kc):                  # loop 4
            kc_b = min(kc, k - pc)
            pack_panel_b(b, trans_b, pc, jc, kc_b, nc_b, nr, bp)
            for blk in prange(n_blocks):            # loop 3, one MC block per iteration
                ic = blk * mc
                mc_b = min(mc, m - ic)
                ap = np.empty(((mc + mr - 1) // mr) * mr * kc, dtype=c.dtype)
                tile = np.empty((mr, nr), dtype=c.dtype)
                pack_panel_a(a, trans_a, ic, pc, mc_b, kc_b, mr, ap)
                macro_kernel(ap, bp, c, ic, jc, mc_b, nc_b, kc_b, mr, nr, tile)
    # END SOLUTION


def balanced_mc(m: int, mc: int, mr: int, threads: int) -> int:
    """MC, shrunk (to a multiple of MR) when m is too small to give every thread a block."""
    per_thread = -(-m // max(threads, 1))
    per_thread = -(-per_thread // mr) * mr
    return max(mr, min(mc, per_thread))


def matmul_threaded(a, b, out=None, config: BlockConfig | None = None, threads: int | None = None):
    """C = A @ B with the five loops on ``threads`` numba threads (default: all)."""
    a, b = check_operands(a, b, out)
    cfg = (config or DEFAULT_CONFIG).validate()
    threads = threads or numba.config.NUMBA_NUM_THREADS
    c = output_buffer(a, b, out)
    a_c, trans_a = c_or_transposed(a)
    b_c, trans_b = c_or_transposed(b)
    mc = balanced_mc(a.shape[0], cfg.mc, cfg.mr, threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        gemm_threaded(a_c, trans_a, b_c, trans_b, c, mc, cfg.kc, cfg.nc, cfg.mr, cfg.nr)
    finally:
        numba.set_num_threads(previous)
    return finish(c, out)


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
