"""Lab 4: fused softmax (and online softmax, RMSNorm, RoPE) against torch, in GB/s and as a
fraction of the card's copy bandwidth.  CUDA only (skips on a CPU machine)."""
import pytest

import mlsys_labs.kernels as K
from mlsys_labs.common.bench import record_figure
from mlsys_labs.kernels.plumbing.gpu_ceilings import bench_ms, measured_ceilings

pytestmark = pytest.mark.gpu
ROWS = 4096


def _sync(fn):
    import torch

    def run():
        fn()
        torch.cuda.synchronize()
    return run


@pytest.mark.parametrize("n_cols", [2048, 4096, 8192, 16384])
def test_softmax_vs_torch(benchmark, n_cols):
    import torch

    x = torch.randn(ROWS, n_cols, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(x)
    ours_ms = bench_ms(lambda: K.softmax(x, out))
    torch_ms = bench_ms(lambda: torch.softmax(x, dim=-1))
    nbytes = 2 * x.numel() * x.element_size()  # read once, write once
    ours_bw, torch_bw = nbytes / ours_ms / 1e6, nbytes / torch_ms / 1e6
    copy_bw = measured_ceilings()["copy_bytes_per_s"] / 1e9
    detail = {"rows": ROWS, "cols": n_cols, "dtype": "bfloat16", "ours_GBps": ours_bw, "torch_GBps": torch_bw,
              "copy_GBps": copy_bw, "ours_ms": ours_ms, "torch_ms": torch_ms}
    benchmark.extra_info.update(detail)
    benchmark.pedantic(_sync(lambda: K.softmax(x, out)), rounds=5, iterations=1)
    record_figure(lab=4, name=f"softmax {ROWS}x{n_cols} bf16: throughput / torch.softmax", value=ours_bw / torch_bw,
                  unit="x", target=">= 1.0", peer="torch.softmax", detail=detail)
    record_figure(lab=4, name=f"softmax {ROWS}x{n_cols} bf16: fraction of copy bandwidth", value=ours_bw / copy_bw,
                  unit="", target=">= 0.6", peer="device copy", detail=detail)


def test_online_softmax_long_rows(benchmark):
    import torch

    x = torch.randn(256, 131072, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(x)
    ours_ms = bench_ms(lambda: K.online_softmax(x, out, block_size=4096))
    torch_ms = bench_ms(lambda: torch.softmax(x, dim=-1))
    nbytes = 2 * x.numel() * x.element_size()
    detail = {"ours_ms": ours_ms, "torch_ms": torch_ms, "ours_GBps": nbytes / ours_ms / 1e6}
    benchmark.extra_info.update(detail)
    benchmark.pedantic(_sync(lambda: K.online_softmax(x, out, block_size=4096)), rounds=3, iterations=1)
    record_figure(lab=4, name="online softmax 256x131072 bf16: throughput / torch.softmax", value=torch_ms / ours_ms,
                  unit="x", peer="torch.softmax", detail=detail)


def test_rmsnorm_and_rope_bandwidth(benchmark):
    import torch

    copy_bw = measured_ceilings()["copy_bytes_per_s"] / 1e9
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(8192, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(x)
    ours_ms = bench_ms(lambda: K.rmsnorm(x, w, out=out))
    torch_ms = bench_ms(lambda: torch.nn.functional.rms_norm(x, (8192,), w))
    bw = 2 * x.numel() * 2 / ours_ms / 1e6
    record_figure(lab=4, name="RMSNorm 8192x8192 bf16: speed-up over torch rms_norm", value=torch_ms / ours_ms,
                  unit="x", peer="torch.nn.functional.rms_norm", detail={"ours_ms": ours_ms, "torch_ms": torch_ms})
    record_figure(lab=4, name="RMSNorm 8192x8192 bf16: fraction of copy bandwidth", value=bw / copy_bw, unit="",
                  peer="device copy", detail={"ours_GBps": bw})
    q = torch.randn(4, 32, 4096, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn_like(q)
    cos, sin = K.rope_cache(4096, 128, device="cuda")
    oq, ok = torch.empty_like(q), torch.empty_like(k)
    rope_ms = bench_ms(lambda: K.rope(q, k, cos, sin, out_q=oq, out_k=ok, block_n=64))
    rope_bw = 4 * q.numel() * 2 / rope_ms / 1e6
    record_figure(lab=4, name="RoPE q,k 4x32x4096x128 bf16: fraction of copy bandwidth", value=rope_bw / copy_bw,
                  unit="", peer="device copy", detail={"ours_ms": rope_ms, "ours_GBps": rope_bw})
    benchmark.pedantic(_sync(lambda: K.rmsnorm(x, w, out=out)), rounds=3, iterations=1)
