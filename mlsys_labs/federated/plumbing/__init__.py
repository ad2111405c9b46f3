"""Plumbing around lab 7's federated learning — not the lesson.

- :mod:`environment` — where Flower, Ray and scikit-learn keep their state (``.mlsys/lab7``), set when
  ``mlsys_labs.federated`` is imported, before Flower or Ray loads; the environment of child processes.
- :mod:`simulation` — running the Flower apps on one machine: Flower's simulation engine (Ray), or the
  same ServerApp loop and ClientApp in this process (:class:`~simulation.InProcessGrid`).
- :mod:`deployment` — a real SuperLink and N SuperNodes as processes, driven by ``flwr run``, every
  process stopped afterwards.
- :mod:`demo` — ``mlsys-labs run 7``: the strategies' accuracy per round, and ``--deployment``.
"""
from .deployment import Deployment, leftover_processes
from .simulation import InProcessGrid, run_flower_simulation, run_in_process

__all__ = ["Deployment", "InProcessGrid", "leftover_processes", "run_flower_simulation", "run_in_process"]
