"""Plumbing around lab 6's engines — not the lesson.

- :mod:`launch` — ``torchrun`` from Python: a free port, a timeout, every rank stopped (the tests,
  the benchmark and the demo launch through it).
- :mod:`peers` — ours against PyTorch's own sharding (``ZeroRedundancyOptimizer``, FSDP2) in the same
  processes, plus memory and bytes sent against the ZeRO formulas (``benchmarks/test_lab6_zero.py``).
- :mod:`demo` — ``mlsys-labs run 6``: learning curves of every stage, the memory plot and the formula table.
"""
from .launch import torchrun, torchrun_command

__all__ = ["torchrun", "torchrun_command"]
