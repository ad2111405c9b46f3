"""The α-β-γ cost model (Hockney 1994; Thakur, Rabenseifner & Gropp 2005, §2; Chan et al.
2007): a message of n bytes costs α + n·β, reducing n bytes costs n·γ.

Every algorithm is summarised by three numbers — latencies on its critical path, bytes
sent on it, bytes reduced on it — and predicts ``latencies·α + bytes·β + reduced·γ``.
For p a power of two these are the textbook formulas (the README's cost table); a non-power of
two adds its fold (fold.py): 2 latencies, and the vector sent out and back.

Calibration measures the three constants on the machine at hand: α and β from a
ping-pong between ranks 0 and 1 (one-way time = α + n·β), γ from timing a local
reduction (``np.add`` into a buffer).  α here includes Python's per-call overhead, which
is what our point-to-point collectives pay per message.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .ops import ceil_log2, pof2_below


@dataclass(frozen=True)
class CostParams:
    """α seconds per message, β seconds per byte sent, γ seconds per byte reduced."""

    alpha: float
    beta: float
    gamma: float

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
    """Predicted seconds of one call: latencies·α + bytes·β + reduced·γ."""
    params = params or DEFAULT_PARAMS
    lat, sent, reduced = terms(collective, algorithm, nbytes, p)
    return lat * params.alpha + sent * params.beta + reduced * params.gamma


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


def pingpong(comm, nbytes: int, iterations: int, warmup: int = 2) -> float | None:
    """One-way seconds for ``nbytes`` between ranks 0 and 1 (median of round trips / 2);
    None on other ranks.  Ranks other than 0 and 1 only wait."""
    rank = comm.Get_rank()
    buf = np.zeros(nbytes, np.uint8)
    times = []
    for i in range(warmup + iterations):
        if rank == 0:
            t0 = time.perf_counter()
            comm.Send(buf, dest=1, tag=77)
            comm.Recv(buf, source=1, tag=77)
            if i >= warmup:
                times.append((time.perf_counter() - t0) / 2)
        elif rank == 1:
            comm.Recv(buf, source=0, tag=77)
            comm.Send(buf, dest=0, tag=77)
    return float(np.median(times)) if rank == 0 else None


def measure_gamma(nbytes: int = 32 * 2**20, repeats: int = 5) -> float:
    """Seconds per byte of ``np.add(acc, incoming, out=acc)`` on float64 (best of repeats),
    on vectors larger than the caches: the long messages the γ term matters for."""
    acc = np.ones(nbytes // 8)
    incoming = np.ones_like(acc)
    np.add(acc, incoming, out=acc)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.add(acc, incoming, out=acc)
        best = min(best, time.perf_counter() - t0)
    return best / acc.nbytes


def calibrate(comm, sizes=(8, 1024, 16 * 1024, 256 * 1024, 2**20, 4 * 2**20, 16 * 2**20),
              iterations: int = 20) -> CostParams:
    """α, β by ping-pong (ranks 0 and 1), γ by a local reduction on rank 0; the same
    CostParams returned on every rank (broadcast from rank 0).  Needs p ≥ 2."""
    if comm.Get_size() < 2:
        raise ValueError("calibration needs at least 2 ranks for the ping-pong")
    seconds = []
    for n in sizes:
        comm.Barrier()
        seconds.append(pingpong(comm, n, iterations=iterations if n <= 2**20 else max(3, iterations // 4)))
    params = None
    if comm.Get_rank() == 0:
        alpha, beta = fit_alpha_beta(sizes, seconds)
        params = CostParams(alpha=alpha, beta=beta, gamma=measure_gamma())
    return comm.bcast(params, root=0)
