"""The α-β-γ cost model (Hockney 1994; Thakur, Rabenseifner & Gropp 2005, §2; Chan et al.
2007): a message of n bytes costs α + n·β, reducing n bytes costs n·γ.

Every algorithm is summarised by three numbers — latencies on its critical path, bytes
sent on it, bytes reduced on it — and predicts ``latencies·α + bytes·β + reduced·γ``.
For p a power of two these are the textbook formulas (the README's cost table); a non-power of
two adds its fold (fold.py): 2 latencies, and the vector sent out and back.

An MPI library moves a message by one of two protocols (Thakur et al. §2; MPICH's
``MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD``): *eager* below a threshold (copied through a
shared-memory cell, no handshake) and *rendezvous* from it on (a handshake, then one copy
straight between the two processes' buffers) — two lines with their own α and β.
:class:`CostParams` holds both; :func:`predict` charges each algorithm the line of its
messages' size (bytes sent / latencies: exact when every message has the same size, as
at p = 2).  Measuring the constants is plumbing (``plumbing/calibrate.py``); fitting a
line through the measurements is :func:`fit_alpha_beta`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .ops import ceil_log2, pof2_below


@dataclass(frozen=True)
class CostParams:
    """α seconds per message, β seconds per byte sent, γ seconds per byte reduced.

    With ``rendezvous_from`` set, a message of at least that many bytes costs
    ``alpha_rndv + n·beta_rndv`` instead (MPICH's rendezvous protocol); without it, one
    line for every size.
    """

    alpha: float
    beta: float
    gamma: float
    alpha_rndv: float = 0.0
    beta_rndv: float = 0.0
    rendezvous_from: int | None = None

    def link(self, message_bytes: float) -> tuple[float, float]:
        """(α, β) of the protocol a message of this many bytes travels by."""
        if self.rendezvous_from is not None and message_bytes >= self.rendezvous_from:
            return self.alpha_rndv, self.beta_rndv
        return self.alpha, self.beta

    def as_dict(self) -> dict:
        return asdict(self)


# Order-of-magnitude values for mpi4py over shared memory on one machine (Python's
# per-call overhead dominates α).  Calibrate for real numbers; every rank must use the same.
DEFAULT_PARAMS = CostParams(alpha=1e-5, beta=2e-10, gamma=3e-10)

ALLREDUCE_ALGORITHMS = ("recursive_doubling", "rabenseifner", "ring")


def terms(collective: str, algorithm: str, nbytes: float, p: int) -> tuple[float, float, float]:
    """(latencies, bytes sent, bytes reduced) on the critical path of one call.

    ``nbytes`` is each rank's vector for reductions and broadcasts, the gathered total for
    allgather, and each rank's whole send buffer for alltoall.  An unknown
    (collective, algorithm) raises KeyError.
    """
    # BEGIN SOLUTION [step 6] hint: the cost table in labs/batch3/README.md: ⌈lg p⌉ for the barrier, the binomial trees and Bruck; lg p' (p' = the largest power of two <= p) for the folding algorithms, plus 2 latencies, 2n bytes sent and n reduced for an allreduce's fold when p is not a power of two (reduce-scatter/allgather: n + n/p bytes, n reduced for reduce-scatter); p = 1 costs nothing
    n = float(nbytes)
    if p == 1:
        return (0.0, 0.0, 0.0)
    lg_ceil = ceil_log2(p)
    p2 = pof2_below(p)
    lg = p2.bit_length() - 1
    fold = 0 if p2 == p else 1
    share = (p - 1) / p            # fraction of the vector a rank does not own
    share2 = (p2 - 1) / p2
    key = (collective, algorithm)
    if key == ("barrier", "dissemination"):
        return (lg_ceil, 0.0, 0.0)
    if key == ("bcast", "binomial"):
        return (lg_ceil, n * lg_ceil, 0.0)
    if key == ("bcast", "scatter_allgather"):
        return (lg_ceil + p - 1, 2 * n * share, 0.0)
    if key == ("reduce", "binomial"):
        return (lg_ceil, n * lg_ceil, n * lg_ceil)
    if key == ("allreduce", "recursive_doubling"):
        return (lg + 2 * fold, n * lg + 2 * n * fold, n * lg + n * fold)
    if key == ("allreduce", "rabenseifner"):
        return (2 * lg + 2 * fold, 2 * n * share2 + 2 * n * fold, n * share2 + n * fold)
    if key == ("allreduce", "ring"):
        return (2 * (p - 1), 2 * n * share, n * share)
    if key == ("reduce_scatter", "ring"):
        return (p - 1, n * share, n * share)
    if key == ("reduce_scatter", "recursive_halving"):
        return (lg + 2 * fold, n * share2 + (n + n / p) * fold, n * share2 + n * fold)
    if key == ("allgather", "ring"):
        return (p - 1, n * share, 0.0)
    if key == ("allgather", "recursive_doubling"):
        return (lg + 2 * fold, n * share2 + (n + n / p) * fold, 0.0)
    if key == ("allgather", "bruck"):
        return (lg_ceil, n * share, 0.0)
    if key == ("alltoall", "pairwise"):
        return (p - 1, n * share, 0.0)
    raise KeyError(f"no cost formula for {collective} / {algorithm}")
    # END SOLUTION


def predict(collective: str, algorithm: str, nbytes: float, p: int,
            params: CostParams | None = None) -> float:
    """Predicted seconds of one call: latencies·α + bytes·β + reduced·γ, with the (α, β)
    of the protocol its messages use (their mean size: bytes sent / latencies)."""
    params = params or DEFAULT_PARAMS
    lat, sent, reduced = terms(collective, algorithm, nbytes, p)
    alpha, beta = params.link(sent / lat if lat else 0.0)
    return lat * alpha + sent * beta + reduced * params.gamma


def choose_allreduce(nbytes: float, p: int, params: CostParams | None = None) -> str:
    """The allreduce algorithm with the smallest prediction (ties: the earlier in
    ``ALLREDUCE_ALGORITHMS``)."""
    # BEGIN SOLUTION [step 6] hint: min over ALLREDUCE_ALGORITHMS of predict("allreduce", a, nbytes, p, params)
    return min(ALLREDUCE_ALGORITHMS, key=lambda a: predict("allreduce", a, nbytes, p, params))
    # END SOLUTION


def fit_alpha_beta(sizes, seconds) -> tuple[float, float]:
    """Least-squares line t = α + n·β through (bytes, one-way seconds), relative errors
    weighted equally — minimise Σ ((α + n·β − t)/t)² — so the small sizes pin α and the
    large ones β.  Returns (α, β) as floats; a negative fitted value is reported as 0."""
    # BEGIN SOLUTION [step 6] hint: divide each row of [1, n] and t by t, then np.linalg.lstsq; clip negatives to 0
    n = np.asarray(sizes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    a = np.stack([1.0 / t, n / t], axis=1)  # minimise Σ ((α + nβ − t)/t)²
    (alpha, beta), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    return float(max(alpha, 0.0)), float(max(beta, 0.0))
    # END SOLUTION
