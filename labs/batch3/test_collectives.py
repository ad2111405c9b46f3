"""Graded: every collective against MPI's own, on p = 1..5 ranks (mpiexec), plus the
folding algorithms on p = 6 (two folded pairs) and, hidden, p = 7 (three).

Each test is one algorithm of one collective at one p — its own points and its own error
message — and carries the README step it belongs to (``pytest labs/batch3 --step 2``).
All the groups a session needs at one p share one mpiexec launch (conftest.py).  Cases:
ops sum/prod/max/min × dtypes int32/int64/float32/float64 × counts 0, < p, not divisible
by p, 37, a 2-D buffer, and 65 539 elements (rendezvous, not eager) × two roots per
case (every root is met); integers bit-exact, float64 within rtol 1e-12; then the
busiest rank's messages and bytes against the cost formula.
"""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.dist]
RANKS = (1, 2, 3, 4, 5)


def group(name: str, step: int, points: float, id: str | None = None):
    """One parameter: the group run inside mpiexec, with its step and its points."""
    return pytest.param(name, marks=[pytest.mark.step(step), pytest.mark.points(points)],
                        id=id or name.partition(":")[2] or name)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("barrier:dissemination", 1, 0.4)])
def test_barrier(mpi_group, group, p):
    """Each rank in turn arrives late; no rank may leave before it (called with check=False)."""
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("bcast:binomial", 1, 0.5), group("bcast:scatter_allgather", 5, 0.5)])
def test_bcast(mpi_group, group, p):
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("reduce:binomial", 1, 0.6)])
def test_reduce(mpi_group, group, p):
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("allreduce:ring", 2, 0.6), group("allreduce:recursive_doubling", 3, 0.5),
                                   group("allreduce:rabenseifner", 4, 0.6)])
def test_allreduce(mpi_group, group, p):
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("reduce_scatter:ring", 2, 0.5),
                                   group("reduce_scatter:recursive_halving", 4, 0.5)])
def test_reduce_scatter(mpi_group, group, p):
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("allgather:ring", 2, 0.4), group("allgather:recursive_doubling", 4, 0.4),
                                   group("allgather:bruck", 5, 0.4)])
def test_allgather(mpi_group, group, p):
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("alltoall:pairwise", 5, 0.6)])
def test_alltoall(mpi_group, group, p):
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("validation", 1, 0.6)])
def test_mismatched_calls_raise_on_every_rank(mpi_group, group, p):
    """Mismatched calls raise CollectiveArgumentError on every rank; the communicator still works."""
    mpi_group(p, group)


@pytest.mark.parametrize("p", RANKS[1:])
@pytest.mark.parametrize("group", [group("calibration", 6, 0.25)])
def test_cost_model_calibration(mpi_group, group, p):
    """Eager and rendezvous α, β by exchanges and γ by a local reduction: finite, and the same on every rank."""
    mpi_group(p, group)


FOLDING = [("allreduce:recursive_doubling", 3), ("allreduce:rabenseifner", 4),
           ("reduce_scatter:recursive_halving", 4), ("allgather:recursive_doubling", 4)]


@pytest.mark.parametrize("p", [6])
@pytest.mark.parametrize("group", [group(name, step, 0.3, name.replace(":", "-")) for name, step in FOLDING])
def test_fold_with_two_pairs(mpi_group, group, p):
    """p = 6: rem = 2 pairs fold in and out, and ranks ≥ 2·rem are renumbered."""
    mpi_group(p, group)


@pytest.mark.hidden
@pytest.mark.slow
@pytest.mark.parametrize("p", [7])
@pytest.mark.parametrize("group", [group(name, step, 0.3, name.replace(":", "-")) for name, step in FOLDING])
def test_fold_with_three_pairs(mpi_group, group, p):
    """p = 7: rem = 3 pairs fold in and out."""
    mpi_group(p, group)


@pytest.mark.hidden
@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("group", [group("allreduce_auto", 6, 0.4)])
def test_allreduce_auto(mpi_group, group, p):
    """``algorithm="auto"`` under a latency-only, a bandwidth-only and the default model."""
    mpi_group(p, group)
