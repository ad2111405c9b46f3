"""N data-parallel ranks as N threads of the test process, for fast in-process tests.

The engines talk to each other only through ``Comm`` (``all_reduce``, ``reduce_scatter``,
``all_gather``), so a ``Comm`` whose collectives meet in this process is enough to run a
3-rank DDP or ZeRO training in one pytest process in about a second — no torchrun, no
process start-up — which is what lets the graded tests try world sizes like 3 (units not
divisible by N) and look inside a step (what is launched when, what memory is alive).
The torchrun tests (``test_distributed.py``) still run the same engines on real gloo.

Semantics, as strict as a real backend's and deterministic:

- every rank must call the same collectives in the same order with the same sizes and
  dtypes, or the run fails (a real backend would hang or fail);
- each rank's input is read when it *launches* the collective; the result is written into
  its output only when it waits (``async_op=True`` returns a handle; without it the call
  waits itself) — an output read before ``wait()`` is stale, a handle never waited for
  never delivers, as on a real backend;
- sums are taken in rank order, in the tensor's dtype: ``((x0 + x1) + x2) + ...`` — the
  order in which ``lab6_cases.reference_run`` sums the per-rank gradients, so fp32 (and
  bf16) runs agree with the single-process reference to the bit;
- bytes are counted with the ring formulas of ``comm.py`` (in the same ``sent``/``calls``
  counters), independently of the learner's ``_count``; ``log`` keeps every call
  ``(kind, tag, numel)`` in launch order, and ``on_collective`` hooks ``hook(comm, kind, tag, input, output)`` run at every
  launch, before anything is sent.

A rank that raises, or blocks past the timeout, fails the whole run with that rank's error.
"""
from __future__ import annotations

import threading
import traceback
from collections import defaultdict
from typing import Callable

import torch

from mlsys_labs.zero import Comm


class RanksFailed(AssertionError):
    pass


class _World:
    def __init__(self, n: int, timeout: float):
        self.n, self.timeout = n, timeout
        self.cond = threading.Condition()
        self.ops: dict[int, dict] = {}
        self.failed: str | None = None

    def fail(self, why: str) -> None:
        with self.cond:
            if self.failed is None:
                self.failed = why
            self.cond.notify_all()

    def _check(self) -> None:
        if self.failed is not None:
            raise RanksFailed(f"another rank failed: {self.failed.splitlines()[-1]}")

    def post(self, seq: int, rank: int, kind: str, numel: int, dtype, data: torch.Tensor) -> dict:
        with self.cond:
            self._check()
            op = self.ops.setdefault(seq, {"kind": kind, "numel": numel, "dtype": dtype, "inputs": {},
                                           "result": None, "waited": 0})
            if (op["kind"], op["numel"], op["dtype"]) != (kind, numel, dtype):
                why = (f"collective #{seq}: rank {rank} calls {kind} of {numel} {dtype} elements, another "
                       f"rank {op['kind']} of {op['numel']} {op['dtype']} (ranks must call the same collectives "
                       f"in the same order; a real backend would hang or fail)")
                self.failed = self.failed or why
                self.cond.notify_all()
                raise RanksFailed(why)
            op["inputs"][rank] = data
            if len(op["inputs"]) == self.n:
                xs = [op["inputs"][r] for r in range(self.n)]
                if kind == "all_gather":
                    op["result"] = torch.cat(xs)
                else:
                    acc = xs[0].clone()
                    for x in xs[1:]:
                        acc += x
                    op["result"] = acc
                op["inputs"] = None
                self.cond.notify_all()
            return op

    def result(self, seq: int, op: dict) -> torch.Tensor:
        with self.cond:
            ok = self.cond.wait_for(lambda: op["result"] is not None or self.failed is not None, self.timeout)
            self._check()
            if not ok:
                why = f"collective #{seq} ({op['kind']}): not every rank launched it within {self.timeout:g} s"
                self.failed = why
                self.cond.notify_all()
                raise RanksFailed(why)
            res = op["result"]
            op["waited"] += 1
            if op["waited"] == self.n:
                self.ops.pop(seq, None)
            return res


