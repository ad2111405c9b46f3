"""Every matmul variant against a float64 numpy reference: random and adversarial shapes,
both dtypes, transposed and strided views, the out= parameter, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_labs.common.tolerance import poison_like
from mlsys_labs.matmul import (BlockConfig, matmul_blocked, matmul_loop_order, matmul_naive, matmul_packed,
                               matmul_threaded)

from matmul_checks import assert_matmul_close, random_matrix

# Small block sizes so that tiny shapes cross every block edge (MC, KC, NC and MR/NR).
SMALL = BlockConfig(mc=8, kc=16, nc=12, mr=4, nr=4)
SMALL_2X8 = BlockConfig(mc=6, kc=8, nc=20, mr=2, nr=8)

VARIANTS = {
    "naive": matmul_naive,
    "loop_order": matmul_loop_order,
    "blocked": lambda a, b, out=None: matmul_blocked(a, b, out=out, tiles=(5, 7, 6)),
    "blocked_default": matmul_blocked,
    "packed": lambda a, b, out=None: matmul_packed(a, b, out=out, config=SMALL),
    "packed_2x8": lambda a, b, out=None: matmul_packed(a, b, out=out, config=SMALL_2X8),
    "packed_default": matmul_packed,
    "threaded": lambda a, b, out=None: matmul_threaded(a, b, out=out, config=SMALL, threads=2),
    "threaded_1": lambda a, b, out=None: matmul_threaded(a, b, out=out, config=SMALL, threads=1),
}
DTYPES = [np.float32, np.float64]

ADVERSARIAL = [
    (1, 1, 1), (1, 13, 1), (1, 1, 9), (9, 1, 1), (7, 1, 11),      # vectors, k = 1, outer product
    (1, 23, 17), (19, 23, 1),                                      # 1 x n and n x 1 results
    (8, 16, 12), (9, 17, 13), (7, 15, 11), (4, 4, 4), (5, 33, 3),  # block multiples and +-1
    (3, 0, 4), (0, 5, 3), (4, 5, 0),                               # empty: C = zeros / empty
]


@pytest.mark.points(3)
@pytest.mark.parametrize("name", list(VARIANTS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 30), k=st.integers(1, 40), n=st.integers(1, 30),
       dtype=st.sampled_from(DTYPES), salt=st.integers(0, 2**16))
def test_random_shapes_match_numpy(name, m, k, n, dtype, salt, seed):
    rng = np.random.default_rng([seed, salt])
    a, b = random_matrix(rng, (m, k), dtype), random_matrix(rng, (k, n), dtype)
    c = VARIANTS[name](a, b)
    assert_matmul_close(c, a, b, what=f"{name} {m}x{k} @ {k}x{n} {np.dtype(dtype).name}")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_adversarial_shapes(name, dtype, rng):
    for m, k, n in ADVERSARIAL:
        a, b = random_matrix(rng, (m, k), dtype), random_matrix(rng, (k, n), dtype)
        out = poison_like(np.empty((m, n), dtype=dtype))
        c = VARIANTS[name](a, b, out=out)
        assert c is out, f"{name}: out= was not returned"
        assert_matmul_close(c, a, b, what=f"{name} {m}x{k} @ {k}x{n}")


@pytest.mark.points(2)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_transposed_and_strided_views(name, rng):
    """A^T and B^T given as views (F-order), and every-other-row slices (arbitrary strides)."""
    for dtype in DTYPES:
        m, k, n = 13, 21, 10
        at = random_matrix(rng, (k, m), dtype)     # a = at.T, a transposed view
        bt = random_matrix(rng, (n, k), dtype)
        assert_matmul_close(VARIANTS[name](at.T, bt.T), at.T, bt.T, what=f"{name} transposed views")
        big = random_matrix(rng, (2 * m, 2 * k), dtype)
        a = big[::2, 1::2]                          # neither C- nor F-contiguous
        b = random_matrix(rng, (k, n), dtype)
        assert_matmul_close(VARIANTS[name](a, b), a, b, what=f"{name} strided view")
        assert_matmul_close(VARIANTS[name](at.T, b), at.T, b, what=f"{name} A transposed")


@pytest.mark.points(1)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_out_parameter(name, rng):
    """out= is written and returned, also when it is a non-contiguous view or one of the inputs."""
    for dtype in DTYPES:
        a, b = random_matrix(rng, (6, 9), dtype), random_matrix(rng, (9, 5), dtype)
        out = poison_like(np.empty((6, 5), dtype=dtype))
        assert VARIANTS[name](a, b, out=out) is out
        assert_matmul_close(out, a, b, what=f"{name} out=")
        backing = poison_like(np.empty((5, 6), dtype=dtype))
        out_t = backing.T                           # F-ordered view
        assert VARIANTS[name](a, b, out=out_t) is out_t
        assert_matmul_close(out_t, a, b, what=f"{name} out= transposed view")
        sq = random_matrix(rng, (7, 7), dtype)      # out= aliasing an input, as in a = a @ b
        sq_copy, b7 = sq.copy(), random_matrix(rng, (7, 7), dtype)
        assert VARIANTS[name](sq, b7, out=sq) is sq
        assert_matmul_close(sq, sq_copy, b7, what=f"{name} out= is a")


@pytest.mark.points(1)
@pytest.mark.parametrize("name", ["naive", "loop_order", "blocked_default", "packed_default", "threaded"])
def test_clear_errors(name, rng):
    """Wrong calls raise before any kernel runs; a right one computes."""
    f = VARIANTS[name]
    a32 = random_matrix(rng, (3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        f(a32, random_matrix(rng, (5, 2), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        f(a32.astype(np.int64), random_matrix(rng, (4, 2), np.float32).astype(np.int64))
    with pytest.raises(TypeError, match="different dtypes"):
        f(a32, random_matrix(rng, (4, 2), np.float64))
    with pytest.raises(ValueError, match="2-D"):
        f(a32[0], random_matrix(rng, (4, 2), np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        f(a32, random_matrix(rng, (4, 2), np.float32), out=np.empty((2, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        f(a32, random_matrix(rng, (4, 2), np.float32), out=np.empty((3, 2), np.float64))
    b32 = random_matrix(rng, (4, 2), np.float32)     # and the valid call next to them works
    assert_matmul_close(f(a32, b32), a32, b32, what=f"{name} after the error cases")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_and_threaded_default_blocks_cross_kc(dtype, rng):
    """Default block sizes with k > KC = 1024, so loop 4 runs twice and C accumulates, and m > MC."""
    a, b = random_matrix(rng, (101, 1030), dtype), random_matrix(rng, (1030, 29), dtype)
    assert_matmul_close(matmul_packed(a, b), a, b, what="packed default blocks")
    assert_matmul_close(matmul_threaded(a, b, threads=2), a, b, what="threaded default blocks")


@pytest.mark.hidden
@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_config_in_the_search_space_is_correct(dtype, rng):
    """Each micro-kernel shape and several block sizes on a rectangular problem, also threaded."""
    a, b = random_matrix(rng, (45, 70), dtype), random_matrix(rng, (70, 51), dtype)
    for cfg in [BlockConfig(16, 32, 24, 4, 4), BlockConfig(10, 64, 16, 2, 8), BlockConfig(3, 5, 7, 2, 8),
                BlockConfig(100, 100, 100, 4, 4)]:
        assert_matmul_close(matmul_packed(a, b, config=cfg), a, b, what=f"packed {cfg}")
        assert_matmul_close(matmul_threaded(a, b, config=cfg, threads=2), a, b, what=f"threaded {cfg}")


@pytest.mark.hidden
@pytest.mark.points(1)
def test_threaded_with_fewer_rows_than_threads(rng):
    a, b = random_matrix(rng, (1, 40), np.float64), random_matrix(rng, (40, 33), np.float64)
    assert_matmul_close(matmul_threaded(a, b, threads=2), a, b, what="threaded m=1")
