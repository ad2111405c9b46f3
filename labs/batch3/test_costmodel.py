"""Graded: the α-β-γ cost model — its formulas, the fold for non-powers of two, the
``auto`` choice, and the calibration fit.  No MPI needed (the MPI test
``test_messages_and_bytes_match_the_cost_formulas`` checks the implementation obeys them)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.collectives import costmodel
from mlsys_labs.collectives.costmodel import CostParams, choose_allreduce, predict, terms


def literature(collective: str, algorithm: str, n: float, p: int) -> tuple[float, float, float]:
    """Thakur, Rabenseifner & Gropp (2005) / Chan et al. (2007), p a power of two."""
    lg, f = math.log2(p), (p - 1) / p
    return {
        ("allreduce", "recursive_doubling"): (lg, n * lg, n * lg),
        ("allreduce", "rabenseifner"): (2 * lg, 2 * n * f, n * f),
        ("allreduce", "ring"): (2 * (p - 1), 2 * n * f, n * f),
        ("bcast", "binomial"): (lg, n * lg, 0),
        ("bcast", "scatter_allgather"): (lg + p - 1, 2 * n * f, 0),
        ("reduce", "binomial"): (lg, n * lg, n * lg),
        ("allgather", "recursive_doubling"): (lg, n * f, 0),
        ("allgather", "bruck"): (lg, n * f, 0),
        ("allgather", "ring"): (p - 1, n * f, 0),
        ("reduce_scatter", "recursive_halving"): (lg, n * f, n * f),
        ("reduce_scatter", "ring"): (p - 1, n * f, n * f),
        ("alltoall", "pairwise"): (p - 1, n * f, 0),
        ("barrier", "dissemination"): (lg, 0, 0),
    }[(collective, algorithm)]


ALL = [("allreduce", "recursive_doubling"), ("allreduce", "rabenseifner"), ("allreduce", "ring"),
       ("bcast", "binomial"), ("bcast", "scatter_allgather"), ("reduce", "binomial"),
       ("allgather", "recursive_doubling"), ("allgather", "bruck"), ("allgather", "ring"),
       ("reduce_scatter", "recursive_halving"), ("reduce_scatter", "ring"), ("alltoall", "pairwise"),
       ("barrier", "dissemination")]


@pytest.mark.points(1.5)
@pytest.mark.parametrize("p", [2, 4, 8, 64])
def test_formulas_at_powers_of_two(p, rng):
    n = float(rng.integers(1, 2**26))
    for collective, algorithm in ALL:
        got = terms(collective, algorithm, n, p)
        want = literature(collective, algorithm, n, p)
        assert np.allclose(got, want, rtol=1e-12), f"{collective} {algorithm} p={p} n={n}: {got} != {want}"


@pytest.mark.points(0.5)
@pytest.mark.parametrize("p", [3, 5, 6, 12])
def test_fold_adds_two_messages_and_the_vector_out_and_back(p, rng):
    """Allreduce by recursive doubling / Rabenseifner on p = p' + rem ranks: the p'-rank
    algorithm plus 2α + 2nβ + nγ (fold.py)."""
    n = float(rng.integers(1, 2**24))
    p2 = 1 << (p.bit_length() - 1)
    for algorithm in ("recursive_doubling", "rabenseifner"):
        base = np.array(terms("allreduce", algorithm, n, p2))
        assert np.allclose(terms("allreduce", algorithm, n, p), base + [2, 2 * n, n], rtol=1e-12), algorithm
    # ring and Bruck need no fold: the formulas hold for any p
    assert np.allclose(terms("allreduce", "ring", n, p), literature("allreduce", "ring", n, p))
    assert terms("allgather", "bruck", n, p)[0] == math.ceil(math.log2(p))


@pytest.mark.points(1)
@settings(max_examples=60, deadline=None)
@given(nbytes=st.integers(0, 2**28), p=st.integers(2, 64),
       alpha=st.floats(1e-8, 1e-3), beta=st.floats(1e-12, 1e-8), gamma=st.floats(1e-12, 1e-8))
def test_auto_picks_the_smallest_prediction(nbytes, p, alpha, beta, gamma):
    params = CostParams(alpha, beta, gamma)
    best = min(predict("allreduce", a, nbytes, p, params) for a in costmodel.ALLREDUCE_ALGORITHMS)
    chosen = choose_allreduce(nbytes, p, params)
    assert predict("allreduce", chosen, nbytes, p, params) == best


@pytest.mark.points(0.5)
def test_auto_latency_and_bandwidth_regimes():
    latency_only, bandwidth_only = CostParams(1e-5, 0.0, 0.0), CostParams(0.0, 1e-9, 1e-9)
    assert choose_allreduce(8, 16, latency_only) == "recursive_doubling"
    assert choose_allreduce(2**26, 16, bandwidth_only) == "rabenseifner"  # ties ring in β, fewer α
    assert choose_allreduce(2**26, 6, bandwidth_only) == "ring"  # no fold to pay for


@pytest.mark.points(0.5)
@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(1e-7, 1e-4), beta=st.floats(1e-11, 1e-8))
def test_calibration_fit_recovers_a_line(alpha, beta):
    sizes = [8, 1024, 65536, 2**20, 2**23]
    seconds = [alpha + n * beta for n in sizes]
    a, b = costmodel.fit_alpha_beta(sizes, seconds)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(beta, rel=1e-6)
