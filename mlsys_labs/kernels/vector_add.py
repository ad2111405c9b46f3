"""Vector add: the Triton programming model in ten lines (Triton tutorial 01).

A launch runs a *grid* of programs; program ``pid`` owns the block of ``BLOCK_SIZE``
elements starting at ``pid * BLOCK_SIZE``.  The last block hangs off the end of the
array, so every load and store carries a *mask*.  Compare CUDA by Example ch. 4–5 /
PMPP ch. 2–3, where the same thing is one *thread* per element: a Triton program is a
whole thread block, and the compiler spreads the block's vector over its threads.

Cost, n elements of b bytes:  flops = n;  fewest bytes moved = 3·n·b (read x, read y,
write out).  Intensity 1/(3b) flop/byte: far left of every GPU's ridge, so the only
figure of merit is the fraction of copy bandwidth reached.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._checks import FLOAT_DTYPES, check_out, check_same, check_tensor


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    """out[i] = x[i] + y[i] for the block of indices this program owns."""
    # BEGIN SOLUTION [step 1] hint: pid = tl.program_id(0); offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE); mask the tail
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)
    # END SOLUTION


def add(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None, *,
        block_size: int = 1024) -> torch.Tensor:
    """x + y elementwise with :func:`add_kernel` (any shape; contiguous; fp16/bf16/fp32)."""
    check_tensor("x", x, dtypes=FLOAT_DTYPES)
    check_tensor("y", y, dtypes=FLOAT_DTYPES)
    check_same("add", x=x, y=y)
    if x.shape != y.shape:
        raise ValueError(f"add: x has shape {tuple(x.shape)} but y has {tuple(y.shape)}")
    if block_size <= 0 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two (tl.arange needs one), got {block_size}")
    if out is None:
        out = torch.empty_like(x)
    check_out("out", out, x.shape, x.dtype, x)
    n = x.numel()
    grid = (triton.cdiv(n, block_size),)
    add_kernel[grid](x, y, out, n, BLOCK_SIZE=block_size)
    return out


def add_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """float64 x + y."""
    return x.double() + y.double()
