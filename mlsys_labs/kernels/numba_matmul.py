"""Shared-memory tiled matrix multiply in Numba CUDA (PMPP 4th ed. ch. 5.4, "tiled matrix multiplication").

One thread per element of C; a TILE×TILE thread block owns a TILE×TILE tile of C.  Naively
each thread reads a whole row of A and column of B from global memory: 2K loads per
2K flops.  Tiled, the block cooperatively loads one TILE×TILE tile of A and of B into
shared memory (one element per thread), synchronises, and every thread reuses the
tiles TILE times: global traffic drops by a factor of TILE.  The second
``syncthreads`` stops fast threads overwriting a tile others are still reading.
Out-of-range elements load as 0 so any M, N, K work (PMPP §5.5, boundary checks).

Cost, M×K by K×N float32:  flops = 2·M·N·K;  fewest bytes = 4·(M·K + K·N + M·N);
this kernel reads 4·(M·K·N/TILE + K·N·M/TILE) from global memory (the tiles, once per block).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

TILE = 16


@cuda.jit
def tiled_matmul_kernel(A, B, C):
    """C[row, col] = Σ_k A[row, k] B[k, col], walking K one shared-memory tile at a time."""
    # BEGIN SOLUTION [step 9] hint: two cuda.shared.array((TILE, TILE), float32); per K tile: load one element each (0 outside), syncthreads, TILE multiply-adds, syncthreads; guarded store
    s_a = cuda.shared.array((TILE, TILE), float32)
    s_b = cuda.shared.array((TILE, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    m, k_dim = A.shape
    n = B.shape[1]
    acc = float32(0.0)
    for t in range((k_dim + TILE - 1) // TILE):
        k0 = t * TILE
        s_a[ty, tx] = A[row, k0 + tx] if row < m and k0 + tx < k_dim else float32(0.0)
        s_b[ty, tx] = B[k0 + ty, col] if k0 + ty < k_dim and col < n else float32(0.0)
        cuda.syncthreads()
        for i in range(TILE):
            acc += s_a[ty, i] * s_b[i, tx]
        cuda.syncthreads()
    if row < m and col < n:
        C[row, col] = acc
    # END SOLUTION


def tiled_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 A @ B on the GPU (or Numba's CUDA simulator); ``out`` may be a poisoned buffer."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, np.ndarray) or t.dtype != np.float32 or t.ndim != 2:
            raise TypeError(f"tiled_matmul: {name} must be a 2-D float32 numpy array")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"tiled_matmul: inner dimensions differ: {a.shape} @ {b.shape}")
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.float32)
    if out.shape != (m, n) or out.dtype != np.float32:
        raise ValueError(f"tiled_matmul: out must be float32 of shape {(m, n)}")
    d_a, d_b = cuda.to_device(np.ascontiguousarray(a)), cuda.to_device(np.ascontiguousarray(b))
    d_c = cuda.to_device(out)
    grid = (math.ceil(n / TILE), math.ceil(m / TILE))
    tiled_matmul_kernel[grid, (TILE, TILE)](d_a, d_b, d_c)
    return d_c.copy_to_host()
