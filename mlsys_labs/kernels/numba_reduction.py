"""Block sum reduction in Numba CUDA (PMPP 4th ed. ch. 10: reduction trees, §10.4–10.6;
CUDA by Example ch. 5.3 dot product).

Each thread first accumulates a grid-stride slice of the input in a register (thread
coarsening, §10.7), writes it to shared memory, and the block halves the active threads
each step — "sequential addressing": thread t adds element t + stride, so active
threads stay contiguous (no divergence inside a warp until the last 5 steps) and
shared-memory accesses stay conflict-free.  Thread 0 writes the block's partial sum;
a second launch with a single block reduces the partials.

Cost, n float32:  flops = n − 1;  fewest bytes = 4·n (read once).
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

THREADS = 128  # threads per block, a power of two (the tree halves it)


@cuda.jit
def block_sum_kernel(x, partial):
    """partial[blockIdx.x] = sum of the elements this block's threads visit."""
    # BEGIN SOLUTION [step 9] hint: grid-stride loop into a register, cuda.shared.array(THREADS, float32), tree with stride halving and syncthreads, thread 0 writes
    buf = cuda.shared.array(THREADS, float32)
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * THREADS + tid
    step = cuda.gridDim.x * THREADS
    acc = float32(0.0)
    while i < x.shape[0]:
        acc += x[i]
        i += step
    buf[tid] = acc
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if tid < stride:
            buf[tid] += buf[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = buf[0]
    # END SOLUTION


def block_sum(x: np.ndarray, *, max_blocks: int = 64) -> float:
    """Sum of a 1-D float32 array: one launch to per-block partial sums, one to reduce them."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
        raise TypeError("block_sum: x must be a 1-D float32 numpy array")
    if x.size == 0:
        raise ValueError("block_sum: empty input")
    blocks = max(1, min(max_blocks, -(-x.size // THREADS)))
    d_x = cuda.to_device(x)
    d_partial = cuda.to_device(np.full(blocks, np.nan, dtype=np.float32))
    block_sum_kernel[blocks, THREADS](d_x, d_partial)
    d_total = cuda.to_device(np.full(1, np.nan, dtype=np.float32))
    block_sum_kernel[1, THREADS](d_partial, d_total)
    return float(d_total.copy_to_host()[0])
