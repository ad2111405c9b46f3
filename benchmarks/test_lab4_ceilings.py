"""Lab 4: the card's ceilings (copy bandwidth, bf16 cuBLAS matmul), recorded beside the kernels' figures."""
import pytest

import mlsys_labs.kernels  # noqa: F401  (configures Triton before it is imported)
from mlsys_labs.common.bench import record_figure
from mlsys_labs.kernels.plumbing.gpu_ceilings import measured_ceilings

pytestmark = pytest.mark.gpu


def test_ceilings(benchmark):
    import torch

    c = benchmark.pedantic(measured_ceilings, rounds=1, iterations=1)
    record_figure(lab=4, name="ceiling: device-to-device copy", value=c["copy_bytes_per_s"] / 1e9, unit="GB/s",
                  peer="torch copy_", detail=c)
    record_figure(lab=4, name="ceiling: bf16 torch.matmul 8192^3", value=c["bf16_matmul_flops"] / 1e12,
                  unit="TFLOP/s", peer="cuBLAS", detail=c)
    assert torch.cuda.is_available()
