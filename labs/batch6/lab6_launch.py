"""Launching torchrun from the tests: a free port, a timeout, every process stopped.

Imported by ``conftest.py`` and ``test_distributed.py`` (by path: the grader runs pytest in
importlib mode, where ``conftest`` cannot be imported by name).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *target]
    # a submission being graded comes first on PYTHONPATH; keep it first for the children, and run
    # them outside the checkout (``python -m`` puts the working directory first on sys.path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []) + [str(HERE.parents[1])]))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tempfile.gettempdir(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the agent's workers too, whatever happened
        except ProcessLookupError:
            pass
    return Launch(proc.returncode, out or "", time.monotonic() - t0, timed_out)