class _Handle:
    def __init__(self, deliver: Callable[[], None]):
        self._deliver = deliver

    def wait(self):
        if self._deliver is not None:
            deliver, self._deliver = self._deliver, None
            deliver()
        return True

    def is_completed(self) -> bool:
        return self._deliver is None


RING = {"all_reduce": lambda n: 2 * (n - 1) / n, "reduce_scatter": lambda n: (n - 1) / n,
        "all_gather": lambda n: (n - 1) / n}


class ThreadComm(Comm):
    """Rank ``rank`` of an in-process world (see the module docstring)."""

    def __init__(self, world: _World, rank: int):  # noqa: D107 - no process group: do not call Comm.__init__
        self.group = None
        self.rank, self.world = rank, world.n
        self.sent: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self._w, self._seq = world, 0
        self.log: list[tuple[str, str, int]] = []
        self.on_collective: list[Callable] = []

    def _launch(self, kind: str, tag: str, data: torch.Tensor, counted: torch.Tensor, output: torch.Tensor,
                piece: Callable[[torch.Tensor], torch.Tensor], async_op: bool):
        for hook in self.on_collective:
            hook(self, kind, tag, data, output)
        n = self.world
        self.sent[tag] += int(round(RING[kind](n) * counted.numel() * counted.element_size()))
        self.calls[tag] += 1
        self.log.append((kind, tag, counted.numel()))
        seq, self._seq = self._seq, self._seq + 1
        op = self._w.post(seq, self.rank, kind, counted.numel(), counted.dtype, data.detach().clone())

        def deliver():
            with torch.no_grad():
                output.copy_(piece(self._w.result(seq, op)))

        handle = _Handle(deliver)
        if async_op:
            return handle
        handle.wait()
        return None

    def all_reduce(self, tensor, *, tag, async_op=False):
        return self._launch("all_reduce", tag, tensor, tensor, tensor, lambda r: r, async_op)

    def reduce_scatter(self, output, input, *, tag, async_op=False):
        if output.dtype != input.dtype:
            raise RanksFailed(f"reduce_scatter: output {output.dtype}, input {input.dtype} (backends need one dtype)")
        if input.numel() != output.numel() * self.world:
            raise RanksFailed(f"reduce_scatter: input of {input.numel()} elements, output {output.numel()} "
                              f"at {self.world} ranks")
        k = output.numel()
        return self._launch("reduce_scatter", tag, input.reshape(-1), input, output,
                            lambda r: r[self.rank * k:(self.rank + 1) * k].view_as(output), async_op)

    def all_gather(self, output, input, *, tag, async_op=False):
        if output.dtype != input.dtype:
            raise RanksFailed(f"all_gather: output {output.dtype}, input {input.dtype} (backends need one dtype)")
        if output.numel() != input.numel() * self.world:
            raise RanksFailed(f"all_gather: output of {output.numel()} elements, input {input.numel()} "
                              f"at {self.world} ranks")
        return self._launch("all_gather", tag, input.reshape(-1), output, output, lambda r: r.view_as(output),
                            async_op)


def run_ranks(n: int, fn: Callable[[ThreadComm], object], timeout: float = 60.0) -> list:
    """``fn(comm)`` on ``n`` ranks, one thread each; every rank's return value, in rank order.

    Build models *before* calling this (``build_model`` seeds the global RNG).  A rank's
    exception fails the run with its traceback; so does a rank still running after ``timeout``."""
    world = _World(n, timeout)
    comms = [ThreadComm(world, r) for r in range(n)]
    results: list = [None] * n
    errors: dict[int, str] = {}

    def body(r: int) -> None:
        try:
            results[r] = fn(comms[r])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[r] = traceback.format_exc()
            world.fail(f"rank {r}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=body, args=(r,), name=f"rank{r}", daemon=True) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    hung = [r for r, t in enumerate(threads) if t.is_alive()]
    if hung:
        world.fail(f"ranks {hung} still running after {timeout:g} s")
        for t in threads:
            t.join(5)
        raise RanksFailed(f"ranks {hung} did not finish within {timeout:g} s (a hang)")
    if errors:
        first = min(errors, key=lambda r: ("another rank failed" in errors[r], r))
        raise RanksFailed(f"rank {first} of {n} failed:\n{errors[first]}")
    return results
