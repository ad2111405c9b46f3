"""Fixtures for the distributed tests: one 4-rank and one 2-rank torchrun launch per session."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lab6_launch import Launch, torchrun  # noqa: E402


@pytest.fixture(scope="session")
def lab6_seed() -> int:
    """One seed for the launched runs, derived from the session seed (``--seed`` reproduces it)."""
    from mlsys_labs.common.rng import derive_seed
    from mlsys_labs.grading import pytest_plugin

    return derive_seed(pytest_plugin._SESSION_SEED or 0, "lab6") % 100_000


def _worker_results(nproc: int, seed: int, tmp: Path, timeout: float, resume_from: Path | None = None):
    import torch

    extra = [str(resume_from)] if resume_from else []
    launch = torchrun(nproc, [str(HERE / "dist_worker.py"), str(tmp), str(seed), *extra], timeout)
    path = tmp / "rank0.pt"
    results = torch.load(path, weights_only=False) if path.exists() else None
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) if (tmp / f"rank{r}.pt").exists() else None
             for r in range(nproc)]
    return Run(launch, results, ranks, tmp)


@dataclass
class Run:
    launch: Launch
    results: dict | None   # rank 0's results: case -> dict
    ranks: list            # every rank's results
    out: Path              # the output folder (checkpoint, loss log)


@pytest.fixture(scope="session")
def run4(tmp_path_factory, lab6_seed):
    """The 4-rank cases, then train.py at stage 3 saving a checkpoint after 6 steps (one launch;
    4 processes share the cores: tiny model)."""
    return _worker_results(4, lab6_seed, tmp_path_factory.mktemp("lab6_n4"), timeout=240)


@pytest.fixture(scope="session")
def run2(tmp_path_factory, lab6_seed, run4):
    """Every case at 2 ranks, then train.py at stage 1 resuming from the 4-rank checkpoint (one launch)."""
    return _worker_results(2, lab6_seed, tmp_path_factory.mktemp("lab6_n2"), timeout=200, resume_from=run4.out)
