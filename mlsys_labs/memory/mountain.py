"""The memory mountain (Bryant & O'Hallaron, CS:APP 3rd ed., §6.6.1, Fig. 6.40–6.41).

Read throughput — bytes actually read per second — of a loop that sums every s-th
element of the first w bytes of an int64 array, for working sets w (16 KiB … 256 MiB)
and strides s (1 … 16).  Small w fit in L1/L2 (the ridges of temporal locality); as s
grows each access wastes more of every 64-byte cache line (the slopes of spatial
locality); once w exceeds the last-level cache the reads come from DRAM.

Method, as CS:APP's ``run``: one untimed pass warms the caches, then the timed call
repeats the pass enough times *inside the compiled function* that Python's call
overhead vanishes, and the best of ``repeats`` timings is kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

KiB, MiB = 1024, 1024 * 1024
ELEMENT = 8  # bytes of one int64


@numba.njit(cache=True, nogil=True)
def read_with_stride(data: np.ndarray, elems: int, stride: int, passes: int) -> int:
    """Sum data[0], data[s], data[2s], … below index ``elems``, ``passes`` times, with four
    independent accumulators (CS:APP Fig. 6.40's 4×4 unrolling) so that the loads, not
    the additions, limit the speed.  Returns the sum (so the loop cannot be removed)."""
    # BEGIN SOLUTION [step 10] hint: for each pass, step i by 4·stride adding data[i], data[i+s], data[i+2s], data[i+3s]; finish the tail
    total = 0
    s2, s3, s4 = 2 * stride, 3 * stride, 4 * stride
    limit = elems - s3
    for _ in range(passes):
        acc0 = acc1 = acc2 = acc3 = 0
        i = 0
        while i < limit:
            acc0 += data[i]
            acc1 += data[i + stride]
            acc2 += data[i + s2]
            acc3 += data[i + s3]
            i += s4
        while i < elems:
            acc0 += data[i]
            i += stride
        total += acc0 + acc1 + acc2 + acc3
    return total
    # END SOLUTION


def measure_read_throughput(data: np.ndarray, size_bytes: int, stride: int, repeats: int = 3,
                            min_bytes: int = 4 * MiB) -> float:
    """Best-of-``repeats`` read throughput in bytes/s for a working set of ``size_bytes``
    (the first ``size_bytes // 8`` elements of ``data``; ValueError if ``data`` is shorter)
    at ``stride``.

    The contract: one untimed call of :func:`read_with_stride` warms the caches; then
    ``repeats`` calls, each timed alone with ``time.perf_counter()`` and each reading the
    working set ``passes`` times — enough passes that one call reads at least
    ``min_bytes``.  A pass reads ⌈elems / stride⌉ elements of 8 bytes; the result is the
    bytes one timed call reads divided by the fastest call's time."""
    # BEGIN SOLUTION [step 10] hint: the contract of the docstring: warm-up call, passes from min_bytes, best of repeats timed calls
    elems = size_bytes // ELEMENT
    if elems > len(data):
        raise ValueError(f"working set of {size_bytes} bytes exceeds the array ({data.nbytes} bytes)")
    per_pass = -(-elems // stride) * ELEMENT
    passes = max(1, -(-min_bytes // per_pass))
    read_with_stride(data, elems, stride, 1)  # warm the caches (and compile)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        read_with_stride(data, elems, stride, passes)
        best = min(best, time.perf_counter() - t0)
    return per_pass * passes / best
    # END SOLUTION


def default_sizes(smallest: int = 16 * KiB, largest: int = 256 * MiB) -> list[int]:
    """Working sets in bytes: powers of two from ``smallest`` to ``largest``."""
    sizes, w = [], smallest
    while w <= largest:
        sizes.append(w)
        w *= 2
    return sizes


@dataclass
class Mountain:
    """Read throughput (bytes/s) on a grid: ``throughput[i, j]`` at ``sizes[i]`` bytes and
    ``strides[j]`` elements."""

    sizes: list[int]
    strides: list[int]
    throughput: np.ndarray

    def at(self, size: int, stride: int) -> float:
        return float(self.throughput[self.sizes.index(size), self.strides.index(stride)])

    @property
    def peak(self) -> float:
        return float(self.throughput.max())

    def table(self) -> str:
        """CS:APP Fig. 6.41 as Markdown: MB/s, one row per working set, one column per stride."""
        head = "| size | " + " | ".join(f"s{s}" for s in self.strides) + " |"
        rule = "|---" * (len(self.strides) + 1) + "|"
        rows = [f"| {format_size(w)} | " + " | ".join(f"{v / 1e6:.0f}" for v in row) + " |"
                for w, row in zip(self.sizes, self.throughput)]
        return "\n".join(["Read throughput (MB/s)", "", head, rule, *rows])


def format_size(nbytes: int) -> str:
    if nbytes >= MiB:
        return f"{nbytes // MiB}M"
    return f"{nbytes // KiB}K"


def memory_mountain(sizes: list[int] | None = None, strides=range(1, 17), repeats: int = 3,
                    min_bytes: int = 4 * MiB, progress: bool = False) -> Mountain:
    """Measure the whole grid (default CS:APP's: 16 KiB … 256 MiB × stride 1 … 16).

    Each cell keeps the best of ``repeats`` timings, taken in ``repeats`` separate sweeps
    over the grid rather than back to back, so that a burst of noise from a neighbour on
    a shared machine lands on different cells each time instead of spoiling one cell's
    every run."""
    sizes = list(sizes) if sizes is not None else default_sizes()
    strides = list(strides)
    data = np.arange(max(sizes) // ELEMENT, dtype=np.int64)  # touched: pages are mapped
    grid = np.zeros((len(sizes), len(strides)))
    cells = [(i, j) for _ in range(repeats) for i in range(len(sizes)) for j in range(len(strides))]
    if progress:
        from tqdm import tqdm

        cells = tqdm(cells, desc="memory mountain", unit="cell")
    for i, j in cells:
        grid[i, j] = max(grid[i, j], measure_read_throughput(data, sizes[i], strides[j], 1, min_bytes))
    return Mountain(sizes, strides, grid)
