"""Step 5: multithreading the five loops.

Which loop to parallelise (Smith, Van de Geijn et al., "Anatomy of High-Performance
Many-Threaded Matrix Multiplication", IPDPS 2014): any of the five loops can be split,
each with different sharing.  This lab splits loop 5 — C's columns — into one range per
thread (or, for a C taller than wide, loop 3's rows): each thread packs its own B~ panel
and its own A~ blocks and runs the whole single-threaded kernel on its block, so the
threads meet only once, at the end of one ``prange``.  Splitting loop 3 (the MC blocks) instead shares one packed B~ panel between
the threads, but needs a fork and a join for every KC slice and packs B~ on one thread
(Amdahl); on a shared VM, where a descheduled thread stalls every join, few joins matter
more than sharing B~ in L3.  The ranges are multiples of NR (MR), so the threads write
disjoint tiles of C: no locks.

Thread counts are pinned for measurements: numba's pool with ``numba.set_num_threads``
and numpy's BLAS with ``threadpoolctl`` — on 2 cores, numba's threads and BLAS's
threads oversubscribe the machine otherwise (see ``plumbing.pinning.pinned_threads``).
"""
from __future__ import annotations

import numba
from numba import njit, prange

from .operands import c_or_transposed, check_operands, finish, output_buffer
from .packed import DEFAULT_CONFIG, BlockConfig, gemm_packed


@njit(cache=True, parallel=True)
def gemm_threaded(a, trans_a, b, trans_b, c, n_parts, mc, kc, nc, mr, nr):
    """C = A @ B cut into ``n_parts`` independent blocks, one per ``prange`` iteration, each
    running the five loops of ``gemm_packed``: column ranges (multiples of NR) when C is
    at least as wide as tall, else row ranges (multiples of MR)."""
    # BEGIN SOLUTION [step 5] hint: split the longer side of C into n_parts ranges rounded up to nr (columns) or mr (rows); prange over parts: gemm_packed on that block
    m, n = c.shape
    by_columns = n >= m
    length = n if by_columns else m
    unit = nr if by_columns else mr
    width = (((length + n_parts - 1) // n_parts + unit - 1) // unit) * unit
    for part in prange(n_parts):
        begin = min(length, part * width)
        end = min(length, begin + width)
        if begin < end:
            if by_columns:
                gemm_packed(a, trans_a, b, trans_b, c, 0, m, begin, end, mc, kc, nc, mr, nr)
            else:
                gemm_packed(a, trans_a, b, trans_b, c, begin, end, 0, n, mc, kc, nc, mr, nr)
    # END SOLUTION


def matmul_threaded(a, b, out=None, config: BlockConfig | None = None, threads: int | None = None):
    """C = A @ B with the five loops on ``threads`` numba threads (default: all)."""
    a, b = check_operands(a, b, out)
    cfg = (config or DEFAULT_CONFIG).validate()
    threads = min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
    c = output_buffer(a, b, out)
    a_c, trans_a = c_or_transposed(a)
    b_c, trans_b = c_or_transposed(b)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        gemm_threaded(a_c, trans_a, b_c, trans_b, c, threads, cfg.mc, cfg.kc, cfg.nc, cfg.mr, cfg.nr)
    finally:
        numba.set_num_threads(previous)
    return finish(c, out)
