"""Step 1: the textbook triple loop, i-j-k.

``C[i, j] = sum_k A[i, k] * B[k, j]``: the inner loop walks down a *column* of B, a
stride of n elements, so every B access touches a new cache line and the line is gone
before its neighbours are used (CS:APP §6.6.2, "Rearranging Loops to Increase Spatial
Locality", the ijk row of Figure 6.46).  It also carries a dependence through ``s``,
so the compiler cannot vectorise it without reassociating the sum.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .operands import check_operands, finish, output_buffer


@njit(cache=True)
def naive_kernel(a, b, c):
    """c = a @ b with the i-j-k loop order; a, b, c C-contiguous."""
    # BEGIN SOLUTION [step 1] hint: three loops i, j, k; accumulate A[i, k] * B[k, j] in a scalar, then store C[i, j]
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            s = c.dtype.type(0)
            for p in range(k):
                s += a[i, p] * b[p, j]
            c[i, j] = s
    # END SOLUTION


def matmul_naive(a, b, out=None):
    """C = A @ B, naive i-j-k.  Non-contiguous operands are copied first."""
    a, b = check_operands(a, b, out)
    c = output_buffer(a, b, out)
    naive_kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), c)
    return finish(c, out)
