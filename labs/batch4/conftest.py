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


class Fenced:
    """An output buffer with canaries: the valid region poisoned (NaN, or the integer minimum),
    ``pad`` elements before and after it filled with a sentinel the kernels never produce.

    ``out`` is a contiguous view a launcher accepts; ``check()`` fails when any canary changed —
    a store outside the mask — which otherwise goes unnoticed (or crashes the process, or
    corrupts some other tensor) instead of failing a test.
    """

    def __init__(self, shape, dtype, device, pad=16384):
        import math
        n = math.prod(shape)
        if dtype.is_floating_point:
            poison, self.sentinel = float("nan"), -4096.0   # exact in fp16, bf16, fp32
        else:
            poison, self.sentinel = torch.iinfo(dtype).min, 0x5A5A5A5A
        self.buf = torch.full((n + 2 * pad,), self.sentinel, dtype=dtype, device=device)
        self.buf[pad:pad + n] = poison
        self.pad, self.n = pad, n
        self.out = self.buf[pad:pad + n].view(shape)

    def check(self, what="output"):
        for side, tail in (("before", self.buf[: self.pad]), ("after", self.buf[self.pad + self.n:])):
            bad = (tail != self.sentinel).nonzero().flatten()
            if bad.numel():
                first = int(bad[0]) - self.pad if side == "before" else int(bad[0])
                raise AssertionError(f"{what}: {bad.numel()} canary elements {side} the output were overwritten "
                                     f"(first at offset {first} {'from its start' if side == 'before' else 'past its end'}): "
                                     "a store outside the mask")


@pytest.fixture(scope="session")
def fenced(device):
    """fenced(shape, dtype) -> Fenced: a poisoned output buffer with canaries on both sides."""
    def make(shape, dtype=torch.float32, pad=16384):
        return Fenced(tuple(shape), dtype, device, pad)
    return make
