"""Lab 4: W8A8 int8 GEMM with fused dequantisation against bf16 torch.matmul and torch._int_mm
(int8 → int32, no epilogue) at 4096 and 8192.  CUDA only."""
import pytest

import mlsys_labs.kernels as K
from mlsys_labs.common.bench import record_figure
from mlsys_labs.kernels.plumbing.gpu_ceilings import bench_ms, measured_ceilings

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("n", [4096, 8192])
def test_int8_vs_bf16_and_int_mm(benchmark, n):
    import torch

    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    x_q, xs = K.quantize_per_token(x)
    w_q, ws = K.quantize_per_channel(w)
    out = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    ours_ms = bench_ms(lambda: K.w8a8_linear(x_q, xs, w_q, ws, out_dtype=torch.bfloat16, out=out))
    bf16_ms = bench_ms(lambda: x @ w.T)
    int_mm_ms = bench_ms(lambda: torch._int_mm(x_q, w_q.T))
    ops = 2 * n**3
    peak = measured_ceilings()["bf16_matmul_flops"]
    detail = {"n": n, "ours_ms": ours_ms, "bf16_ms": bf16_ms, "int_mm_ms": int_mm_ms,
              "ours_TOPs": ops / ours_ms / 1e9, "bf16_TFLOPs": ops / bf16_ms / 1e9, "int_mm_TOPs": ops / int_mm_ms / 1e9}
    benchmark.extra_info.update(detail)

    def step():
        K.w8a8_linear(x_q, xs, w_q, ws, out_dtype=torch.bfloat16, out=out)
        torch.cuda.synchronize()
    benchmark.pedantic(step, rounds=3, iterations=1)
    record_figure(lab=4, name=f"W8A8 int8 GEMM {n}^3: speed-up over bf16 torch.matmul", value=bf16_ms / ours_ms,
                  unit="x", target=">= 1.3", peer="torch.matmul bf16 (cuBLAS)", detail=detail)
    record_figure(lab=4, name=f"W8A8 int8 GEMM {n}^3: speed-up over torch._int_mm", value=int_mm_ms / ours_ms,
                  unit="x", peer="torch._int_mm (no dequant epilogue)", detail=detail)
    record_figure(lab=4, name=f"W8A8 int8 GEMM {n}^3: ops/s over bf16 matmul ceiling", value=ops / ours_ms * 1e3 / peak,
                  unit="x", peer="cuBLAS bf16 matmul", detail=detail)
