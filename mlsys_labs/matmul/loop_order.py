"""Step 2: loop interchange, i-k-j.

Swapping the two inner loops makes the innermost one walk a *row* of B and a row of C
with stride 1: every byte of each cache line is used, and the loop body
``C[i, j] += A[i, k] * B[k, j]`` has no loop-carried dependence, so LLVM vectorises it
(CS:APP §6.6.2, the kij/ikj rows of Figure 6.46; Engineering a Compiler §8 on loop
transformations).  The arithmetic is the same; only the order of memory accesses changed.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .operands import check_operands, finish, output_buffer


@njit(cache=True, fastmath=True)
def ikj_kernel(a, b, c):
    """c = a @ b with the i-k-j loop order; a, b, c C-contiguous."""
    # BEGIN SOLUTION [step 2] hint: zero C, then loops i, k, j; hoist A[i, k] out of the stride-1 j loop
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            c[i, j] = 0
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                c[i, j] += aip * b[p, j]
    # END SOLUTION


def matmul_loop_order(a, b, out=None):
    """C = A @ B, i-k-j loop order.  Non-contiguous operands are copied first."""
    a, b = check_operands(a, b, out)
    c = output_buffer(a, b, out)
    ikj_kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), c)
    return finish(c, out)
