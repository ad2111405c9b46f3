"""Shared infrastructure used by every lab: one place for each concern.

- ``paths``      where state, reports and benchmark results live (project-local)
- ``device``     CUDA or CPU; Triton's interpreter switched on before Triton loads
- ``rng``        seeded random generators (fresh per run, reproducible by seed)
- ``tolerance``  the per-dtype tolerance policy and ``assert_close`` against float64
- ``bench``      timing (warm-up, median of repeats), ratios, figures, results JSON
- ``ceilings``   measured machine ceilings (peak FLOP/s, memory bandwidth)
- ``plotting``   headless matplotlib
- ``gpu_check``  ``mlsys-labs gpu-check``: GPU tests and benchmarks in one budgeted run
"""
