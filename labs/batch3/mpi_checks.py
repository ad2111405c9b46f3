"""The graded checks that run *inside* ``mpiexec -n p``: each (collective, algorithm)
against MPI's own, many cases per launch (process start-up dominates on 2 cores).

    mpiexec -n 4 python labs/batch3/mpi_checks.py RESULTS.jsonl SEED allreduce:ring,bcast:binomial,...

A *group* is one collective's one algorithm (``allreduce:ring``), or ``validation``,
``calibration``.  Every rank runs the same cases of a group in the same order on a fresh
duplicate of COMM_WORLD.  After each case the ranks agree (a non-blocking MPI allreduce
with a deadline) on whether all of them passed; a failure ends that group only, and is
reported with each rank's error.  A rank whose case raises writes the error to
RESULTS.jsonl.rank<r> at once, so that even when the launch must be aborted (the other
ranks wait for this rank's messages) the exception is what is reported, not a deadlock.
A deadlock (some rank waits for a message that is never sent, and no rank raised) ends
the launch within CASE_DEADLINE_S: a rank that gets no answer aborts, and a watchdog
thread ends a rank whose case runs past the deadline (for when every rank is blocked);
the test harness (conftest.py) then relaunches the groups not yet checked.  Rank 0
appends one JSON line per group start and end to RESULTS.jsonl.

Integers must match bit for bit; floats within the tolerance policy
(float64 rtol 1e-12, float32 1e-5), since MPI may combine in another order.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
import zlib

import numpy as np
from mpi4py import MPI

import mlsys_labs.collectives as C
from mlsys_labs.common.tolerance import assert_close, poison_like

CASE_DEADLINE_S = 10.0
MPI_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN}
OP_NAMES = ("sum", "prod", "max", "min")


# ------------------------------------------------------------------------------- data
def values(rng, shape, dtype: str, op: str) -> np.ndarray:
    """Random inputs that cannot overflow under ``op`` on up to 5 ranks (never all zeros)."""
    if dtype.startswith("int"):
        lo, hi = {"sum": (-1000, 1000), "prod": (-3, 4), "max": (-10**6, 10**6), "min": (-10**6, 10**6)}[op]
        return rng.integers(lo, hi, size=shape).astype(dtype)
    if op == "prod":
        return (rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def shapes(p: int) -> list[tuple[int, ...]]:
    """Counts 0, fewer than p, not divisible by p, a larger one, a 2-D buffer, and one
    long enough (≈ 0.25–0.5 MiB) that MPI switches from eager sends to rendezvous — where
    a schedule that only works because sends are buffered (two ranks both in Send first)
    deadlocks."""
    counts = sorted({0, max(1, p - 1), 2 * p + 1, 37})
    return [(c,) for c in counts] + [(3, 4), (2**16 + 3,)]


def combos(p: int):
    """(index, shape, dtype, op): every dtype meets every op once across the shapes."""
    k = 0
    for i, shape in enumerate(shapes(p)):
        for j, dtype in enumerate(C.DTYPES):
            yield k, shape, dtype, OP_NAMES[(i + j) % 4]
            k += 1


def same(got, ref, what: str) -> None:
    if got is None or ref is None or np.shape(got) != np.shape(ref):
        raise AssertionError(f"{what}: got shape {np.shape(got) if got is not None else None}, "
                             f"expected {np.shape(ref)}")
    if np.asarray(got).dtype != np.asarray(ref).dtype:
        raise AssertionError(f"{what}: dtype {np.asarray(got).dtype}, expected {np.asarray(ref).dtype}")
    assert_close(got, ref, dtype=str(np.asarray(ref).dtype), what=what)


# ----------------------------------------------------------------------------- checks
# Each check is a generator of (label, case) for one algorithm; the last case of every
# collective's group compares the messages and bytes it sends with its cost formula.
def check_barrier(comm, rng, algorithm):
    """Every rank in turn arrives 20 ms late: nobody may leave before it arrives.

    Called with ``check=False``: the argument check is itself an MPI collective, which
    would synchronise the ranks and hide a barrier that lets them leave early.  The
    clock is CLOCK_MONOTONIC, one clock for all processes of a machine."""
    p, rank = comm.Get_size(), comm.Get_rank()
    for late in range(p):
        times = {}

        def enter(late=late, times=times):
            if rank == late:
                time.sleep(0.02)
            times["in"] = time.monotonic()
            C.barrier(comm, algorithm=algorithm, check=False)
            times["out"] = time.monotonic()

        def verdict(late=late, times=times):
            everyone = comm.allgather((times["in"], times["out"]))
            last_in = max(t for t, _ in everyone)
            first = min(range(p), key=lambda r: everyone[r][1])
            if everyone[first][1] < last_in:
                raise AssertionError(f"rank {first} left the barrier {1e3 * (last_in - everyone[first][1]):.1f} ms "
                                     f"before rank {late} arrived")
        yield f"barrier: rank {late} arrives late", enter
        yield f"barrier: nobody leaves before rank {late} arrives", verdict
    yield from message_counts(comm, rng, "barrier", algorithm)


def check_bcast(comm, rng, algorithm):
    p, rank = comm.Get_size(), comm.Get_rank()
    for k, shape, dtype, _ in combos(p):
        for root in sorted({k % p, (k + 1) % p}):
            data = values(rng, shape, dtype, "sum")

            def case(data=data, root=root, shape=shape, dtype=dtype):
                ref = data.copy()
                comm.Bcast(ref, root=root)
                buf = data.copy() if rank == root else poison_like(data)
                out = C.bcast(comm, buf, root=root, algorithm=algorithm)
                same(buf, ref, f"bcast {algorithm} {dtype}{list(shape)} root={root}")
                if out is not None and out is not buf:
                    same(out, ref, "bcast return value")
            yield f"bcast {algorithm} {dtype}{list(shape)} root={root}", case
    yield from message_counts(comm, rng, "bcast", algorithm)


def check_reduce(comm, rng, algorithm):
    p, rank = comm.Get_size(), comm.Get_rank()
    for k, shape, dtype, op in combos(p):
        for root in sorted({(k * 3) % p, (k * 3 + 1) % p}):
            data = values(rng, shape, dtype, op)

            def case(data=data, root=root, op=op, shape=shape, dtype=dtype):
                ref = np.empty_like(data)
                comm.Reduce(data, ref, op=MPI_OPS[op], root=root)
                before = data.copy()
                got = C.reduce(comm, data, op=op, root=root, algorithm=algorithm)
                what = f"reduce {op} {dtype}{list(shape)} root={root}"
                if rank == root:
                    same(got, ref, what)
                elif got is not None:
                    raise AssertionError(f"{what}: non-root rank {rank} should get None, got {type(got).__name__}")
                same(data, before, f"{what}: input buffer must be left unchanged")
            yield f"reduce {op} {dtype}{list(shape)} root={root}", case
    yield from message_counts(comm, rng, "reduce", algorithm)


def check_allreduce(comm, rng, algorithm):
    for _, shape, dtype, op in combos(comm.Get_size()):
        data = values(rng, shape, dtype, op)

        def case(data=data, op=op, shape=shape, dtype=dtype):
            ref = np.empty_like(data)
            comm.Allreduce(data, ref, op=MPI_OPS[op])
            before = data.copy()
            got = C.allreduce(comm, data, op=op, algorithm=algorithm)
            same(got, ref, f"allreduce {algorithm} {op} {dtype}{list(shape)}")
            same(data, before, f"allreduce {algorithm}: input buffer must be left unchanged")
        yield f"allreduce {algorithm} {op} {dtype}{list(shape)}", case
    data = values(rng, (37,), "float64", "sum")

    def into_out(data=data):
        ref = np.empty_like(data)
        comm.Allreduce(data, ref, op=MPI.SUM)
        out = poison_like(data)
        got = C.allreduce(comm, data, algorithm=algorithm, out=out)
        same(out, ref, f"allreduce {algorithm} into out=")
        if got is not out:
            raise AssertionError("allreduce(..., out=buf) must return buf")
        inplace = data.copy()
        C.allreduce(comm, inplace, algorithm=algorithm, out=inplace)
        same(inplace, ref, f"allreduce {algorithm} in place (out=sendbuf)")
    yield f"allreduce {algorithm} into out= and in place", into_out
    yield from message_counts(comm, rng, "allreduce", algorithm)


def check_reduce_scatter(comm, rng, algorithm):
    p, rank = comm.Get_size(), comm.Get_rank()
    for _, shape, dtype, op in combos(p):
        data = values(rng, shape, dtype, op)
        counts = C.block_counts(data.size, p)

        def case(data=data, op=op, shape=shape, dtype=dtype, counts=counts):
            ref = np.empty(counts[rank], dtype=data.dtype)
            comm.Reduce_scatter(data, ref, recvcounts=counts, op=MPI_OPS[op])
            before = data.copy()
            got = C.reduce_scatter(comm, data, op=op, algorithm=algorithm)
            same(None if got is None else np.asarray(got).reshape(-1), ref,
                 f"reduce_scatter {algorithm} {op} {dtype}{list(shape)} (block {rank} of {counts})")
            same(data, before, f"reduce_scatter {algorithm}: input buffer must be left unchanged")
        yield f"reduce_scatter {algorithm} {op} {dtype}{list(shape)}", case
    yield from message_counts(comm, rng, "reduce_scatter", algorithm)


def check_allgather(comm, rng, algorithm):
    p = comm.Get_size()
    for _, shape, dtype, _ in combos(p):
        data = values(rng, shape, dtype, "max")

        def case(data=data, shape=shape, dtype=dtype):
            ref = np.empty((p,) + data.shape, dtype=data.dtype)
            comm.Allgather(data, ref)
            same(C.allgather(comm, data, algorithm=algorithm), ref, f"allgather {algorithm} {dtype}{list(shape)}")
        yield f"allgather {algorithm} {dtype}{list(shape)}", case
    yield from message_counts(comm, rng, "allgather", algorithm)


def check_alltoall(comm, rng, algorithm):
    p = comm.Get_size()
    for _, shape, dtype, _ in combos(p):
        data = values(rng, (p,) + shape, dtype, "min")

        def case(data=data, shape=shape, dtype=dtype):
            ref = np.empty_like(data)
            comm.Alltoall(data, ref)
            same(C.alltoall(comm, data, algorithm=algorithm), ref, f"alltoall {algorithm} {dtype}{list((p,) + shape)}")
        yield f"alltoall {algorithm} {dtype}{list((p,) + shape)}", case
    yield from message_counts(comm, rng, "alltoall", algorithm)


def check_validation(comm, rng, algorithm=None):
    """Mismatched calls raise CollectiveArgumentError on every rank; afterwards the
    communicator still works (no stray messages) — checked with the collectives of
    step 1 (barrier, binomial bcast and reduce), so that this group is step 1's."""
    p, rank = comm.Get_size(), comm.Get_rank()
    x = values(rng, (6,), "float64", "sum")

    def expect(call, *words):
        def case():
            try:
                call()
            except C.CollectiveArgumentError as e:
                text = str(e).lower()
                missing = [w for w in words if w not in text]
                if missing:
                    raise AssertionError(f"the error should mention {missing}: {e}") from None
                return
            raise AssertionError("no CollectiveArgumentError raised on this rank")
        return case

    if p > 1:
        y = x[:5] if rank == 0 else x
        yield "allreduce, rank 0 passes 5 elements, the others 6", expect(lambda: C.allreduce(comm, y), "shape")
        z = x.astype(np.float32) if rank == p - 1 else x
        yield "allgather, the last rank passes float32", expect(lambda: C.allgather(comm, z), "dtype")
        alg = "ring" if rank == 0 else "recursive_doubling"
        yield "allreduce, ranks pass different algorithms", expect(
            lambda: C.allreduce(comm, x, algorithm=alg), "algorithm")
        root = 0 if rank == 0 else p - 1
        yield "bcast, ranks name different roots", expect(lambda: C.bcast(comm, x.copy(), root=root), "root")
    yield "bcast, root out of range", expect(lambda: C.bcast(comm, x.copy(), root=p), "root")
    yield "reduce, negative root", expect(lambda: C.reduce(comm, x, root=-1), "root")
    yield "allreduce, unknown algorithm", expect(lambda: C.allreduce(comm, x, algorithm="butterfly"), "algorithm")
    yield "reduce_scatter, unknown op", expect(lambda: C.reduce_scatter(comm, x, op="avg"), "op")
    yield "alltoall, first dimension is not p", expect(
        lambda: C.alltoall(comm, np.zeros((p + 1, 2))), "shape")
    yield "allgather, unsupported dtype", expect(lambda: C.allgather(comm, x.astype(np.int16)), "dtype")
    bad_out = np.empty(7 if rank == 0 else 6)
    yield "allreduce, rank 0's out= has the wrong shape", expect(lambda: C.allreduce(comm, x, out=bad_out), "out")

    def still_works():
        C.barrier(comm)
        ref = x.copy()
        comm.Bcast(ref, root=p - 1)
        same(C.bcast(comm, x.copy(), root=p - 1), ref, "bcast after the errors")
        comm.Reduce(x, ref, op=MPI.SUM, root=0)
        got = C.reduce(comm, x, root=0)
        if rank == 0:
            same(got, ref, "reduce after the errors")
    yield "a well-formed call after the errors still gives the right answer", still_works


