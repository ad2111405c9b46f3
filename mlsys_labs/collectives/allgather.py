"""Allgather: ring, recursive doubling, Bruck (Thakur, Rabenseifner & Gropp 2005, §4.3;
Bruck et al. 1997).  Each rank contributes m elements; n = p·m is the gathered size.

Ring (any p)::

    step s = 0 .. p−2:  rank r sends block (r − s) mod p to r+1,
                        receives block (r − s − 1) mod p from r−1
    cost  (p−1)·α + n(p−1)/p·β

Recursive doubling (p a power of two)::

    step k:  rank r swaps everything it has (2^k blocks) with rank r XOR 2^k
    cost  lg p·α + n(p−1)/p·β
    (non-powers of two: fold in/out, see fold.py: +2α + (m + n)β)

Bruck (any p, ⌈lg p⌉ steps): work in a buffer rotated so that this rank's block is first;

    step k:  send the first min(2^k, p−2^k) blocks to rank r − 2^k,
             receive as many from rank r + 2^k, appended after the 2^k held
    finally: held block i is rank (r + i) mod p's — rotate back
    cost  ⌈lg p⌉·α + n(p−1)/p·β
"""
from __future__ import annotations

import numpy as np

from .fold import new_rank, new_rank_blocks, real_rank
from .ops import TAGS, ceil_log2, pof2_below
from .plumbing.validate import check_call

ALGORITHMS = ("ring", "recursive_doubling", "bruck")


def allgather(comm, sendbuf: np.ndarray, algorithm: str = "ring", *, check: bool = True) -> np.ndarray:
    """Every rank's ``sendbuf`` (same shape on all ranks), stacked: shape ``(p, *sendbuf.shape)``."""
    if check:
        check_call(comm, "allgather", sendbuf, algorithm=algorithm, algorithms=ALGORITHMS)
    rank, p = comm.Get_rank(), comm.Get_size()
    out = np.empty((p,) + sendbuf.shape, dtype=sendbuf.dtype)
    out[rank] = sendbuf
    flat = out.reshape(-1)
    m = sendbuf.size
    displs = [i * m for i in range(p + 1)]
    if algorithm == "ring":
        allgather_ring_blocks(comm, flat, displs)
    elif algorithm == "recursive_doubling":
        allgather_recursive_doubling(comm, flat, displs)
    else:
        allgather_bruck(comm, out)
    return out


def allgather_ring_blocks(comm, flat: np.ndarray, displs: list[int], shift: int = 0) -> None:
    """Ring allgather in place: rank r holds block (r − shift) mod p of ``flat`` (blocks
    ``displs[i]:displs[i+1]``, sizes may differ) and ends holding all of them."""
    # BEGIN SOLUTION [step 2] hint: own = (rank − shift) % p; in step s send block (own − s) % p to rank+1 and receive block (own − s − 1) % p from rank−1 with one Sendrecv
    rank, p = comm.Get_rank(), comm.Get_size()
    own = (rank - shift) % p
    right, left = (rank + 1) % p, (rank - 1) % p
    for s in range(p - 1):
        send_block, recv_block = (own - s) % p, (own - s - 1) % p
        comm.Sendrecv(flat[displs[send_block]:displs[send_block + 1]], dest=right, sendtag=TAGS["allgather"],
                      recvbuf=flat[displs[recv_block]:displs[recv_block + 1]], source=left,
                      recvtag=TAGS["allgather"])
    # END SOLUTION


def recursive_doubling_spans(comm, flat: np.ndarray, newrank: int, pof2: int,
                             spans: list[tuple[int, int]]) -> None:
    """Recursive-doubling allgather among the p' = ``pof2`` ranks left after a fold.

    New rank j holds ``flat[spans[j][0]:spans[j][1]]``; the spans of consecutive new ranks
    are adjacent, so an aligned group of 2^k new ranks is one slice.  Step k swaps this
    rank's group with the group of new rank ``newrank XOR 2^k``.
    """
    # BEGIN SOLUTION [step 4] hint: mask = 1, 2, ...: my group is new ranks [newrank & ~(mask−1), +mask), the partner's is the same for newrank ^ mask; one Sendrecv with real_rank(partner)
    p = comm.Get_size()
    mask = 1
    while mask < pof2:
        partner = newrank ^ mask
        mine, theirs = newrank & ~(mask - 1), partner & ~(mask - 1)
        comm.Sendrecv(flat[spans[mine][0]:spans[mine + mask - 1][1]], dest=real_rank(partner, p),
                      sendtag=TAGS["allgather"],
                      recvbuf=flat[spans[theirs][0]:spans[theirs + mask - 1][1]],
                      source=real_rank(partner, p), recvtag=TAGS["allgather"])
        mask <<= 1
    # END SOLUTION


def allgather_recursive_doubling(comm, flat: np.ndarray, displs: list[int]) -> None:
    """Recursive doubling for any p: fold the extra ranks' blocks in, double, hand back."""
    # BEGIN SOLUTION [step 4] hint: even ranks below 2·rem send their block to rank+1 and later receive the whole flat back; the others run recursive_doubling_spans with spans from new_rank_blocks
    rank, p = comm.Get_rank(), comm.Get_size()
    pof2 = pof2_below(p)
    rem = p - pof2
    if rank < 2 * rem:  # fold in: the even rank's block joins its odd partner's
        block = rank - 1 if rank % 2 else rank
        if rank % 2 == 0:
            comm.Send(flat[displs[rank]:displs[rank + 1]], dest=rank + 1, tag=TAGS["allgather"])
        else:
            comm.Recv(flat[displs[block]:displs[block + 1]], source=rank - 1, tag=TAGS["allgather"])
    newrank = new_rank(rank, p)
    if newrank >= 0:
        spans = []
        for j in range(pof2):
            first, last = new_rank_blocks(j, p)
            spans.append((displs[first], displs[last]))
        recursive_doubling_spans(comm, flat, newrank, pof2, spans)
    if rank < 2 * rem:  # fold out: the whole result back to the rank that sat out
        if rank % 2 == 1:
            comm.Send(flat, dest=rank - 1, tag=TAGS["allgather"])
        else:
            comm.Recv(flat, source=rank + 1, tag=TAGS["allgather"])
    # END SOLUTION


def allgather_bruck(comm, out: np.ndarray) -> None:
    """Bruck's allgather on ``out`` (shape (p, ...), this rank's row filled): ⌈lg p⌉ steps."""
    # BEGIN SOLUTION [step 5] hint: work = rows rotated so own row is first; distance 2^k: send work[:cnt] to rank − 2^k, receive work[2^k:2^k+cnt] from rank + 2^k, cnt = min(2^k, p − 2^k); then out[(rank+i)%p] = work[i]
    rank, p = comm.Get_rank(), comm.Get_size()
    work = np.empty_like(out)
    work[0] = out[rank]
    for k in range(ceil_log2(p)):
        distance = 1 << k
        count = min(distance, p - distance)
        comm.Sendrecv(work[:count], dest=(rank - distance) % p, sendtag=TAGS["allgather"],
                      recvbuf=work[distance:distance + count], source=(rank + distance) % p,
                      recvtag=TAGS["allgather"])
    out[...] = np.roll(work, rank, axis=0)  # out[(rank + i) % p] = work[i]
    # END SOLUTION
