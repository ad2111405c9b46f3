"""Lab 3 — MPI collectives from point-to-point messages, with an α-β-γ cost model.

Every collective takes an mpi4py communicator and numpy buffers, and uses only
Send/Recv/Sendrecv between ranks (plus one tiny MPI allgather to check that all ranks
made the same call, see ``plumbing/validate.py``)::

    from mpi4py import MPI
    from mlsys_labs.collectives import allreduce
    total = allreduce(MPI.COMM_WORLD, np.arange(10.0), op="sum", algorithm="ring")

Run under ``mpiexec -n 4 python script.py`` (``plumbing/launch.py`` finds mpiexec).

The lesson — one file per idea (Thakur, Rabenseifner & Gropp 2005 for every algorithm):

| file | what it teaches | reading |
|---|---|---|
| ``barrier.py``        | dissemination barrier: synchronisation is communication | Hensgen, Finkel & Manber 1988 |
| ``bcast.py``          | binomial tree; scatter + ring allgather for long messages | Thakur et al. §4.1; Chan et al. 2007 |
| ``reduce.py``         | binomial tree, the broadcast backwards | Thakur et al. §4.3 |
| ``allreduce.py``      | recursive doubling; ring; Rabenseifner; ``"auto"`` by the cost model | Thakur et al. §4.4; Patarasuk & Yuan 2009; Rabenseifner 2004 |
| ``reduce_scatter.py`` | ring; recursive halving | Thakur et al. §4.5 |
| ``allgather.py``      | ring; recursive doubling; Bruck | Thakur et al. §4.2; Bruck et al. 1997 |
| ``alltoall.py``       | pairwise exchange | Thakur et al. §4.6 |
| ``fold.py``           | non-powers of two folded in and out as MPICH does | Thakur et al. §4.4 |
| ``costmodel.py``      | α-β-γ terms of every algorithm, the line fit, the ``auto`` choice | Hockney 1994; Thakur et al. §2 |
| ``sgd.py``            | data-parallel SGD on lab 1's MLP, gradients averaged by our allreduce | Li et al. 2020 (PyTorch DDP) |
| ``ops.py``            | what they share: reduction ops, dtypes, blocks, tags | — |

The plumbing — argument checking, measurement, launching, plots — is in ``plumbing/``
(its ``__init__`` lists each file).
"""
from .allgather import ALGORITHMS as _ALLGATHER
from .allgather import allgather
from .allreduce import ALGORITHMS as _ALLREDUCE
from .allreduce import allreduce
from .alltoall import ALGORITHMS as _ALLTOALL
from .alltoall import alltoall
from .barrier import ALGORITHMS as _BARRIER
from .barrier import barrier
from .bcast import ALGORITHMS as _BCAST
from .bcast import bcast
from .costmodel import CostParams, choose_allreduce, fit_alpha_beta, predict, terms
from .ops import DTYPES, OPS, block_counts
from .plumbing.calibrate import calibrate
from .plumbing.validate import CollectiveArgumentError
from .reduce import ALGORITHMS as _REDUCE
from .reduce import reduce
from .reduce_scatter import ALGORITHMS as _REDUCE_SCATTER
from .reduce_scatter import reduce_scatter

# algorithm names per collective (what ``algorithm=`` accepts), from each module's own tuple
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "barrier": _BARRIER,
    "bcast": _BCAST,
    "reduce": _REDUCE,
    "allreduce": _ALLREDUCE,
    "reduce_scatter": _REDUCE_SCATTER,
    "allgather": _ALLGATHER,
    "alltoall": _ALLTOALL,
}

__all__ = [
    "ALGORITHMS", "DTYPES", "OPS", "CollectiveArgumentError", "CostParams", "allgather", "allreduce",
    "alltoall", "barrier", "bcast", "block_counts", "calibrate", "choose_allreduce", "fit_alpha_beta",
    "predict", "reduce", "reduce_scatter", "terms",
]
