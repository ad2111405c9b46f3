"""Lab 2 — cache-aware matrix multiplication on the CPU, in numba.

Five steps, one file each, all with the signature ``matmul_X(a, b, out=None) -> C``:

1. :func:`matmul_naive`       naive i-j-k                         (``naive.py``)
2. :func:`matmul_loop_order`  loop interchange, i-k-j             (``loop_order.py``)
3. :func:`matmul_blocked`     cache blocking                      (``blocked.py``)
4. :func:`matmul_packed`      five loops, packed panels, MR x NR micro-kernel (``packed.py``)
5. :func:`matmul_threaded`    the same on several threads         (``threaded.py``)

plus an autotuner (``autotune.py``), a measured roofline (``roofline.py``) and an LRU
cache simulator that explains the steps (``cachesim.py``).
"""
from .autotune import SEARCH_SPACE, autotune, tuned_config
from .blocked import matmul_blocked, tile_sizes
from .cachesim import CacheConfig, blocked_stream, ijk_stream, ikj_stream, miss_table, simulate
from .loop_order import matmul_loop_order
from .naive import matmul_naive
from .packed import DEFAULT_CONFIG, BlockConfig, matmul_packed, micro_kernel_4x4, pack_panel_a, pack_panel_b
from .threaded import matmul_threaded, pinned_threads

VARIANTS = {
    "naive": matmul_naive,
    "loop_order": matmul_loop_order,
    "blocked": matmul_blocked,
    "packed": matmul_packed,
    "threaded": matmul_threaded,
}

__all__ = [
    "BlockConfig", "CacheConfig", "DEFAULT_CONFIG", "SEARCH_SPACE", "VARIANTS", "autotune", "blocked_stream",
    "ijk_stream", "ikj_stream", "matmul_blocked", "matmul_loop_order", "matmul_naive", "matmul_packed",
    "matmul_threaded", "micro_kernel_4x4", "miss_table", "pack_panel_a", "pack_panel_b", "pinned_threads",
    "simulate", "tile_sizes", "tuned_config",
]