class CountingComm:
    """Forwards to a communicator, counting the point-to-point messages and bytes this
    rank sends and receives (the collectives use only Send/Recv/Sendrecv/Isend/Irecv)."""

    def __init__(self, comm):
        self._comm = comm
        self.sent = self.received = 0
        self.bytes_sent = self.bytes_received = 0

    def __getattr__(self, name):
        return getattr(self._comm, name)

    @staticmethod
    def _nbytes(buf) -> int:
        if isinstance(buf, (list, tuple)):
            buf = buf[0]
        return memoryview(buf).nbytes

    def _out(self, buf):
        self.sent += 1
        self.bytes_sent += self._nbytes(buf)

    def _in(self, buf):
        self.received += 1
        self.bytes_received += self._nbytes(buf)

    def Send(self, buf, *args, **kw):
        self._out(buf)
        return self._comm.Send(buf, *args, **kw)

    def Isend(self, buf, *args, **kw):
        self._out(buf)
        return self._comm.Isend(buf, *args, **kw)

    def Recv(self, buf, *args, **kw):
        self._in(buf)
        return self._comm.Recv(buf, *args, **kw)

    def Irecv(self, buf, *args, **kw):
        self._in(buf)
        return self._comm.Irecv(buf, *args, **kw)

    def Sendrecv(self, sendbuf, *args, **kw):
        self._out(sendbuf)
        recvbuf = kw["recvbuf"] if "recvbuf" in kw else args[2]
        self._in(recvbuf)
        return self._comm.Sendrecv(sendbuf, *args, **kw)


