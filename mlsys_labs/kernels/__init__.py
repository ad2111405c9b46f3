"""Lab 4 — GPU kernels in Triton and Numba CUDA.

Every kernel here runs natively on a CUDA GPU and, without one, under Triton's interpreter
(``TRITON_INTERPRET=1``) or Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).  Both
variables are read when Triton/Numba's CUDA module is first imported, so this package
switches them on (``configure_triton``) before importing either.

The lesson, one file per kernel, in the order of the lab (file — what it teaches — where it comes from):

- :mod:`.vector_add`        — programs, blocks, the masked tail (Triton tutorial 01; *CUDA by Example* ch. 4)
- :mod:`.softmax`           — fused row softmax, one program per row, the row on chip (Triton tutorial 02)
- :mod:`.online_softmax`    — single-pass running max/sum for rows longer than a block (Milakov & Gimelshein 2018)
- :mod:`.rmsnorm`, :mod:`.rope` — fused RMSNorm (Zhang & Sennrich 2019) and rotary embedding (RoFormer §3.4)
- :mod:`.flash_attention`   — FlashAttention-2 forward/backward as a ``torch.autograd.Function``: tiling,
  online softmax, recomputation; masks only on the diagonal and edge blocks (Dao 2023, Alg. 1–2;
  Triton tutorial 06)
- :mod:`.int8_matmul`       — W8A8 int8 GEMM, int32 accumulation, dequant + bias epilogue (LLM.int8() §3; ZeroQuant §3)
- :mod:`.quantization`      — per-token / per-channel quantisation (also lab 5's int8 weights) and
  SmoothQuant smoothing (Xiao et al. 2023, §4, eq. 4)
- :mod:`.numba_matmul`, :mod:`.numba_reduction` — shared-memory tiling and tree reduction (PMPP ch. 5, 10)
- :mod:`._checks`           — the input checks every launcher runs before it launches (given)

Around it, :mod:`.plumbing` (not the lesson): the ahead-of-time compile check for sm_90, the card's
measured ceilings for the benchmarks, and the demo (``mlsys-labs run 4``); :mod:`.compile_check`
at the top only forwards ``python -m mlsys_labs.kernels.compile_check`` to it.
"""
from mlsys_labs.common.device import configure_triton

configure_triton()  # before any `import triton` / `numba.cuda` below

from .flash_attention import (  # noqa: E402
    FlashAttention,
    attention_reference,
    flash_attention,
    flash_attention_backward,
    flash_attention_forward,
)
from .int8_matmul import int8_matmul, int8_matmul_reference, w8a8_linear, w8a8_linear_reference  # noqa: E402
from .numba_matmul import tiled_matmul  # noqa: E402
from .numba_reduction import block_sum  # noqa: E402
from .online_softmax import online_softmax  # noqa: E402
from .quantization import (  # noqa: E402
    W8A8Linear,
    dequantize,
    outlier_layer,
    quantization_error,
    quantize_per_channel,
    quantize_per_token,
    smooth,
    smoothing_factors,
)
from .rmsnorm import rmsnorm, rmsnorm_reference  # noqa: E402
from .rope import rope, rope_cache, rope_reference  # noqa: E402
from .softmax import softmax, softmax_reference  # noqa: E402
from .vector_add import add, add_reference  # noqa: E402

__all__ = [
    "FlashAttention", "W8A8Linear", "add", "add_reference", "attention_reference", "block_sum",
    "dequantize", "flash_attention", "flash_attention_backward", "flash_attention_forward",
    "int8_matmul", "int8_matmul_reference", "online_softmax", "outlier_layer", "quantization_error",
    "quantize_per_channel", "quantize_per_token", "rmsnorm", "rmsnorm_reference", "rope", "rope_cache",
    "rope_reference", "smooth", "smoothing_factors", "softmax", "softmax_reference", "tiled_matmul",
    "w8a8_linear", "w8a8_linear_reference",
]
