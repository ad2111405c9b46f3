"""What every collective shares: the reduction operations, the supported dtypes, how a
vector is cut into blocks, and the message tags.

Not the lesson — the algorithms are — but every algorithm leans on these three ideas:

* a reduction ``op`` is a numpy ufunc applied in place, ``acc = op(acc, incoming)``; all
  four (sum, prod, max, min) are commutative and associative, so any combining order
  is exact for integers (floating-point sums may differ in the last bits);
* a vector of ``n`` elements is cut into ``parts`` contiguous blocks whose sizes differ
  by at most one (the first ``n % parts`` blocks get one more), as ``np.array_split``
  does; a block may be empty when ``n < parts``;
* each collective sends with its own tag, so its messages never match another's.
"""
from __future__ import annotations

import numpy as np

# op name -> numpy ufunc (applied as ufunc(acc, incoming, out=acc))
OPS: dict[str, np.ufunc] = {
    "sum": np.add,
    "prod": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}

DTYPES: tuple[str, ...] = ("int32", "int64", "float32", "float64")

# One tag per collective (MPI guarantees ordering between a pair of ranks per tag).
TAGS: dict[str, int] = {
    "barrier": 3001,
    "bcast": 3002,
    "reduce": 3003,
    "allreduce": 3004,
    "reduce_scatter": 3005,
    "allgather": 3006,
    "alltoall": 3007,
    "fold": 3008,
}


def reduce_into(op: str, acc: np.ndarray, incoming: np.ndarray) -> None:
    """``acc <- op(acc, incoming)`` elementwise, in place (the γ term of the cost model)."""
    OPS[op](acc, incoming, out=acc)


def combine(op: str, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out <- op(a, b)`` elementwise: a reduction that also moves the data where it belongs
    (saves copying ``a`` into ``out`` first)."""
    OPS[op](a, b, out=out)


def block_counts(n: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous blocks covering ``n`` elements (first ``n % parts`` get one more)."""
    q, r = divmod(n, parts)
    return [q + 1 if i < r else q for i in range(parts)]


def block_displs(counts: list[int]) -> list[int]:
    """Start offsets of the blocks, plus the end: ``displs[i]:displs[i+1]`` is block i."""
    displs = [0]
    for c in counts:
        displs.append(displs[-1] + c)
    return displs


_SCRATCH: dict[str, np.ndarray] = {}


def scratch(count: int, dtype) -> np.ndarray:
    """A reusable temporary of ``count`` elements for incoming messages.

    A fresh large array costs a page fault per 4 KiB page on first touch (≈ as much as
    copying it); MPICH keeps its temporary buffers too.  One buffer per dtype, grown on
    demand: use it for one message at a time, never for a result (and so: one collective
    at a time per process — not thread-safe, like an MPI communicator used without locks).
    """
    dtype = np.dtype(dtype)
    buf = _SCRATCH.get(dtype.str)
    if buf is None or buf.size < count:
        buf = np.empty(max(count, 1), dtype)
        _SCRATCH[dtype.str] = buf
    return buf[:count]


def pof2_below(p: int) -> int:
    """The largest power of two ``<= p`` (``p >= 1``)."""
    return 1 << (p.bit_length() - 1)


def ceil_log2(p: int) -> int:
    """⌈lg p⌉: rounds of a dissemination barrier or a Bruck allgather."""
    return (p - 1).bit_length()
