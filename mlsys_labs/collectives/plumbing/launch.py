"""Finding and running ``mpiexec`` — on one machine or on a cluster.

The MPI library is MPICH (installed from PyPI with ``make install``; a system MPI that
mpi4py was built against works the same).  ``mpiexec`` is looked up next to the running
Python first (the virtual environment's), then on ``PATH``.

One machine::

    mpiexec -n 4 python -m mlsys_labs.collectives.plumbing.osu

A cluster (the same code, a hostfile listing the machines, one per line as
``host:slots``; the project folder and venv at the same path on every host)::

    mpiexec -f hosts.txt -n 16 python -m mlsys_labs.collectives.plumbing.osu

On a machine with fewer cores than ranks MPICH's busy-polling ranks steal the cores from
the ranks that have work; :func:`mpi_env` asks MPICH to yield (``MPIR_CVAR_POLLS_BEFORE_YIELD=1``)
by sleeping (``MPIR_CVAR_ENABLE_HEAVY_YIELD=1``): 5 ranks on 2 busy cores ran the graded
checks 4× faster.  Leave it off for timing on free cores (it adds latency per wait).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...common.procs import run_group


def mpiexec_path() -> str:
    """The ``mpiexec`` beside this Python (the venv's MPICH), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if not found:
        raise FileNotFoundError("no mpiexec found: run `make install` (it installs MPICH from PyPI) "
                                "or install a system MPI")
    return found


def mpi_env(yield_when_idle: bool = True, extra: dict | None = None) -> dict:
    """The environment for mpiexec: this project's ``mlsys_labs`` first on PYTHONPATH (so
    the ranks run the same code as the caller) and, when asked, MPICH told to yield."""
    import mlsys_labs

    env = dict(os.environ)
    root = str(Path(mlsys_labs.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if yield_when_idle:
        env.setdefault("MPIR_CVAR_POLLS_BEFORE_YIELD", "1")
        env.setdefault("MPIR_CVAR_ENABLE_HEAVY_YIELD", "1")
    if extra:
        env.update(extra)
    return env


def oversubscribed(p: int) -> bool:
    """True when p busy-polling ranks would not each find a free core: more ranks than cores,
    or the 1-minute load average already at the number of cores (other work fills them).
    Then every step that needs two ranks running at once waits for the scheduler, and
    letting waiting ranks yield (:func:`mpi_env`) is faster and far steadier."""
    cores = len(os.sched_getaffinity(0))
    return p > cores or os.getloadavg()[0] >= cores


def mpiexec_command(p: int, args: list[str], hostfile: str | None = None) -> list[str]:
    """``mpiexec [-f hostfile] -n p python args...``."""
    cmd = [mpiexec_path()]
    if hostfile:
        cmd += ["-f", hostfile]
    return cmd + ["-n", str(p), sys.executable, *args]


def run_mpi(p: int, args: list[str], *, timeout: float, hostfile: str | None = None,
            yield_when_idle: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python args`` on p ranks; kill the whole process group on timeout.

    Returns the CompletedProcess (``returncode`` is −9 after a timeout kill), with
    stdout/stderr as text.
    """
    cmd = mpiexec_command(p, args, hostfile)
    done = run_group(cmd, timeout=timeout, env=env or mpi_env(yield_when_idle))
    err = done.stderr
    if done.timed_out:
        err += f"\n[launch] killed after {timeout:.0f} s (deadlock, or too slow)"
    return subprocess.CompletedProcess(cmd, done.returncode, done.stdout, err)
