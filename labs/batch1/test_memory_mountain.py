"""The memory mountain (CS:APP §6.6.1): the kernel reads what it should, the API returns
the whole grid, and the mountain has its shape — reading a small working set with
stride 1 is several times faster than reading a large one with stride 16.

The shape is a property of the machine's cache hierarchy, not a wall-clock assertion:
the two corners differ by 10–100× on any cached CPU, and every cell is a best-of-K.
The test grid stops at 64 MiB (the demo and the benchmark measure CS:APP's 256 MiB).
"""
from __future__ import annotations

import numpy as np
import pytest

from mlsys_labs.memory import default_sizes, memory_mountain, read_with_stride
from mlsys_labs.memory.mountain import KiB, MiB


@pytest.mark.points(1)
def test_kernel_sums_every_stride_th_element(rng):
    data = rng.integers(-1000, 1000, 5000).astype(np.int64)
    for _ in range(20):
        elems, stride, passes = int(rng.integers(1, 5000)), int(rng.integers(1, 17)), int(rng.integers(1, 4))
        expected = int(data[:elems:stride].sum()) * passes
        assert read_with_stride(data, elems, stride, passes) == expected, (elems, stride, passes)


@pytest.mark.points(2)
@pytest.mark.slow
def test_mountain_grid_and_shape():
    sizes = default_sizes(16 * KiB, 64 * MiB)[::2]        # 16K, 64K, …, 64M
    strides = list(range(1, 17))
    mountain = memory_mountain(sizes, strides, repeats=3)
    assert mountain.sizes == sizes and mountain.strides == strides
    assert mountain.throughput.shape == (len(sizes), len(strides))
    assert np.all(np.isfinite(mountain.throughput)) and np.all(mountain.throughput > 0)
    top, bottom = mountain.at(sizes[0], 1), mountain.at(sizes[-1], 16)
    if top < 3 * bottom:   # a noisy neighbour hit one corner: measure both again, best of more
        again = memory_mountain([sizes[0], sizes[-1]], [1, 16], repeats=7)
        top, bottom = max(top, again.at(sizes[0], 1)), max(bottom, again.at(sizes[-1], 16))
    assert top >= 3 * bottom, (
        f"(16 KiB, stride 1) reads {top / 1e9:.2f} GB/s, (64 MiB, stride 16) {bottom / 1e9:.2f} GB/s: "
        f"expected at least 3x; table:\n{mountain.table()}")
