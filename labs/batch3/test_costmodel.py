"""Graded: the α-β-γ cost model — its formulas, the fold for non-powers of two, the
``auto`` choice, and the calibration fit.  No MPI needed (the MPI test
``test_messages_and_bytes_match_the_cost_formulas`` checks the implementation obeys them)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.collectives import ALGORITHMS, CostParams, choose_allreduce, fit_alpha_beta, predict, terms

pytestmark = pytest.mark.step(6)


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


def readme_table(collective: str, algorithm: str, n: float, p: int) -> tuple[float, float, float]:
    """The README's table for any p: ⌈lg p⌉ for the trees, Bruck and the barrier; the fold
    (p' = 2^⌊lg p⌋, rem > 0) adds 2 latencies, 2n bytes and n reduced to an allreduce, and
    2 latencies, n + n/p bytes (and n reduced) to a reduce-scatter or allgather."""
    if p == 1:
        return (0.0, 0.0, 0.0)
    lgc = math.ceil(math.log2(p))
    p2 = 2 ** math.floor(math.log2(p))
    lg, fold = math.log2(p2), float(p != p2)
    f, f2 = (p - 1) / p, (p2 - 1) / p2
    return {
        ("barrier", "dissemination"): (lgc, 0, 0),
        ("bcast", "binomial"): (lgc, n * lgc, 0),
        ("bcast", "scatter_allgather"): (lgc + p - 1, 2 * n * f, 0),
        ("reduce", "binomial"): (lgc, n * lgc, n * lgc),
        ("allreduce", "recursive_doubling"): (lg + 2 * fold, n * lg + 2 * n * fold, n * lg + n * fold),
        ("allreduce", "rabenseifner"): (2 * lg + 2 * fold, 2 * n * f2 + 2 * n * fold, n * f2 + n * fold),
        ("allreduce", "ring"): (2 * (p - 1), 2 * n * f, n * f),
        ("reduce_scatter", "ring"): (p - 1, n * f, n * f),
        ("reduce_scatter", "recursive_halving"): (lg + 2 * fold, n * f2 + (n + n / p) * fold, n * f2 + n * fold),
        ("allgather", "ring"): (p - 1, n * f, 0),
        ("allgather", "recursive_doubling"): (lg + 2 * fold, n * f2 + (n + n / p) * fold, 0),
        ("allgather", "bruck"): (lgc, n * f, 0),
        ("alltoall", "pairwise"): (p - 1, n * f, 0),
    }[(collective, algorithm)]


@pytest.mark.points(0.25)
@pytest.mark.parametrize("collective,algorithm", ALL, ids=[f"{c}-{a}" for c, a in ALL])
def test_formulas_at_every_p(collective, algorithm, rng):
    """Each algorithm's three terms, value by value, at p = 1 and at powers and non-powers
    of two (3, 5, 6, 7: one, two and three folded pairs; 12, 13), n not divisible by p."""
    for p in (1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 64):
        n = float(p * int(rng.integers(1, 2**20)) + 1)
        got, want = terms(collective, algorithm, n, p), readme_table(collective, algorithm, n, p)
        assert len(got) == 3 and np.allclose(got, want, rtol=1e-12, atol=0), (
            f"{collective} {algorithm} p={p} n={n:g}: (latencies, bytes, reduced) = {got}, the table says {want}")


@pytest.mark.points(0.25)
def test_unknown_algorithm_raises_key_error():
    for collective, algorithm in [("allreduce", "butterfly"), ("bcast", "ring"), ("gather", "binomial")]:
        with pytest.raises(KeyError):
            terms(collective, algorithm, 1024.0, 4)


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
       alpha=st.floats(1e-8, 1e-3), beta=st.floats(1e-12, 1e-8), gamma=st.floats(1e-12, 1e-8),
       rendezvous=st.one_of(st.none(), st.tuples(st.floats(1e-8, 1e-3), st.floats(1e-12, 1e-8),
                                                 st.integers(1, 2**24))))
def test_auto_picks_the_smallest_prediction(nbytes, p, alpha, beta, gamma, rendezvous):
    """With one line for every message size, or an eager and a rendezvous line."""
    params = CostParams(alpha, beta, gamma) if rendezvous is None else CostParams(alpha, beta, gamma, *rendezvous)
    best = min(predict("allreduce", a, nbytes, p, params) for a in ALGORITHMS["allreduce"])
    chosen = choose_allreduce(nbytes, p, params)
    assert predict("allreduce", chosen, nbytes, p, params) == best


@pytest.mark.points(0.25)
@pytest.mark.parametrize("p", [2, 3, 6, 16])
def test_predict_charges_each_protocol_its_line(p, rng):
    """An eager line below ``rendezvous_from``, a rendezvous line from it on, chosen by the
    algorithm's message size (bytes sent / latencies) — computed here from the README's table."""
    params = CostParams(alpha=2e-6, beta=4e-10, gamma=1e-10, alpha_rndv=9e-6, beta_rndv=2e-10, rendezvous_from=8192)
    for collective, algorithm in ALL:
        for n in (64.0, 4096.0 * p, float(rng.integers(2**16, 2**26))):
            lat, sent, reduced = readme_table(collective, algorithm, n, p)
            rndv = lat > 0 and sent / lat >= 8192
            alpha, beta = (9e-6, 2e-10) if rndv else (2e-6, 4e-10)
            want = lat * alpha + sent * beta + reduced * 1e-10
            got = predict(collective, algorithm, n, p, params)
            assert got == pytest.approx(want, rel=1e-12), (
                f"{collective} {algorithm} p={p} n={n:g}: {got} s, the table and the "
                f"{'rendezvous' if rndv else 'eager'} line give {want} s")


@pytest.mark.points(0.5)
def test_auto_latency_and_bandwidth_regimes():
    latency_only, bandwidth_only = CostParams(1e-5, 0.0, 0.0), CostParams(0.0, 1e-9, 1e-9)
    assert choose_allreduce(8, 16, latency_only) == "recursive_doubling"
    assert choose_allreduce(2**26, 16, bandwidth_only) == "rabenseifner"  # ties ring in β, fewer α
    assert choose_allreduce(2**26, 6, bandwidth_only) == "ring"  # no fold to pay for


@pytest.mark.points(0.5)
@pytest.mark.parametrize("nbytes,p,params", [
    (4096, 1, CostParams(1e-5, 1e-9, 1e-9)),   # one rank: every prediction is 0
    (4096, 2, CostParams(0.0, 1e-9, 0.0)),     # p = 2, β only: all three send n bytes
    (4096, 2, CostParams(0.0, 1e-9, 1e-9)),    # p = 2, no α: Rabenseifner and ring tie
    (2**20, 4, CostParams(0.0, 0.0, 0.0)),     # a free network: all tie
], ids=["p1", "p2-beta-only", "p2-no-alpha", "all-zero"])
def test_auto_breaks_ties_in_the_documented_order(nbytes, p, params):
    """Planted ties: the earliest of ALLREDUCE_ALGORITHMS among the smallest predictions."""
    preds = [predict("allreduce", a, nbytes, p, params) for a in ALGORITHMS["allreduce"]]
    want = ALGORITHMS["allreduce"][preds.index(min(preds))]
    assert preds.count(min(preds)) >= 2, f"the case should plant a tie: {preds}"
    assert choose_allreduce(nbytes, p, params) == want, f"predictions {dict(zip(ALGORITHMS['allreduce'], preds))}"


SIZES = [8, 1024, 65536, 2**20, 2**23]


def relative_least_squares(sizes, seconds) -> tuple[float, float]:
    """The fit the docstring specifies — minimise Σ ((α + nβ − t)/t)² — computed another
    way: numpy's weighted polynomial fit (weights 1/t on the residuals)."""
    beta, alpha = np.polyfit(np.asarray(sizes, float), np.asarray(seconds, float), 1,
                             w=1.0 / np.asarray(seconds, float))
    return float(alpha), float(beta)


@pytest.mark.points(0.5)
@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(1e-7, 1e-4), beta=st.floats(1e-11, 1e-8))
def test_calibration_fit_recovers_a_line(alpha, beta):
    seconds = [alpha + n * beta for n in SIZES]
    a, b = fit_alpha_beta(SIZES, seconds)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(beta, rel=1e-6)


