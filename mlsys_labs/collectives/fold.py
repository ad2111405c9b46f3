"""Non-powers of two, folded in and out as MPICH does (Thakur, Rabenseifner & Gropp 2005, §4).

Recursive doubling and halving pair rank r with r XOR 2^k, which needs a power of two.
With p ranks, let p' = 2^⌊lg p⌋ and rem = p − p'.  Before the power-of-two algorithm:

    ranks 0 .. 2·rem−1 pair up (0,1), (2,3), ...: the even rank sends its vector to the
    odd one (which combines it) and sits out;  the other ranks keep going.

The p' ranks left get *new ranks* 0 .. p'−1: odd rank 2i+1 (i < rem) is new rank i, rank
r ≥ 2·rem is new rank r − rem.  Afterwards the odd rank sends the result back to its even
partner.  Cost on top of the power-of-two algorithm: 2α + 2nβ (+ nγ when folding a
reduction).

For reduce-scatter and allgather the fold keeps each rank's *block* in place: new rank i
owns the original blocks of ranks 2i and 2i+1 (i < rem), or that of rank i + rem — each
new rank owns a contiguous run of original blocks (:func:`new_rank_blocks`).
"""
from __future__ import annotations

import numpy as np

from .ops import TAGS, pof2_below, reduce_into, scratch


def new_rank(rank: int, p: int) -> int:
    """This rank's rank among the p' = 2^⌊lg p⌋ ranks that stay in, or −1 if it sits out."""
    rem = p - pof2_below(p)
    if rank < 2 * rem:
        return -1 if rank % 2 == 0 else rank // 2
    return rank - rem


def real_rank(newrank: int, p: int) -> int:
    """The communicator rank of new rank ``newrank`` (inverse of :func:`new_rank`)."""
    rem = p - pof2_below(p)
    return 2 * newrank + 1 if newrank < rem else newrank + rem


def new_rank_blocks(newrank: int, p: int) -> tuple[int, int]:
    """The original blocks [first, last) that new rank ``newrank`` owns after the fold."""
    rem = p - pof2_below(p)
    if newrank < rem:
        return 2 * newrank, 2 * newrank + 2
    return newrank + rem, newrank + rem + 1


def fold_in(comm, acc: np.ndarray, op: str) -> int:
    """Fold the extra ranks' vectors into their odd partners; return this rank's new rank.

    ``acc`` (flat) is this rank's vector; on an odd partner it becomes the combination of
    both.  Returns −1 on a rank that now sits out.
    """
    # BEGIN SOLUTION [step 3] hint: ranks below 2·rem pair up: the even one sends acc to rank+1, which receives into a temporary and reduce_into()s it; return new_rank()
    rank, p = comm.Get_rank(), comm.Get_size()
    rem = p - pof2_below(p)
    if rank < 2 * rem:
        if rank % 2 == 0:
            comm.Send(acc, dest=rank + 1, tag=TAGS["fold"])
        else:
            incoming = scratch(acc.size, acc.dtype)
            comm.Recv(incoming, source=rank - 1, tag=TAGS["fold"])
            reduce_into(op, acc, incoming)
    return new_rank(rank, p)
    # END SOLUTION


def fold_out(comm, result: np.ndarray) -> None:
    """Hand the result back to the ranks that sat out (the odd partner sends to rank − 1)."""
    # BEGIN SOLUTION [step 3] hint: the mirror of fold_in: odd ranks below 2·rem send result to rank−1, which receives it
    rank, p = comm.Get_rank(), comm.Get_size()
    rem = p - pof2_below(p)
    if rank < 2 * rem:
        if rank % 2 == 1:
            comm.Send(result, dest=rank - 1, tag=TAGS["fold"])
        else:
            comm.Recv(result, source=rank + 1, tag=TAGS["fold"])
    # END SOLUTION
