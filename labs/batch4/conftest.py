"""Lab 4 fixtures: the device the kernels run on, and fresh random tensors made there.

Without a GPU the Triton kernels run under the interpreter on CPU tensors (small shapes);
with one, on CUDA tensors.  ``import mlsys_labs.kernels`` switches the interpreter on
before Triton is imported (the pytest plugin already did).
"""
import pytest
import torch

import mlsys_labs.kernels  # noqa: F401  (configures Triton/Numba before they are imported)
from mlsys_labs.common.device import torch_device, triton_interpreted


@pytest.fixture(scope="session")
def device():
    return torch_device()


@pytest.fixture
def gen(seed):
    """A torch Generator seeded from this test's seed (fresh each session, reproducible with --seed)."""
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def randn(gen, device):
    """randn(*shape, dtype=..., scale=...) drawn on the CPU from ``gen`` and moved to ``device``."""
    def make(*shape, dtype=torch.float32, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype).to(device)
    return make


@pytest.fixture
def interpreted():
    return triton_interpreted()
