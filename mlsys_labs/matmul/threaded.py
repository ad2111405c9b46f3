"""Step 5: multithreading the five loops.

Which loop to parallelise (Smith, Van de Geijn et al., "Anatomy of High-Performance
Many-Threaded Matrix Multiplication", IPDPS 2014): any of the five loops can be split,
each with different sharing.  This lab splits loop 5 — C's columns — into one range per
thread: each thread packs its own B~ panel and its own A~ blocks and runs the whole
single-threaded kernel on its columns, so the threads meet only once, at the end of one
``prange``.  Splitting loop 3 (the MC blocks) instead shares one packed B~ panel between
the threads, but needs a fork and a join for every KC slice and packs B~ on one thread
(Amdahl); on a shared VM, where a descheduled thread stalls every join, few joins matter
more than sharing B~ in L3.  The column ranges are multiples of NR, so the threads write
disjoint tiles of C: no locks.

Thread counts are pinned for measurements: numba's pool with ``numba.set_num_threads``
and numpy's BLAS with ``threadpoolctl`` — on 2 cores, numba's threads and BLAS's
threads oversubscribe the machine otherwise (see :func:`pinned_threads`).
"""
from __future__ import annotations

import contextlib

import numba
from numba import njit, prange

from .operands import c_or_transposed, check_operands, finish, output_buffer
from .packed import DEFAULT_CONFIG, BlockConfig, gemm_packed


@njit(cache=True, parallel=True)
def gemm_threaded(a, trans_a, b, trans_b, c, n_parts, mc, kc, nc, mr, nr):
    """C = A @ B with C's columns cut into ``n_parts`` ranges (multiples of NR), one per
    ``prange`` iteration, each running the five loops of ``gemm_packed`` on its range."""
    # BEGIN SOLUTION hint: width = a multiple of nr >= ceil(n / n_parts); prange over parts: gemm_packed on columns [part*width, min(n, (part+1)*width))
    n = c.shape[1]
    width = (((n + n_parts - 1) // n_parts + nr - 1) // nr) * nr
    for part in prange(n_parts):
        j_begin = min(n, part * width)
        j_end = min(n, j_begin + width)
        if j_begin < j_end:
            gemm_packed(a, trans_a, b, trans_b, c, j_begin, j_end, mc, kc, nc, mr, nr)
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
