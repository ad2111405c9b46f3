"""Lab 2 — cache-aware matrix multiplication on the CPU, in numba.

Five steps, one file each, all with the signature ``matmul_X(a, b, out=None) -> C``, then
three files that measure and explain them:

==================  ==========================================================  ==========================================
file                what it teaches                                             reading
==================  ==========================================================  ==========================================
``naive.py``        step 1, the i-j-k triple loop: B walked down a column        CS:APP §6.6.2 (Fig. 6.46)
``loop_order.py``   step 2, loop interchange i-k-j: stride-1 inner loop, SIMD    CS:APP §6.6.2; Parallel & HPC ch. 6
``blocked.py``      step 3, cache blocking: tile sizes from the cache sizes      CS:APP §6.6.3; Art of HPC vol. 1 ch. 1
``packed.py``       step 4, the five loops of GotoBLAS/BLIS, packed panels,      Goto & van de Geijn (TOMS 2008);
                    the MR x NR register-blocked micro-kernel                    Van Zee & van de Geijn, BLIS (TOMS 2015)
``threaded.py``     step 5, splitting loop 5 (or 3) over threads                 Smith et al. (IPDPS 2014)
``autotune.py``     step 6, an empirical search of the block sizes               Whaley & Dongarra, ATLAS (SC'98)
``roofline.py``     step 7, the ceilings (L1 peak, STREAM triad), the cost       Williams et al., Roofline (CACM 2009);
                    model (bytes moved per variant)                              McCalpin, STREAM
``cachesim.py``     step 8, an LRU set-associative cache fed with each step's    CS:APP §6.4
                    address stream
``operands.py``     (given) checking the operands every variant shares
==================  ==========================================================  ==========================================

The plumbing — the ceilings' cache and the BLAS peer, pinned thread pools, the roofline
plot, the demo — lives in :mod:`mlsys_labs.matmul.plumbing`.
"""
from .autotune import SEARCH_SPACE, autotune, tuned_config
from .blocked import matmul_blocked, tile_sizes
from .cachesim import CacheConfig, blocked_stream, ijk_stream, ikj_stream, miss_table, simulate
from .loop_order import matmul_loop_order
from .naive import matmul_naive
from .packed import (DEFAULT_CONFIG, MICRO_KERNEL_SHAPES, BlockConfig, gemm_packed, macro_kernel, matmul_packed,
                     micro_kernel, micro_kernel_2x8, micro_kernel_4x4, pack_panel_a, pack_panel_b)
from .threaded import gemm_threaded, matmul_threaded

VARIANTS = {
    "naive": matmul_naive,
    "loop_order": matmul_loop_order,
    "blocked": matmul_blocked,
    "packed": matmul_packed,
    "threaded": matmul_threaded,
}

__all__ = [
    "BlockConfig", "CacheConfig", "DEFAULT_CONFIG", "MICRO_KERNEL_SHAPES", "SEARCH_SPACE", "VARIANTS", "autotune", "blocked_stream",
    "gemm_packed", "gemm_threaded", "ijk_stream", "ikj_stream", "macro_kernel", "matmul_blocked",
    "matmul_loop_order", "matmul_naive", "matmul_packed", "matmul_threaded", "micro_kernel", "micro_kernel_2x8",
    "micro_kernel_4x4", "miss_table", "pack_panel_a", "pack_panel_b", "simulate", "tile_sizes", "tuned_config",
]
