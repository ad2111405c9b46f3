"""Plumbing around lab 3's collectives — not the lesson.

- :mod:`validate` — the cross-rank argument check every collective runs first (one small
  MPI allgather: a mismatched call raises the same error on every rank instead of hanging).
- :mod:`calibrate` — measuring α, β (eager and rendezvous) and γ on this machine for the cost model.
- :mod:`launch` — finding ``mpiexec`` and running ``python`` on p ranks (one machine or a hostfile).
- :mod:`osu` — the OSU-style sweep of our collectives against MPI's own, with the model's predictions.
- :mod:`plots` — the sweep's latency, bus-bandwidth, model and crossover plots.
- :mod:`demo` — ``mlsys-labs run 3``: the lab end to end on this machine.
"""
from .launch import mpi_env, mpiexec_command, mpiexec_path, oversubscribed, run_mpi

__all__ = ["mpi_env", "mpiexec_command", "mpiexec_path", "oversubscribed", "run_mpi"]
