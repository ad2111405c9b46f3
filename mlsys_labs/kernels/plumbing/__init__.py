"""Plumbing around lab 4's kernels — not the lesson.

- :mod:`compile_check` — compiles every Triton kernel for a real GPU target (sm_90 by default)
  without a GPU (``python -m mlsys_labs.kernels.compile_check``).
- :mod:`gpu_ceilings` — the card's measured copy bandwidth and bf16 matmul rate, the ceilings
  the benchmarks judge each kernel against.
- :mod:`demo` — ``mlsys-labs run 4``: the kernels against their references, a small attention
  model trained through the FlashAttention backward, and the plots.
"""
