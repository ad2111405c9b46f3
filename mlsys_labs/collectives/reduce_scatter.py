"""Reduce-scatter: ring; recursive halving (Thakur, Rabenseifner & Gropp 2005, §4.4;
Rabenseifner 2004).  The reduced vector of n elements is cut into p blocks (sizes
differing by at most one, ``ops.block_counts``); rank r keeps block r.

Ring (any p)::

    step s = 0 .. p−2:  rank r sends its partial block (r − s − 1) mod p to r+1,
                        receives partial block (r − s − 2) mod p from r−1 and adds
                        its own contribution; after p−1 steps block r is complete
    cost  (p−1)·α + n(p−1)/p·(β + γ)

Recursive halving (p a power of two)::

    step k = 1 .. lg p (distance p/2, p/4, ..., 1):  rank r and r XOR distance split
      the range of blocks both still reduce: the one whose distance bit is 0 keeps the
      lower half and sends the upper, the other the reverse; both add what they receive
    cost  lg p·α + n(p−1)/p·(β + γ)
    (non-powers of two: fold in/out, see fold.py: +2α + (n + n/p)β + nγ)
"""
from __future__ import annotations

import numpy as np

from .fold import fold_in, new_rank_blocks, real_rank
from .ops import TAGS, block_counts, block_displs, combine, pof2_below, reduce_into, scratch
from .plumbing.validate import check_call

ALGORITHMS = ("ring", "recursive_halving")


def reduce_scatter(comm, sendbuf: np.ndarray, op: str = "sum", algorithm: str = "ring", *,
                   check: bool = True) -> np.ndarray:
    """Block ``rank`` (of ``block_counts(sendbuf.size, p)``) of the elementwise reduction of
    every rank's flattened ``sendbuf``, as a new 1-D array."""
    if check:
        check_call(comm, "reduce_scatter", sendbuf, algorithm=algorithm, algorithms=ALGORITHMS, op=op)
    rank, p = comm.Get_rank(), comm.Get_size()
    flat = sendbuf.reshape(-1)
    displs = block_displs(block_counts(flat.size, p))
    if algorithm == "ring":
        acc = np.empty_like(flat)
        reduce_scatter_ring(comm, acc, displs, op, source=flat)
    else:
        acc = flat.copy()
        reduce_scatter_recursive_halving(comm, acc, displs, op)
    return acc[displs[rank]:displs[rank + 1]].copy()


def reduce_scatter_ring(comm, acc: np.ndarray, displs: list[int], op: str, shift: int = 0,
                        source: np.ndarray | None = None) -> None:
    """Ring reduce-scatter: afterwards rank r's block (r − shift) mod p of ``acc`` is the full
    reduction (other blocks hold partial sums, one holds nothing useful).

    ``source`` (default: ``acc`` itself) is this rank's contribution.  Every block that
    arrives is combined as ``acc[b] = op(source[b], incoming)``, so ``acc`` needs no copy
    of ``source`` beforehand: each block is read from memory once and written once.
    """
    # BEGIN SOLUTION [step 2] hint: own = (rank − shift) % p; step s: send block (own − s − 1) % p (from source at s = 0, from acc after) to rank+1, receive block (own − s − 2) % p from rank−1 into a temporary, combine(op, source[b], incoming, out=acc[b]); p = 1: copy source
    rank, p = comm.Get_rank(), comm.Get_size()
    source = acc if source is None else source
    if p == 1:
        acc[...] = source
        return
    own = (rank - shift) % p
    right, left = (rank + 1) % p, (rank - 1) % p
    incoming = scratch(max(displs[i + 1] - displs[i] for i in range(p)), acc.dtype)

    def block(buf, b):
        return buf[displs[b]:displs[b + 1]]

    for s in range(p - 1):
        send_block, recv_block = (own - s - 1) % p, (own - s - 2) % p
        count = displs[recv_block + 1] - displs[recv_block]
        # step 0 sends our own contribution; later steps forward the partial sum made last step
        comm.Sendrecv(block(source if s == 0 else acc, send_block), dest=right, sendtag=TAGS["reduce_scatter"],
                      recvbuf=incoming[:count], source=left, recvtag=TAGS["reduce_scatter"])
        combine(op, block(source, recv_block), incoming[:count], out=block(acc, recv_block))
    # END SOLUTION


def recursive_halving_spans(comm, acc: np.ndarray, newrank: int, pof2: int,
                            spans: list[tuple[int, int]], op: str) -> None:
    """Recursive-halving reduce-scatter among the p' = ``pof2`` ranks left after a fold.

    New rank j's result is ``acc[spans[j][0]:spans[j][1]]`` (adjacent spans).  At distance
    d = p'/2, p'/4, ..., 1 this rank and new rank ``newrank XOR d`` split the group of new
    ranks they still reduce for; each sends the other's half and reduces its own.
    """
    # BEGIN SOLUTION [step 4] hint: keep a range [lo, hi) of new ranks (start [0, pof2)); mid = (lo+hi)//2; if newrank & d: keep [mid, hi) and send [lo, mid), else the reverse; Sendrecv with real_rank(newrank ^ d), reduce_into the kept slice
    p = comm.Get_size()
    lo, hi = 0, pof2
    incoming = scratch(acc.size, acc.dtype)
    distance = pof2 // 2
    while distance >= 1:
        mid = (lo + hi) // 2
        if newrank & distance:
            keep, give = (mid, hi), (lo, mid)
        else:
            keep, give = (lo, mid), (mid, hi)
        k0, k1 = spans[keep[0]][0], spans[keep[1] - 1][1]
        g0, g1 = spans[give[0]][0], spans[give[1] - 1][1]
        partner = real_rank(newrank ^ distance, p)
        comm.Sendrecv(acc[g0:g1], dest=partner, sendtag=TAGS["reduce_scatter"],
                      recvbuf=incoming[:k1 - k0], source=partner, recvtag=TAGS["reduce_scatter"])
        reduce_into(op, acc[k0:k1], incoming[:k1 - k0])
        lo, hi = keep
        distance //= 2
    # END SOLUTION


def reduce_scatter_recursive_halving(comm, acc: np.ndarray, displs: list[int], op: str) -> None:
    """Recursive halving for any p: fold in, halve among p' ranks, hand the extra ranks their block."""
    # BEGIN SOLUTION [step 4] hint: newrank = fold_in(comm, acc, op); the p' ranks run recursive_halving_spans with spans from new_rank_blocks; then odd rank 2i+1 < 2·rem sends block 2i to rank 2i
    rank, p = comm.Get_rank(), comm.Get_size()
    pof2 = pof2_below(p)
    rem = p - pof2
    newrank = fold_in(comm, acc, op)
    if newrank >= 0:
        spans = []
        for j in range(pof2):
            first, last = new_rank_blocks(j, p)
            spans.append((displs[first], displs[last]))
        recursive_halving_spans(comm, acc, newrank, pof2, spans, op)
    if rank < 2 * rem:  # fold out: the even rank's block, reduced by its odd partner
        block = rank - 1 if rank % 2 else rank
        piece = acc[displs[block]:displs[block + 1]]
        if rank % 2 == 1:
            comm.Send(piece, dest=rank - 1, tag=TAGS["reduce_scatter"])
        else:
            comm.Recv(piece, source=rank + 1, tag=TAGS["reduce_scatter"])
    # END SOLUTION
