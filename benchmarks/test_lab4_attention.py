"""Lab 4: FlashAttention-2 (ours, Triton) against PyTorch's scaled_dot_product_attention pinned to
its FlashAttention backend: B=4, H=32, N=4096, d=128, bf16, causal and not; TFLOP/s ratios and
fractions of the card's bf16 matmul ceiling.  CUDA only."""
import pytest

import mlsys_labs.kernels as K
from mlsys_labs.common.bench import record_figure
from mlsys_labs.kernels.plumbing.gpu_ceilings import bench_ms, measured_ceilings

pytestmark = pytest.mark.gpu
B, H, N, D = 4, 32, 4096, 128


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_flash_attention_vs_sdpa(benchmark, causal):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16)

    def sdpa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def ours():
        return K.flash_attention(q, k, v, causal)

    flops_fwd = 4 * B * H * N * N * D * (0.5 if causal else 1.0)
    flops_bwd = 2.5 * flops_fwd
    with torch.no_grad():
        fwd_ours = bench_ms(ours)
        fwd_sdpa = bench_ms(sdpa)
    o_ours, o_sdpa = ours(), sdpa()
    bwd_ours = bench_ms(lambda: o_ours.backward(do, retain_graph=True), grad_to_none=[q, k, v])
    bwd_sdpa = bench_ms(lambda: o_sdpa.backward(do, retain_graph=True), grad_to_none=[q, k, v])
    peak = measured_ceilings()["bf16_matmul_flops"]
    tf = lambda flops, ms: flops / ms / 1e9  # noqa: E731  TFLOP/s
    detail = {"B": B, "H": H, "N": N, "d": D, "causal": causal,
              "fwd_ours_TFLOPs": tf(flops_fwd, fwd_ours), "fwd_sdpa_TFLOPs": tf(flops_fwd, fwd_sdpa),
              "bwd_ours_TFLOPs": tf(flops_bwd, bwd_ours), "bwd_sdpa_TFLOPs": tf(flops_bwd, bwd_sdpa),
              "bf16_matmul_TFLOPs": peak / 1e12}
    benchmark.extra_info.update(detail)

    def step():
        ours()
        torch.cuda.synchronize()
    benchmark.pedantic(step, rounds=3, iterations=1)
    tag = "causal" if causal else "full"
    record_figure(lab=4, name=f"FlashAttention fwd {tag} bf16 B4 H32 N4096 d128: TFLOP/s / SDPA-flash",
                  value=fwd_sdpa / fwd_ours, unit="x", target=">= 1.0", peer="SDPA (flash backend)", detail=detail)
    record_figure(lab=4, name=f"FlashAttention bwd {tag} bf16 B4 H32 N4096 d128: TFLOP/s / SDPA-flash",
                  value=bwd_sdpa / bwd_ours, unit="x", target=">= 0.7", peer="SDPA (flash backend)", detail=detail)
    record_figure(lab=4, name=f"FlashAttention fwd {tag}: fraction of bf16 matmul ceiling",
                  value=tf(flops_fwd, fwd_ours) * 1e12 / peak, unit="", peer="cuBLAS bf16 matmul", detail=detail)
