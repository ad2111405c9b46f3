"""Lab 3 — MPI collectives from point-to-point messages, with an α-β-γ cost model.

Every collective takes an mpi4py communicator and numpy buffers, and uses only
Send/Recv/Sendrecv between ranks (plus one tiny MPI allgather to check that all ranks
made the same call, see ``validate.py``)::

    from mpi4py import MPI
    from mlsys_labs.collectives import allreduce
    total = allreduce(MPI.COMM_WORLD, np.arange(10.0), op="sum", algorithm="ring")

Run under ``mpiexec -n 4 python script.py`` (``launch.py`` finds mpiexec).

| module | what |
|---|---|
| ``barrier``        | dissemination barrier |
| ``bcast``          | binomial tree; scatter + ring allgather |
| ``reduce``         | binomial tree |
| ``allreduce``      | recursive doubling; ring; Rabenseifner; ``"auto"`` by the cost model |
| ``reduce_scatter`` | ring; recursive halving |
| ``allgather``      | ring; recursive doubling; Bruck |
| ``alltoall``       | pairwise exchange |
| ``fold``           | non-powers of two folded in and out as MPICH does |
| ``validate``       | the cross-rank argument check (a clear error, not a deadlock) |
| ``costmodel``      | α-β-γ formulas, calibration, the ``auto`` choice |
| ``osu``            | the OSU-style measurement loop (``python -m mlsys_labs.collectives.osu``) |
| ``sgd``            | data-parallel SGD on lab 1's MLP, gradients averaged by our allreduce |
| ``launch``         | finding and running ``mpiexec`` |
| ``plots``, ``demo``| the sweep's plots; ``mlsys-labs run 3`` |
"""
from .allgather import allgather
from .allreduce import allreduce
from .alltoall import alltoall
from .barrier import barrier
from .bcast import bcast
from .costmodel import CostParams, calibrate, choose_allreduce, predict, terms
from .ops import DTYPES, OPS, block_counts
from .reduce import reduce
from .reduce_scatter import reduce_scatter
from .validate import CollectiveArgumentError

# algorithm names per collective (what ``algorithm=`` accepts)
ALGORITHMS = {
    "barrier": ("dissemination",),
    "bcast": ("binomial", "scatter_allgather"),
    "reduce": ("binomial",),
    "allreduce": ("recursive_doubling", "ring", "rabenseifner"),
    "reduce_scatter": ("ring", "recursive_halving"),
    "allgather": ("ring", "recursive_doubling", "bruck"),
    "alltoall": ("pairwise",),
}

__all__ = [
    "ALGORITHMS", "DTYPES", "OPS", "CollectiveArgumentError", "CostParams", "allgather", "allreduce",
    "alltoall", "barrier", "bcast", "block_counts", "calibrate", "choose_allreduce", "predict",
    "reduce", "reduce_scatter", "terms",
]
