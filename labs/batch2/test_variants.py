"""Every matmul variant against a float64 numpy reference: random and adversarial shapes,
both dtypes, transposed and strided views, the out= parameter, and clear errors; outputs
and inputs guarded by canaries, so a write past C's edge (or a read past A's or B's) shows.

Steps: each variant's tests belong to the README step that writes it (naive 1, loop_order 2,
blocked 3, packed 4, threaded 5)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_labs.common.tolerance import poison_like
from mlsys_labs.matmul import (BlockConfig, gemm_packed, gemm_threaded, macro_kernel, matmul_blocked,
                               matmul_loop_order, matmul_naive, matmul_packed, matmul_threaded)

from matmul_checks import Guarded, assert_bits_equal, assert_matmul_close, guarded_input, random_matrix

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
STEP = {"naive": 1, "loop_order": 2, "blocked": 3, "blocked_default": 3, "packed": 4, "packed_2x8": 4,
        "packed_default": 4, "threaded": 5, "threaded_1": 5}


def by_step(names):
    """Each variant's name as a parameter carrying its README step."""
    return [pytest.param(name, marks=pytest.mark.step(STEP[name]), id=name) for name in names]


ADVERSARIAL = [
    (1, 1, 1), (1, 13, 1), (1, 1, 9), (9, 1, 1), (7, 1, 11),      # vectors, k = 1, outer product
    (1, 23, 17), (19, 23, 1),                                      # 1 x n and n x 1 results
    (8, 16, 12), (9, 17, 13), (7, 15, 11), (4, 4, 4), (5, 33, 3),  # block multiples and +-1
    (3, 0, 4), (0, 5, 3), (4, 5, 0),                               # empty: C = zeros / empty
    (17, 33, 25), (13, 9, 29), (29, 5, 6), (2, 3, 37),             # primes past every small block, twice
    (65, 3, 7),                                                    # past the default TB_M = 64
]


@pytest.mark.points(3)
@pytest.mark.parametrize("name", by_step(VARIANTS))
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
@pytest.mark.parametrize("name", by_step(VARIANTS))
def test_adversarial_shapes(name, dtype, rng):
    """Edge sizes (1, k = 1, empty, primes, block sizes +-1) into a NaN-poisoned out= that
    sits between canaries; A and B sit between NaNs, so reading past them poisons C."""
    for m, k, n in ADVERSARIAL:
        a = guarded_input(random_matrix(rng, (m, k), dtype))
        b = guarded_input(random_matrix(rng, (k, n), dtype))
        out = Guarded((m, n), dtype)
        c = VARIANTS[name](a, b, out=out.array)
        what = f"{name} {m}x{k} @ {k}x{n} {np.dtype(dtype).name}"
        assert c is out.array, f"{name}: out= was not returned"
        assert_matmul_close(c, a, b, what=what)
        out.assert_canaries_intact(what)


@pytest.mark.points(2)
@pytest.mark.parametrize("name", by_step(VARIANTS))
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
@pytest.mark.parametrize("name", by_step(VARIANTS))
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
@pytest.mark.parametrize("name", by_step(["naive", "loop_order", "blocked_default", "packed_default", "threaded"]))
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


def _default_blocks_cross_kc(f, dtype, rng, what):
    """Default block sizes with k > KC = 1024, so loop 4 runs twice and C accumulates, and
    m = 101 > MC = 96 (an edge block of 5 rows: not a multiple of MR either)."""
    a = guarded_input(random_matrix(rng, (101, 1030), dtype))
    b = guarded_input(random_matrix(rng, (1030, 29), dtype))
    out = Guarded((101, 29), dtype)
    assert f(a, b, out=out.array) is out.array
    assert_matmul_close(out.array, a, b, what=what)
    out.assert_canaries_intact(what)


@pytest.mark.points(1)
@pytest.mark.step(4)
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_default_blocks_cross_kc(dtype, rng):
    _default_blocks_cross_kc(matmul_packed, dtype, rng, "packed default blocks")


@pytest.mark.points(1)
@pytest.mark.step(5)
@pytest.mark.parametrize("dtype", DTYPES)
def test_threaded_default_blocks_cross_kc(dtype, rng):
    _default_blocks_cross_kc(lambda a, b, out: matmul_threaded(a, b, out=out, threads=2), dtype, rng,
                             "threaded default blocks")


