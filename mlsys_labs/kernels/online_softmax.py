"""Online softmax: the normaliser in one pass (Milakov & Gimelshein 2018, Algorithm 3).

A row longer than one block cannot be held on chip, so the max and the sum must be
built block by block.  The trick: keep the running max m and the running sum d of
exp(x - m); when a new block raises the max from m to m', rescale the old sum:

    m' = max(m, max_j x_j)
    d' = d · exp(m - m') + Σ_j exp(x_j - m')

After the last block d = Σ_k exp(x_k - m_final), exactly.  Each lane of the block keeps
its own (m, d) pair; the pairs merge with the same rule, which is associative:

    (m1, d1) ⊕ (m2, d2) = (M, d1·exp(m1 - M) + d2·exp(m2 - M)),   M = max(m1, m2)

— the identity FlashAttention applies to whole attention rows.  Pass 2 reads the row
again and writes exp(x - m)/d: 2 reads + 1 write instead of the naive 3 reads + 1 write.

Cost, R×C of b bytes: flops ≈ 7·R·C;  fewest bytes = 2·R·C·b (this two-pass kernel moves
3·R·C·b: a row that does not fit on chip is read twice).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._checks import FLOAT_DTYPES, check_out, check_tensor


@triton.jit
def online_softmax_kernel(out_ptr, in_ptr, in_row_stride, out_row_stride, n_cols, BLOCK_SIZE: tl.constexpr):
    """Pass 1: per-lane running (max, sum) over the row's blocks, merged with ⊕; pass 2: normalise."""
    # BEGIN SOLUTION [step 3] hint: m' = max(m, x); d = d*exp(m - m') + exp(x - m') per lane (shift by 0 where m' is -inf); merge lanes; second loop writes exp(x - M) / D
    row = tl.program_id(0)
    in_row = in_ptr + row * in_row_stride
    out_row = out_ptr + row * out_row_stride
    cols = tl.arange(0, BLOCK_SIZE)
    m = tl.zeros([BLOCK_SIZE], dtype=tl.float32) - float("inf")
    d = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK_SIZE):
        mask = start + cols < n_cols
        x = tl.load(in_row + start + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, x)
        # a lane that has seen only -inf must keep d = 0: shift by 0 there, not by -inf (-inf - -inf = NaN)
        shift = tl.where(m_new > -float("inf"), m_new, 0.0)
        d = d * tl.exp(m - shift) + tl.exp(x - shift)
        m = m_new
    m_row = tl.max(m, axis=0)
    d_row = tl.sum(d * tl.exp(m - m_row), axis=0)  # the ⊕ merge of the lanes' (m, d) pairs
    for start in range(0, n_cols, BLOCK_SIZE):
        mask = start + cols < n_cols
        x = tl.load(in_row + start + cols, mask=mask, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_row) / d_row
        tl.store(out_row + start + cols, y.to(out_ptr.dtype.element_ty), mask=mask)
    # END SOLUTION


def online_softmax(x: torch.Tensor, out: torch.Tensor | None = None, *, block_size: int = 1024) -> torch.Tensor:
    """Softmax over the last dimension of a 2-D tensor, rows of any length, ``block_size`` columns at a time."""
    check_tensor("x", x, dtypes=FLOAT_DTYPES, ndim=2, contiguous=False)
    if x.stride(1) != 1:
        raise ValueError(f"online_softmax: columns of x must be contiguous, got strides {x.stride()}")
    if block_size <= 0 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two, got {block_size}")
    n_rows, n_cols = x.shape
    if n_cols == 0 or n_rows == 0:
        raise ValueError(f"online_softmax: empty input of shape {tuple(x.shape)}")
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    check_out("out", out, x.shape, x.dtype, x)
    online_softmax_kernel[(n_rows,)](out, x, x.stride(0), out.stride(0), n_cols, BLOCK_SIZE=block_size,
                                     num_warps=4 if block_size <= 2048 else 8)
    return out
