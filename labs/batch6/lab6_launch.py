"""Launching torchrun from the tests: a free port, a timeout, every process stopped.

Imported by ``conftest.py`` and ``test_distributed.py`` (by path: the grader runs pytest in
importlib mode, where ``conftest`` cannot be imported by name).
"""
from __future__ import annotations

from dataclasses import dataclass

from mlsys_labs.zero.plumbing import torchrun as _torchrun


@dataclass
class Launch:
    returncode: int | None
    output: str
    seconds: float
    timed_out: bool

    def tail(self, n: int = 6000) -> str:
        return f"--- torchrun output (last {n} characters) ---\n{self.output[-n:]}"


def torchrun(nproc: int, target: list[str], timeout: float) -> Launch:
    """``torchrun --nproc_per_node nproc TARGET...`` on a free port; killed (whole group) on exit."""
    done = _torchrun(nproc, target, timeout=timeout)
    return Launch(done.returncode, done.stdout, done.seconds, done.timed_out)
