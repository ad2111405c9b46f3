"""The card's own ceilings, measured in the same run as the kernels they judge.

Spec sheets quote peaks no kernel reaches; a figure is honest as a fraction of what this
card actually does: a large device-to-device copy (bytes/s, read + write counted) and a
large bf16 ``torch.matmul`` (cuBLAS, FLOP/s).  Medians of ``triton.testing.do_bench``.
CUDA only.
"""
from __future__ import annotations

import functools


def bench_ms(fn, **kwargs) -> float:
    """Median milliseconds of ``fn`` (``triton.testing.do_bench``: warm-up, L2 flush, CUDA events)."""
    from triton.testing import do_bench

    return float(do_bench(fn, return_mode="median", **kwargs))


@functools.lru_cache(maxsize=None)
def measured_ceilings(copy_bytes: int = 2 * 2**30, matmul_n: int = 8192) -> dict:
    """{'copy_bytes_per_s', 'bf16_matmul_flops'} of this CUDA device."""
    import torch

    src = torch.empty(copy_bytes // 2, dtype=torch.bfloat16, device="cuda").uniform_()
    dst = torch.empty_like(src)
    copy_s = bench_ms(lambda: dst.copy_(src)) * 1e-3
    del src, dst
    a = torch.randn(matmul_n, matmul_n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(matmul_n, matmul_n, dtype=torch.bfloat16, device="cuda")
    mm_s = bench_ms(lambda: a @ b) * 1e-3
    return {"copy_bytes_per_s": 2 * copy_bytes / copy_s, "bf16_matmul_flops": 2 * matmul_n**3 / mm_s,
            "copy_bytes": copy_bytes, "matmul_n": matmul_n, "device": torch.cuda.get_device_name(0)}
