"""Graded: every collective against MPI's own, on p = 1..5 ranks (mpiexec).

Each test is one family at one p; all families at a p share one mpiexec launch
(conftest.py).  Cases: all algorithms × ops sum/prod/max/min × dtypes
int32/int64/float32/float64 × counts 0, < p, not divisible by p, 37, a 2-D buffer ×
every root, plus 65 539 elements (rendezvous, not eager); integers bit-exact, float64
within rtol 1e-12.
"""
from __future__ import annotations

import pytest


pytestmark = [pytest.mark.mpi, pytest.mark.dist]
RANKS = (1, 2, 3, 4, 5)


@pytest.mark.points(0.4)
@pytest.mark.parametrize("p", RANKS)
def test_barrier_dissemination(family_passes, p):
    family_passes(p, "barrier")


@pytest.mark.points(1)
@pytest.mark.parametrize("p", RANKS)
def test_bcast_binomial_and_scatter_allgather(family_passes, p):
    family_passes(p, "bcast")


@pytest.mark.points(0.6)
@pytest.mark.parametrize("p", RANKS)
def test_reduce_binomial(family_passes, p):
    family_passes(p, "reduce")


@pytest.mark.points(1.6)
@pytest.mark.parametrize("p", RANKS)
def test_allreduce_recursive_doubling_ring_rabenseifner(family_passes, p):
    family_passes(p, "allreduce")


@pytest.mark.points(1)
@pytest.mark.parametrize("p", RANKS)
def test_reduce_scatter_ring_and_recursive_halving(family_passes, p):
    family_passes(p, "reduce_scatter")


@pytest.mark.points(1)
@pytest.mark.parametrize("p", RANKS)
def test_allgather_ring_recursive_doubling_bruck(family_passes, p):
    family_passes(p, "allgather")


@pytest.mark.points(0.6)
@pytest.mark.parametrize("p", RANKS)
def test_alltoall_pairwise(family_passes, p):
    family_passes(p, "alltoall")


@pytest.mark.points(0.6)
@pytest.mark.parametrize("p", RANKS)
def test_mismatched_calls_raise_on_every_rank(family_passes, p):
    family_passes(p, "validation")


@pytest.mark.points(0.6)
@pytest.mark.parametrize("p", RANKS)
def test_messages_and_bytes_match_the_cost_formulas(family_passes, p):
    family_passes(p, "message_counts")


@pytest.mark.points(0.25)
@pytest.mark.parametrize("p", RANKS[1:])
def test_cost_model_calibration(family_passes, p):
    family_passes(p, "calibration")


@pytest.mark.hidden
@pytest.mark.points(0.4)
@pytest.mark.parametrize("p", RANKS)
def test_allreduce_auto(family_passes, p):
    family_passes(p, "allreduce_auto")


@pytest.mark.hidden
@pytest.mark.slow
@pytest.mark.points(0.5)
@pytest.mark.parametrize("family", ["allreduce", "reduce_scatter", "allgather"])
@pytest.mark.parametrize("p", [6, 7])
def test_fold_with_several_pairs(family_passes, p, family):
    """p = 6, 7: rem = 2, 3 pairs fold in and out, and ranks ≥ 2·rem are renumbered."""
    family_passes(p, family)
