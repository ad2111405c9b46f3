"""The cross-rank argument check: a mismatched call fails with the same clear error on
every rank, instead of deadlocking.

Point-to-point collectives trust that every rank made the same call: the same algorithm
(else one rank waits for a message the other never sends), the same count and dtype
(else a receive is truncated, or blocks forever), the same root.  MPI itself leaves
this undefined.  Here every rank first shares a small description of its call with
one allgather of a few bytes (MPI's own collective: the check must not rely on the
code it protects), then every rank runs the same verdict on the same data and raises
the same :class:`CollectiveArgumentError` — or none does.

Cost: one small allgather per call (≈ lg p latencies).  The benchmarks pass
``check=False`` so that only the algorithm is timed; say so when quoting them.
"""
from __future__ import annotations

import numpy as np

from ..ops import DTYPES, OPS


class CollectiveArgumentError(ValueError):
    """Raised on every rank when the ranks' calls to a collective do not match."""


def check_call(comm, collective: str, buf: np.ndarray | None, *, algorithm: str | None = None,
               algorithms: tuple[str, ...] = (), op: str | None = None, root: int | None = None,
               same_shape: bool = True, leading: int | None = None, problems: list[str] | None = None) -> None:
    """Agree across ranks that this call is well formed, or raise on every rank.

    ``buf`` is this rank's buffer (None for buffer-less collectives); ``same_shape`` asks
    all ranks to pass the same shape and dtype; ``leading`` asks the first dimension to
    equal it (alltoall: one block per rank); ``problems`` are the caller's own findings.
    """
    p = comm.Get_size()
    problems = list(problems or [])  # this rank's own, local problems
    if algorithm is not None and algorithm not in algorithms:
        problems.append(f"unknown algorithm {algorithm!r} (known: {', '.join(algorithms)})")
    if op is not None and op not in OPS:
        problems.append(f"unknown op {op!r} (known: {', '.join(OPS)})")
    if root is not None and not (isinstance(root, (int, np.integer)) and 0 <= root < p):
        problems.append(f"root {root!r} out of range for {p} ranks")
    shape = dtype = None
    if buf is not None:
        if not isinstance(buf, np.ndarray):
            problems.append(f"buffer must be a numpy array, got {type(buf).__name__}")
        else:
            shape, dtype = tuple(buf.shape), str(buf.dtype)
            if dtype not in DTYPES:
                problems.append(f"dtype {dtype} not supported (supported: {', '.join(DTYPES)})")
            if not buf.flags.c_contiguous:
                problems.append("buffer must be C-contiguous")
            if leading is not None and (len(shape) == 0 or shape[0] != leading):
                problems.append(f"buffer shape {shape} must start with the number of ranks {leading}")
    mine = (collective, algorithm, op, root, shape, dtype, problems)
    everyone = comm.allgather(mine)  # MPI's own collective: a few bytes per rank

    # The same verdict, computed from the same data, on every rank.
    errors = [f"rank {r}: {msg}" for r, sig in enumerate(everyone) for msg in sig[6]]
    for field, idx in (("collective", 0), ("algorithm", 1), ("op", 2), ("root", 3)):
        values = [sig[idx] for sig in everyone]
        if len(set(map(repr, values))) > 1:
            errors.append(f"ranks disagree on the {field}: " + _per_rank(values))
    if same_shape:
        for field, idx in (("buffer shape", 4), ("dtype", 5)):
            values = [sig[idx] for sig in everyone]
            if len(set(map(repr, values))) > 1:
                errors.append(f"ranks disagree on the {field}: " + _per_rank(values))
    if errors:
        raise CollectiveArgumentError(f"{collective}: mismatched call on {p} ranks; " + "; ".join(errors))


def _per_rank(values: list) -> str:
    return ", ".join(f"rank {r}={v!r}" for r, v in enumerate(values))