@pytest.mark.points(0.5)
@pytest.mark.parametrize("noise", [(1.3, 0.8, 1.2, 0.7, 1.1), (0.7, 1.25, 0.85, 1.3, 0.9)], ids=["a", "b"])
@pytest.mark.parametrize("alpha,beta", [(2e-6, 4e-10), (4e-5, 1e-9)])
def test_calibration_fit_weights_relative_errors(alpha, beta, noise):
    """Noisy timings (±30%, planted): the fit is the least squares of the *relative*
    errors, not of the absolute ones (which ignores the small sizes, so α comes out wrong)."""
    seconds = [(alpha + n * beta) * e for n, e in zip(SIZES, noise)]
    want = relative_least_squares(SIZES, seconds)
    plain = np.polyfit(SIZES, seconds, 1)[::-1]  # unweighted: what a wrong method gives
    assert abs(plain[0] - want[0]) > 0.1 * abs(want[0]), "the planted noise should tell the methods apart"
    got = fit_alpha_beta(SIZES, seconds)
    assert np.allclose(got, want, rtol=1e-8, atol=0), f"fit {got}, relative least squares gives {want}"


@pytest.mark.points(0.5)
def test_calibration_fit_clips_negative_terms_to_zero():
    """A fit with a negative α (times proportional to n, the small ones measured fast) or a
    negative β (times falling with size: noise) reports that term as 0, the other as fitted."""
    sizes = [1024, 65536, 2**20, 2**23]
    falling_alpha = [1e-9 * n * e for n, e in zip(sizes, (0.5, 1.0, 1.0, 1.0))]
    a_ref, b_ref = relative_least_squares(sizes, falling_alpha)
    assert a_ref < 0 < b_ref
    a, b = fit_alpha_beta(sizes, falling_alpha)
    assert a == 0.0 and b == pytest.approx(b_ref, rel=1e-8), (a, b, (a_ref, b_ref))
    falling_beta = [1e-5 * (1.0 - 1e-8 * n) for n in sizes]
    a_ref, b_ref = relative_least_squares(sizes, falling_beta)
    assert b_ref < 0 < a_ref
    a, b = fit_alpha_beta(sizes, falling_beta)
    assert b == 0.0 and a == pytest.approx(a_ref, rel=1e-8), (a, b, (a_ref, b_ref))
