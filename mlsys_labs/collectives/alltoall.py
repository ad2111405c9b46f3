"""Alltoall by pairwise exchange (Thakur, Rabenseifner & Gropp 2005, §4.5).

Rank r has one block for every rank (``sendbuf[j]`` goes to rank j)::

    step s = 1 .. p−1:  send block (r + s) mod p to rank r + s,
                        receive rank (r − s)'s block for us from rank r − s
    (the own block is a local copy)

Every step is a permutation, so no rank is sent two messages at once.

    cost  (p−1)·α + n(p−1)/p·β     (n = bytes each rank sends in all)
"""
from __future__ import annotations

import numpy as np

from .ops import TAGS
from .plumbing.validate import check_call

ALGORITHMS = ("pairwise",)


def alltoall(comm, sendbuf: np.ndarray, algorithm: str = "pairwise", *, check: bool = True) -> np.ndarray:
    """``out[j]`` = rank j's ``sendbuf[rank]``; ``sendbuf`` has shape ``(p, ...)``."""
    if check:
        check_call(comm, "alltoall", sendbuf, algorithm=algorithm, algorithms=ALGORITHMS,
                   leading=comm.Get_size())
    out = np.empty_like(sendbuf)
    alltoall_pairwise(comm, sendbuf, out)
    return out


def alltoall_pairwise(comm, sendbuf: np.ndarray, out: np.ndarray) -> None:
    """p − 1 Sendrecv steps, partner distance s = 1 .. p−1."""
    # BEGIN SOLUTION [step 5] hint: out[rank] = sendbuf[rank]; step s: Sendrecv the slice sendbuf[d:d+1], d = (rank+s)%p, receive into out[c:c+1], c = (rank−s)%p, from (rank−s)%p
    rank, p = comm.Get_rank(), comm.Get_size()
    out[rank] = sendbuf[rank]
    for s in range(1, p):
        dst, src = (rank + s) % p, (rank - s) % p
        comm.Sendrecv(sendbuf[dst:dst + 1], dest=dst, sendtag=TAGS["alltoall"],
                      recvbuf=out[src:src + 1], source=src, recvtag=TAGS["alltoall"])
    # END SOLUTION
