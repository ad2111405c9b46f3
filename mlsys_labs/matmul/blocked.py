"""Step 3: cache blocking (tiling).

i-k-j still streams all of B through the cache once per row of A: for n = 960 float32,
B is 3.7 MB, larger than the 1 MiB L2, so every row of A re-reads B from L3 (or DRAM,
once B outgrows L3).  Blocking
splits the loops so that a TB_K x TB_N tile of B stays in cache while TB_M rows of A use
it (CS:APP §6.6.3 "Exploiting Locality in Your Programs" and web aside MEM:BLOCKING;
Lam, Rothberg & Wolf 1991, "The cache performance and optimizations of blocked
algorithms").  Tile sizes come from the cache sizes (:func:`tile_sizes`).

What blocking does *not* change: the inner loop still loads and stores C[i, j] around
every multiply-add (two memory operations per FMA), so on a machine whose L3 holds B
(32 MB here) the gain over i-k-j is small; the register blocking of step 4, which keeps
a tile of C in registers for a whole KC-long reduction, is what removes that traffic.

Numba trap (measured here): numba wraps negative indices, so ``c[i, j0 + jj]`` carries a
"was it negative?" check that LLVM cannot drop (j0 + jj is not provably >= 0), and the
inner loop does not vectorise (about 2 GFLOP/s).  Slicing the rows first —
``c_row = c[i, j0:j0 + nb]`` — and indexing ``c_row[jj]`` with a zero-based ``jj`` does.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .operands import check_operands, finish, output_buffer

L1_BYTES = 32 * 1024      # per core; lscpu on the lab machine, checked against the roofline sweep
L2_BYTES = 1024 * 1024


def tile_sizes(itemsize: int, l1_bytes: int = L1_BYTES, l2_bytes: int = L2_BYTES) -> tuple[int, int, int]:
    """(TB_M, TB_K, TB_N): a TB_K x TB_N tile of B fills half of L2, while one row of it and
    the row of C it updates (2 x TB_N elements) take at most half of L1.

    Rows stay long (TB_N up to 1024): the stride-1 inner loop has a fixed cost per row
    (a new slice, a possible alias check), so short tiles lose more than they gain
    (measured here: TB_N = 128 ran slower than plain i-k-j).
    """
    tb_n = max(16, min(1024, l1_bytes // (4 * itemsize)))
    tb_k = max(16, (l2_bytes // 2) // (tb_n * itemsize))
    tb_m = 64
    return tb_m, tb_k, tb_n


@njit(cache=True, fastmath=True)
def blocked_kernel(a, b, c, tb_m, tb_k, tb_n):
    """c = a @ b in TB_M x TB_K x TB_N tiles, i-k-j order inside a tile."""
    # BEGIN SOLUTION [step 3] hint: zero C; loop over tile origins (j0, k0, i0); inside, loops ii, kk and a zero-based jj over row views c[i0+ii, j0:j0+nb] and b[k0+kk, j0:j0+nb]
    m, k = a.shape
    n = b.shape[1]
    c[:, :] = 0
    for j0 in range(0, n, tb_n):
        nb = min(tb_n, n - j0)
        for k0 in range(0, k, tb_k):
            kb = min(tb_k, k - k0)
            for i0 in range(0, m, tb_m):
                mb = min(tb_m, m - i0)
                for ii in range(mb):
                    c_row = c[i0 + ii, j0:j0 + nb]
                    for kk in range(kb):
                        aik = a[i0 + ii, k0 + kk]
                        b_row = b[k0 + kk, j0:j0 + nb]
                        for jj in range(nb):
                            c_row[jj] += aik * b_row[jj]
    # END SOLUTION


def matmul_blocked(a, b, out=None, tiles: tuple[int, int, int] | None = None):
    """C = A @ B with cache blocking; ``tiles`` = (TB_M, TB_K, TB_N), default from cache sizes."""
    a, b = check_operands(a, b, out)
    tb_m, tb_k, tb_n = tiles or tile_sizes(a.dtype.itemsize)
    if min(tb_m, tb_k, tb_n) < 1:
        raise ValueError(f"matmul_blocked: tile sizes must be positive, got {(tb_m, tb_k, tb_n)}")
    c = output_buffer(a, b, out)
    blocked_kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), c, tb_m, tb_k, tb_n)
    return finish(c, out)
