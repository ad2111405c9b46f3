"""Lab 1, systems half: the memory mountain of CS:APP §6.6.1 in numba.

The lesson, file by file (what it teaches → where to read about it):

- ``mountain.py``  ``read_with_stride``, the strided-read kernel with four accumulators
                   (CS:APP Fig. 6.40); ``measure_read_throughput``, the timing method
                   (warm-up pass, passes repeated inside the compiled function, best of
                   several — CS:APP §6.6.1); ``memory_mountain``, the (working set ×
                   stride) grid and its table → CS:APP §6.4–6.6 (caches, locality)

Not the lesson: ``plumbing/plot.py`` (the mountain as a heat map and a 3-D surface).
"""
from .mountain import (KiB, MiB, Mountain, default_sizes, format_size, measure_read_throughput, memory_mountain,
                       read_with_stride)

__all__ = ["Mountain", "default_sizes", "format_size", "measure_read_throughput", "memory_mountain",
           "read_with_stride", "KiB", "MiB"]