def formula(collective: str, algorithm: str, n: int, p: int) -> tuple[int, int]:
    """(messages, bytes) on the busiest rank, from the README's cost table (computed here,
    independently of costmodel.py); n divisible by p, and p a power of two for the
    algorithms that fold."""
    if p == 1:
        return 0, 0
    lgc, lg = (p - 1).bit_length(), p.bit_length() - 1
    share = n * (p - 1) // p
    return {
        ("barrier", "dissemination"): (lgc, 0),
        ("bcast", "binomial"): (lgc, n * lgc),
        ("bcast", "scatter_allgather"): (lgc + p - 1, 2 * share),
        ("reduce", "binomial"): (lgc, n * lgc),
        ("allreduce", "ring"): (2 * (p - 1), 2 * share),
        ("allreduce", "recursive_doubling"): (lg, n * lg),
        ("allreduce", "rabenseifner"): (2 * lg, 2 * share),
        ("reduce_scatter", "ring"): (p - 1, share),
        ("reduce_scatter", "recursive_halving"): (lg, share),
        ("allgather", "ring"): (p - 1, share),
        ("allgather", "recursive_doubling"): (lg, share),
        ("allgather", "bruck"): (lgc, share),
        ("alltoall", "pairwise"): (p - 1, share),
    }[(collective, algorithm)]


