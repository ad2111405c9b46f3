"""Batched matrix product with numpy's ``matmul`` broadcasting of the batch axes
(D2L §2.3.9; Math & Architectures of DL ch. 5)."""
from __future__ import annotations

import numpy as np

from ..tensor import Function


class MatMul(Function):
    """a @ b for a of shape (..., m, k) and b of shape (..., k, n); the batch axes
    broadcast (the engine sums a broadcast input's gradient back to its shape)."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("matmul needs operands with at least 2 dimensions")
        # BEGIN SOLUTION [step 3] hint: save a and b on ctx; return a @ b
        ctx.save_for_backward(a, b)
        return a @ b
        # END SOLUTION

    @staticmethod
    def backward(ctx, grad_out):
        # BEGIN SOLUTION [step 3] hint: dA = G Bᵀ, dB = Aᵀ G (transpose the last two axes)
        a, b = ctx.saved
        return grad_out @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ grad_out
        # END SOLUTION
