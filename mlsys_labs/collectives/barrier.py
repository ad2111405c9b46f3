"""Barrier by dissemination (Hensgen, Finkel & Manber 1988; Thakur et al. 2005 §3).

    round k = 0, 1, ..., ⌈lg p⌉−1:  rank r signals rank (r + 2^k) mod p
                                    and waits for rank (r − 2^k) mod p

After round k every rank has heard, directly or through others, from the 2^(k+1) ranks
before it; after ⌈lg p⌉ rounds from all of them, so nobody leaves before everyone has
arrived.  Works for any p (no folding).  Cost: ⌈lg p⌉·α (empty messages).
"""
from __future__ import annotations

import numpy as np

from .ops import TAGS
from .plumbing.validate import check_call

ALGORITHMS = ("dissemination",)


def barrier(comm, algorithm: str = "dissemination", *, check: bool = True) -> None:
    """Block until every rank of ``comm`` has called barrier."""
    if check:
        check_call(comm, "barrier", None, algorithm=algorithm, algorithms=ALGORITHMS)
    barrier_dissemination(comm)


def barrier_dissemination(comm) -> None:
    """⌈lg p⌉ rounds of empty Sendrecv at distances 1, 2, 4, ..."""
    # BEGIN SOLUTION [step 1] hint: distance = 1, 2, 4, ... < p: Sendrecv an empty array to (rank + distance) % p from (rank − distance) % p
    rank, p = comm.Get_rank(), comm.Get_size()
    token, sink = np.empty(0, np.uint8), np.empty(0, np.uint8)
    distance = 1
    while distance < p:
        comm.Sendrecv(token, dest=(rank + distance) % p, sendtag=TAGS["barrier"],
                      recvbuf=sink, source=(rank - distance) % p, recvtag=TAGS["barrier"])
        distance *= 2
    # END SOLUTION