FOLDED = {("allreduce", "recursive_doubling"), ("allreduce", "rabenseifner"),
          ("reduce_scatter", "recursive_halving"), ("allgather", "recursive_doubling")}


def message_counts(comm, rng, collective: str, algorithm: str):
    """The implementation matches its cost formula: the busiest rank's messages equal the
    α coefficient and its bytes the β coefficient (n divisible by p; the folding
    algorithms only at powers of two, where the formulas count the critical path exactly)."""
    p = comm.Get_size()
    if (collective, algorithm) in FOLDED and p & (p - 1):
        return
    m = 12 * p  # elements per rank, divisible by p
    x = values(rng, (m,), "float64", "sum")
    calls = {
        "barrier": (0, lambda c: C.barrier(c, algorithm=algorithm, check=False)),
        "bcast": (x.nbytes, lambda c: C.bcast(c, x.copy(), algorithm=algorithm, check=False)),
        "reduce": (x.nbytes, lambda c: C.reduce(c, x, algorithm=algorithm, check=False)),
        "allreduce": (x.nbytes, lambda c: C.allreduce(c, x, algorithm=algorithm, check=False)),
        "reduce_scatter": (x.nbytes, lambda c: C.reduce_scatter(c, x, algorithm=algorithm, check=False)),
        "allgather": (p * x.nbytes, lambda c: C.allgather(c, x, algorithm=algorithm, check=False)),
        "alltoall": (x.nbytes, lambda c: C.alltoall(c, x.reshape(p, -1), algorithm=algorithm, check=False)),
    }
    nbytes, call = calls[collective]

    def case():
        counter = CountingComm(comm)
        call(counter)
        mine = (max(counter.sent, counter.received), max(counter.bytes_sent, counter.bytes_received))
        busiest = max(comm.allgather(mine))
        want = formula(collective, algorithm, nbytes, p)
        if tuple(busiest) != want:
            raise AssertionError(
                f"{collective} {algorithm}, n={nbytes} B, p={p}: the busiest rank has {busiest[0]} messages / "
                f"{busiest[1]} bytes, the cost formula says {want[0]} latencies / {want[1]} bytes")
    yield f"message counts of {collective} {algorithm}", case


