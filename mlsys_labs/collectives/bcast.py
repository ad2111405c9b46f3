"""Broadcast: binomial tree for short messages; scatter + ring allgather for long ones
(Thakur, Rabenseifner & Gropp 2005, §4.1; van de Geijn's long-message broadcast).

Ranks are numbered relative to the root, ``vr = (rank − root) mod p``.

Binomial tree (p = 8)::

    step 1: 0 → 4            every rank that has the data sends it to the rank
    step 2: 0 → 2, 4 → 6     half a tree away; the number of ranks holding it
    step 3: 0→1, 2→3, 4→5, 6→7   doubles each step

    cost  ⌈lg p⌉·α + n·⌈lg p⌉·β

Scatter + ring allgather: the root scatters the n bytes in p blocks down the same
binomial tree (relative rank vr ends with block vr; a subtree's blocks are contiguous, so
each message is one slice), then a ring allgather circulates the blocks: in step s rank
vr passes block (vr − s) mod p to its right neighbour.  Each rank receives each block
once.

    cost  (⌈lg p⌉ + p − 1)·α + 2n(p−1)/p·β
"""
from __future__ import annotations

import numpy as np

from .allgather import allgather_ring_blocks
from .ops import TAGS, block_counts, block_displs
from .plumbing.validate import check_call

ALGORITHMS = ("binomial", "scatter_allgather")


def bcast(comm, buf: np.ndarray, root: int = 0, algorithm: str = "binomial", *,
          check: bool = True) -> np.ndarray:
    """Copy the root's ``buf`` into every rank's ``buf`` (in place, like ``MPI_Bcast``); return it."""
    if check:
        check_call(comm, "bcast", buf, algorithm=algorithm, algorithms=ALGORITHMS, root=root)
    flat = buf.reshape(-1)
    if algorithm == "binomial":
        bcast_binomial(comm, flat, root)
    else:
        bcast_scatter_allgather(comm, flat, root)
    return buf


def bcast_binomial(comm, flat: np.ndarray, root: int) -> None:
    """Binomial-tree broadcast of ``flat`` from ``root``."""
    # BEGIN SOLUTION [step 1] hint: vr = (rank − root) % p; receive from vr − mask at vr's lowest set bit `mask`, then send to vr + m for m = mask/2, mask/4, ..., 1 (when < p); translate back with + root
    rank, p = comm.Get_rank(), comm.Get_size()
    vr = (rank - root) % p
    mask = 1
    while mask < p:  # receive from the parent: clear vr's lowest set bit
        if vr & mask:
            comm.Recv(flat, source=(vr - mask + root) % p, tag=TAGS["bcast"])
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:  # send to the children: vr + mask for every smaller mask
        if vr + mask < p:
            comm.Send(flat, dest=(vr + mask + root) % p, tag=TAGS["bcast"])
        mask >>= 1
    # END SOLUTION


def bcast_scatter_allgather(comm, flat: np.ndarray, root: int) -> None:
    """Long-message broadcast: binomial scatter of p blocks, then a ring allgather."""
    # BEGIN SOLUTION [step 5] hint: blocks by relative rank; the subtree of vr (lowest set bit `mask`) holds blocks [vr, vr+mask): receive that slice from the parent, send [vr+m, vr+2m) to each child vr+m; then allgather_ring_blocks(comm, flat, displs, shift=root)
    rank, p = comm.Get_rank(), comm.Get_size()
    displs = block_displs(block_counts(flat.size, p))
    vr = (rank - root) % p

    def span(first: int, last: int) -> np.ndarray:  # the elements of blocks [first, last)
        return flat[displs[first]:displs[min(last, p)]]

    mask = 1
    while mask < p:
        if vr & mask:
            comm.Recv(span(vr, vr + mask), source=(vr - mask + root) % p, tag=TAGS["bcast"])
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if vr + mask < p:
            comm.Send(span(vr + mask, vr + 2 * mask), dest=(vr + mask + root) % p, tag=TAGS["bcast"])
        mask >>= 1
    allgather_ring_blocks(comm, flat, displs, shift=root)
    # END SOLUTION
