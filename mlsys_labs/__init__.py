"""mlsys-labs: hands-on labs for an ML-systems learning plan.

One subpackage per lab topic (``nn``, ``matmul``, ``collectives``, ``kernels``,
``serving``, ``zero``, ``federated``) and the shared infrastructure every lab uses:
``common`` (devices, seeds, tolerances, timing, ceilings, plots) and ``grading``
(starter copies, the grader, the pytest plugin).  ``catalog`` lists the labs.
"""
from .common.jit_cache import configure_numba_cache

__version__ = "0.1.0"

# before any lab imports numba: compiled code is cached per version of the sources
configure_numba_cache()
