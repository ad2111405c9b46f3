"""Allreduce: recursive doubling; ring; Rabenseifner (Thakur, Rabenseifner & Gropp 2005,
§4.4; Rabenseifner 2004; Patarasuk & Yuan 2009 for the ring).  n bytes per rank.

Recursive doubling (short messages)::

    step k = 0 .. lg p−1:  rank r swaps its whole vector with rank r XOR 2^k; both add
    cost  lg p·α + n·lg p·β + n·lg p·γ

Ring = ring reduce-scatter + ring allgather (long messages, any p)::

    p−1 steps: pass partial blocks around the ring, each rank adding its own, until
               rank r holds the full block r;
    p−1 steps: pass the finished blocks around the ring
    cost  2(p−1)·α + 2n(p−1)/p·β + n(p−1)/p·γ

Rabenseifner = recursive-halving reduce-scatter + recursive-doubling allgather::

    lg p steps halving the vector (each rank keeps and reduces half of what it had),
    lg p steps doubling it back
    cost  2·lg p·α + 2n(p−1)/p·β + n(p−1)/p·γ

Non-powers of two fold the extra ranks in and out (fold.py): +2α + 2nβ + nγ.
``algorithm="auto"`` asks the cost model (costmodel.py) for the fastest prediction.
"""
from __future__ import annotations

import numpy as np

from . import costmodel
from .allgather import allgather_ring_blocks, recursive_doubling_spans
from .fold import fold_in, fold_out, real_rank
from .ops import TAGS, block_counts, block_displs, pof2_below, reduce_into, scratch
from .reduce_scatter import recursive_halving_spans, reduce_scatter_ring
from .plumbing.validate import check_call

ALGORITHMS = costmodel.ALLREDUCE_ALGORITHMS  # one tuple: its order is auto's tie order


def allreduce(comm, sendbuf: np.ndarray, op: str = "sum", algorithm: str = "ring", *,
              out: np.ndarray | None = None, params: costmodel.CostParams | None = None,
              check: bool = True) -> np.ndarray:
    """The elementwise reduction of every rank's ``sendbuf``, on every rank.

    Returned in ``out`` when given (like MPI's recvbuf; ``out=sendbuf`` reduces in place,
    like ``MPI_IN_PLACE``), else in a new array.

    ``algorithm="auto"`` picks the cost model's fastest prediction for this size and
    number of ranks with ``params`` (α, β, γ; the same on every rank — pass calibrated
    ones from :func:`costmodel.calibrate`, which broadcasts them).
    """
    if check:
        bad_out = out is not None and (out.shape != sendbuf.shape or out.dtype != sendbuf.dtype
                                       or not out.flags.c_contiguous)
        check_call(comm, "allreduce", sendbuf, algorithm=algorithm, algorithms=ALGORITHMS + ("auto",), op=op,
                   problems=["out must be C-contiguous, shaped and typed like sendbuf"] if bad_out else None)
    if algorithm == "auto":
        algorithm = costmodel.choose_allreduce(sendbuf.nbytes, comm.Get_size(), params)
    acc = np.empty_like(sendbuf) if out is None else out
    if algorithm == "ring":  # combines straight from sendbuf: no copy first
        allreduce_ring(comm, sendbuf.reshape(-1), acc.reshape(-1), op)
        return acc
    if acc is not sendbuf:
        np.copyto(acc, sendbuf)
    if algorithm == "recursive_doubling":
        allreduce_recursive_doubling(comm, acc.reshape(-1), op)
    else:
        allreduce_rabenseifner(comm, acc.reshape(-1), op)
    return acc


def allreduce_recursive_doubling(comm, acc: np.ndarray, op: str) -> None:
    """In place: fold in, lg p' whole-vector swaps with rank XOR 2^k, fold out."""
    # BEGIN SOLUTION [step 3] hint: newrank = fold_in(...); if newrank >= 0, for mask = 1, 2, ... < p': Sendrecv acc with real_rank(newrank ^ mask) into a temporary and reduce_into(acc); then fold_out(comm, acc)
    p = comm.Get_size()
    pof2 = pof2_below(p)
    newrank = fold_in(comm, acc, op)
    if newrank >= 0:
        incoming = scratch(acc.size, acc.dtype)
        mask = 1
        while mask < pof2:
            partner = real_rank(newrank ^ mask, p)
            comm.Sendrecv(acc, dest=partner, sendtag=TAGS["allreduce"],
                          recvbuf=incoming, source=partner, recvtag=TAGS["allreduce"])
            reduce_into(op, acc, incoming)  # a + b == b + a exactly: both partners agree bit for bit
            mask <<= 1
    fold_out(comm, acc)
    # END SOLUTION


def allreduce_ring(comm, send: np.ndarray, acc: np.ndarray, op: str) -> None:
    """Ring reduce-scatter of ``send`` into ``acc`` (rank r completes block r), then ring
    allgather of the finished blocks.  ``acc`` may be ``send`` (in place)."""
    # BEGIN SOLUTION [step 2] hint: displs from block_counts(acc.size, p); reduce_scatter_ring(comm, acc, displs, op, source=send) then allgather_ring_blocks(comm, acc, displs)
    displs = block_displs(block_counts(acc.size, comm.Get_size()))
    reduce_scatter_ring(comm, acc, displs, op, source=send)
    allgather_ring_blocks(comm, acc, displs)
    # END SOLUTION


def allreduce_rabenseifner(comm, acc: np.ndarray, op: str) -> None:
    """In place: fold in, recursive-halving reduce-scatter over p' blocks, recursive-doubling
    allgather, fold out."""
    # BEGIN SOLUTION [step 4] hint: newrank = fold_in(...); spans = the p' blocks of block_counts(acc.size, p'); recursive_halving_spans then recursive_doubling_spans; fold_out
    pof2 = pof2_below(comm.Get_size())
    newrank = fold_in(comm, acc, op)
    if newrank >= 0:
        displs = block_displs(block_counts(acc.size, pof2))
        spans = [(displs[j], displs[j + 1]) for j in range(pof2)]
        recursive_halving_spans(comm, acc, newrank, pof2, spans, op)
        recursive_doubling_spans(comm, acc, newrank, pof2, spans)
    fold_out(comm, acc)
    # END SOLUTION