def check_allreduce_auto(comm, rng, algorithm="auto"):
    p = comm.Get_size()
    for _, shape, dtype, op in combos(p):
        data = values(rng, shape, dtype, op)
        for params in (C.CostParams(1e-5, 0.0, 0.0), C.CostParams(0.0, 1e-9, 1e-9), None):
            def case(data=data, op=op, params=params, shape=shape, dtype=dtype):
                ref = np.empty_like(data)
                comm.Allreduce(data, ref, op=MPI_OPS[op])
                same(C.allreduce(comm, data, op=op, algorithm="auto", params=params), ref,
                     f"allreduce auto (params {params}) {op} {dtype}{list(shape)}")
            yield f"allreduce auto {op} {dtype}{list(shape)} params={params}", case


def check_calibration(comm, rng, algorithm=None):
    """α, β per protocol by exchanges and γ by a local reduction: finite, positive where they must be,
    and the same on every rank (else ``auto`` could pick different algorithms per rank)."""
    if comm.Get_size() == 1:
        return  # nothing to ping-pong with (calibrate raises ValueError); not graded at p = 1

    def fits():  # every rank, first: a missing fit fails here on all ranks at once, not after a wait
        sizes = [8, 4096, 65536, 2**20]
        a, b = C.fit_alpha_beta(sizes, [1e-5 + 1e-9 * n for n in sizes])
        if not (np.isclose(a, 1e-5, rtol=1e-6) and np.isclose(b, 1e-9, rtol=1e-6)):
            raise AssertionError(f"fit_alpha_beta through points on t = 1e-5 + 1e-9·n gave α={a}, β={b}")
    yield "fit_alpha_beta on every rank", fits

    def case():
        params = C.calibrate(comm, sizes=(8, 4096, 65536, 2**20, 2**22), iterations=5)
        values_ = (params.alpha, params.beta, params.gamma, params.alpha_rndv, params.beta_rndv,
                   params.rendezvous_from)
        # either term of a line may fit to 0 (eager messages cost about the same at 8 B and
        # 4 KiB; on a loaded machine the scheduler's wait swamps β), but not both, nor γ
        lines_cost = (params.alpha + 4096 * params.beta, params.alpha_rndv + 2**22 * params.beta_rndv)
        if (not all(np.isfinite(v) and v >= 0 for v in values_[:5]) or min(lines_cost) <= 0
                or params.gamma <= 0 or params.rendezvous_from is None):
            raise AssertionError(f"implausible calibration {params}")
        if len({repr(v) for v in comm.allgather(values_)}) != 1:
            raise AssertionError(f"ranks got different parameters: {comm.allgather(values_)}")
    yield "calibrate", case


FAMILIES = {
    "barrier": check_barrier,
    "bcast": check_bcast,
    "reduce": check_reduce,
    "allreduce": check_allreduce,
    "reduce_scatter": check_reduce_scatter,
    "allgather": check_allgather,
    "alltoall": check_alltoall,
    "validation": check_validation,
    "allreduce_auto": check_allreduce_auto,
    "calibration": check_calibration,
}


