"""Launching ``torchrun`` from Python: one machine, a free port, a timeout, every rank stopped.

The same command a user types (``torchrun --standalone --nproc_per_node N -m
mlsys_labs.zero.train``), with the rendezvous on a port picked free on 127.0.0.1 so
that several launches never collide.  The ranks run outside the checkout (``python -m``
puts the working directory first on ``sys.path``) with this process's ``mlsys_labs``
first on ``PYTHONPATH`` — so a submission being graded runs its own code in every rank.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ...common.procs import Finished, free_port, run_group


def torchrun_command(nproc: int, target: list[str]) -> list[str]:
    """``python -m torch.distributed.run --nproc_per_node nproc TARGET...`` on a free port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *target]


def rank_env() -> dict:
    """One thread per rank (ranks share the cores) and this ``mlsys_labs`` first on the path."""
    import mlsys_labs

    root = str(Path(mlsys_labs.__file__).resolve().parents[1])
    path = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(path + [root]))


def torchrun(nproc: int, target: list[str], *, timeout: float, capture: bool = True) -> Finished:
    """Run ``target`` on ``nproc`` ranks; the whole process group is killed on timeout or exit.
    With ``capture`` the ranks' stdout and stderr come back together in ``stdout``."""
    return run_group(torchrun_command(nproc, target), timeout=timeout, env=rank_env(),
                     cwd=tempfile.gettempdir(), merge_stderr=True, capture=capture)
