"""Lab 1, systems half: the memory mountain of CS:APP §6.6.1 in numba.

- ``mountain``  the strided-read kernel, its timing, and the (working set × stride) grid
- ``plot``      the mountain as a heat map and as a 3-D surface
"""
from .mountain import Mountain, default_sizes, measure_read_throughput, memory_mountain, read_with_stride

__all__ = ["Mountain", "default_sizes", "measure_read_throughput", "memory_mountain", "read_with_stride"]