# ------------------------------------------------------------------------------ driver
def describe(exc: BaseException, rank: int) -> dict:
    """The error as the test reports it: its first line (naming the function of ours that
    raised it, the innermost frame in mlsys_labs/collectives), then the traceback."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if f"{os.sep}collectives{os.sep}" in frame.filename:
            where = f", in {frame.name} ({os.path.basename(frame.filename)}:{frame.lineno})"
            break
    first = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return {"rank": rank, "first": f"{first} (rank {rank}{where})",
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}


def agree(comm, ok: bool, label: str, raised: dict | None) -> bool:
    """True when every rank passed; abort the launch when some rank never answers."""
    send, recv = np.array([int(ok)], np.int32), np.zeros(1, np.int32)
    req = comm.Iallreduce(send, recv, op=MPI.MIN)
    deadline = time.monotonic() + CASE_DEADLINE_S
    while not req.Test():
        if time.monotonic() > deadline:
            rank = comm.Get_rank()
            if raised:
                why = (f"this rank raised {raised['first']}; the other ranks did not finish the case "
                       "(they wait for this rank's messages)")
            else:
                why = ("no word from some rank after this case — a deadlock (a rank waits for a message "
                       "that is never sent, or the ranks made different calls)")
            sys.stderr.write(f"[rank {rank}] {label}: {why}; aborting the launch after {CASE_DEADLINE_S:.0f} s\n")
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(3)
        time.sleep(0.0002)
    return bool(recv[0])


class Watchdog(threading.Thread):
    """Ends this rank when one case runs past the deadline even if no rank gets as far as
    ``agree`` (all of them blocked in a receive).  mpi4py releases the GIL inside blocking
    MPI calls, so this thread runs; ``os._exit`` makes mpiexec stop the other ranks."""

    def __init__(self, rank: int):
        super().__init__(daemon=True)
        self.rank, self.label, self.since = rank, None, time.monotonic()

    def start_case(self, label: str | None) -> None:
        self.label, self.since = label, time.monotonic()

    def run(self) -> None:
        while True:
            time.sleep(0.5)
            if self.label is not None and time.monotonic() - self.since > CASE_DEADLINE_S + 2:
                sys.stderr.write(f"[rank {self.rank}] {self.label}: still running after {CASE_DEADLINE_S:.0f} s — "
                                 "a deadlock (every rank blocked, waiting for a message); ending this rank\n")
                sys.stderr.flush()
                os._exit(4)


WATCHDOG: Watchdog | None = None


def split(group: str) -> tuple[str, str | None]:
    family, _, algorithm = group.partition(":")
    return family, algorithm or None


def run_group(world, group: str, seed: int, errors_path: str) -> dict:
    """Run one group's cases until the first that fails on some rank."""
    comm = world.Dup()
    rank = comm.Get_rank()
    family, algorithm = split(group)
    # inputs differ per rank; the rank-independent choices come from the seed and the group
    rng = np.random.default_rng([seed, zlib.crc32(group.encode()), rank + 1])
    cases, failures = 0, []
    generator = FAMILIES[family](comm, rng, algorithm)
    while True:
        error, label = None, f"{group} (setting up the next case)"
        try:
            label, case = next(generator)
            WATCHDOG.start_case(f"{group} / {label}")
            case()
        except StopIteration:
            break
        except Exception as e:  # noqa: BLE001 — every failure is reported, with its rank
            error = {**describe(e, rank), "label": label}
            with open(errors_path, "a") as f:  # before agree: it may have to abort the launch
                f.write(json.dumps({"group": group, **error}) + "\n")
        cases += 1
        ok = agree(comm, error is None, f"{group} / {label}", error)
        WATCHDOG.start_case(None)
        if not ok:
            failures = [e for e in comm.allgather(error) if e]
            break
    comm.Barrier()
    comm.Free()
    return {"group": group, "event": "end", "cases": cases, "failures": failures, "p": world.Get_size()}


def main(argv: list[str]) -> int:
    global WATCHDOG
    results_path, seed, groups = argv[0], int(argv[1]), argv[2].split(",")
    world = MPI.COMM_WORLD
    WATCHDOG = Watchdog(world.Get_rank())
    WATCHDOG.start()
    errors_path = f"{results_path}.rank{world.Get_rank()}"
    for group in groups:
        if world.Get_rank() == 0:
            _append(results_path, {"group": group, "event": "start"})
        t0 = time.perf_counter()
        result = run_group(world, group, seed, errors_path)
        result["seconds"] = time.perf_counter() - t0
        if world.Get_rank() == 0:
            _append(results_path, result)
    return 0


def _append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