def _packed_like(x, mult, axis, fill, dtype):
    """numpy packing (the layout of pack_panel_a/b) with ``fill`` in the padding."""
    size = x.shape[axis]
    padded = -(-size // mult) * mult
    if axis == 0:      # A block (mc, kc) -> slivers of mult rows, each row contiguous
        block = np.full((padded, x.shape[1]), fill, dtype=dtype)
        block[:size] = x
        return block.reshape(-1)
    panel = np.full((x.shape[0], padded), fill, dtype=dtype)   # B panel (kc, nc) -> columns contiguous
    panel[:, :size] = x
    return np.ascontiguousarray(panel.T).reshape(-1)


@pytest.mark.points(2)
@pytest.mark.step(4)
@pytest.mark.parametrize("mr, nr", [(4, 4), (2, 8)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_macro_kernel_adds_into_its_block_only(mr, nr, dtype, rng):
    """C[ic:ic+mc, jc:jc+nc] += A~ B~ with edge tiles in both directions; the packed padding
    holds NaN, so an edge tile written past the block's edge poisons a canary of C."""
    for mc, nc, kc, ic, jc in [(7, 11, 5, 2, 3), (1, 1, 1, 0, 0), (4 * mr + 1, 2 * nr - 1, 9, 1, 0),
                               (mr, nr, 3, 3, 2), (mr - 1, nr + 1, 2, 0, 5)]:
        a, b = random_matrix(rng, (mc, kc), dtype), random_matrix(rng, (kc, nc), dtype)
        c = np.full((ic + mc + 3, jc + nc + 4), -0.0, dtype=dtype)     # the block and a -0.0 margin around it
        c[ic:ic + mc, jc:jc + nc] = random_matrix(rng, (mc, nc), dtype)
        c_before = c.copy()
        ap, bp = _packed_like(a, mr, 0, np.nan, dtype), _packed_like(b, nr, 1, np.nan, dtype)
        tile = np.full((mr, nr), np.nan, dtype=dtype)
        macro_kernel(ap, bp, c, ic, jc, mc, nc, kc, mr, nr, tile)
        what = f"macro_kernel mr x nr={mr}x{nr} block {mc}x{nc} at ({ic}, {jc}), kc={kc}"
        inside = np.zeros(c.shape, dtype=bool)
        inside[ic:ic + mc, jc:jc + nc] = True
        assert_bits_equal(np.where(inside, 0, c), np.where(inside, 0, c_before), what + ": outside the block")
        ref = c_before[ic:ic + mc, jc:jc + nc].astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
        bound = (kc + 3) * np.finfo(dtype).eps * (np.abs(c_before[ic:ic + mc, jc:jc + nc])
                                                  + np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
        err = np.abs(c[ic:ic + mc, jc:jc + nc] - ref)
        assert np.all(err <= bound), (f"{what}: C[block] is not C_before[block] + A B; worst |error| "
                                      f"{np.nanmax(err) if not np.isnan(err).all() else np.nan:.3g}")


@pytest.mark.points(2)
@pytest.mark.step(4)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("mr, nr", [(4, 4), (2, 8)])
def test_gemm_packed_overwrites_its_block_only(trans_a, trans_b, mr, nr, rng):
    """gemm_packed on C[i_begin:i_end, j_begin:j_end]: that block (NaN before the call) is
    A[i_begin:i_end] @ B[:, j_begin:j_end]; every other element (-0.0, which any store or
    addition changes) keeps its bits."""
    dtype = np.float64
    m, k, n = 23, 19, 26
    a, b = random_matrix(rng, (m, k), dtype), random_matrix(rng, (k, n), dtype)
    a_arg = np.ascontiguousarray(a.T) if trans_a else a
    b_arg = np.ascontiguousarray(b.T) if trans_b else b
    for (i0, i1, j0, j1), (mc, kc, nc) in [((3, 18, 5, 22), (6, 7, 9)), ((0, 23, 9, 10), (5, 19, 4)),
                                           ((22, 23, 0, 26), (8, 4, 11)), ((7, 16, 0, 13), (3, 5, 13))]:
        c = np.full((m, n), -0.0, dtype=dtype)
        c[i0:i1, j0:j1] = np.nan
        gemm_packed(a_arg, trans_a, b_arg, trans_b, c, i0, i1, j0, j1, mc, kc, nc, mr, nr)
        what = f"gemm_packed block [{i0}:{i1}, {j0}:{j1}] MC, KC, NC = {mc}, {kc}, {nc}"
        block = np.zeros((m, n), dtype=bool)
        block[i0:i1, j0:j1] = True
        assert_bits_equal(np.where(block, -0.0, c), np.full((m, n), -0.0), what + ": outside the block")
        assert_matmul_close(c[i0:i1, j0:j1], a[i0:i1], b[:, j0:j1], what=what)


@pytest.mark.points(1)
@pytest.mark.step(5)
@pytest.mark.parametrize("n_parts", [2, 3, 5])
@pytest.mark.parametrize("shape", [(6, 5, 29), (31, 4, 9), (3, 7, 2), (13, 6, 13)], ids=str)
def test_gemm_threaded_parts(n_parts, shape, rng):
    """Any number of parts (also more than rows or columns, and not a power of two), wide,
    tall and square C: every element written once, nothing outside C."""
    m, k, n = shape
    a = guarded_input(random_matrix(rng, (m, k), np.float64))
    b = guarded_input(random_matrix(rng, (k, n), np.float64))
    out = Guarded((m, n), np.float64)
    gemm_threaded(a, False, b, False, out.array, n_parts, 5, 3, 6, 4, 4)
    what = f"gemm_threaded {m}x{k} @ {k}x{n} in {n_parts} parts"
    assert_matmul_close(out.array, a, b, what=what)
    out.assert_canaries_intact(what)


@pytest.mark.hidden
@pytest.mark.points(2)
@pytest.mark.step(5)
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
@pytest.mark.step(5)
def test_threaded_with_fewer_rows_than_threads(rng):
    a, b = random_matrix(rng, (1, 40), np.float64), random_matrix(rng, (40, 33), np.float64)
    assert_matmul_close(matmul_threaded(a, b, threads=2), a, b, what="threaded m=1")
