"""Lab 4 — GPU kernels in Triton and Numba CUDA.

Every kernel here runs natively on a CUDA GPU and, without one, under Triton's interpreter
(``TRITON_INTERPRET=1``) or Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).  Both
variables are read when Triton/Numba's CUDA module is first imported, so this package
switches them on (``configure_triton``) before importing either.

One file per kernel, in the order of the lab:

- :mod:`.vector_add`        — the programming model (programs, blocks, masks)
- :mod:`.softmax`           — fused row softmax: one program per row, the row on chip
- :mod:`.online_softmax`    — single-pass running max/sum (Milakov & Gimelshein 2018)
- :mod:`.flash_attention`   — FlashAttention-2 forward/backward as a ``torch.autograd.Function``
- :mod:`.int8_matmul`       — W8A8 int8 GEMM, int32 accumulation, dequant + bias epilogue
- :mod:`.quantization`      — per-token / per-channel quantisation and SmoothQuant smoothing
- :mod:`.rmsnorm`, :mod:`.rope` — fused RMSNorm and rotary embedding
- :mod:`.numba_matmul`, :mod:`.numba_reduction` — shared-memory tiling and tree reduction (PMPP)
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
