"""Fixtures shared by the benchmark suites."""
from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """One PyTorch thread for the test (restored after): on a small shared machine OpenMP
    threads oversubscribe the cores and both sides of a comparison slow to a crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
