"""The pieces of the packed kernel on their own (README step 4): packing A and B panels,
the micro-kernels."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_labs.matmul import (MICRO_KERNEL_SHAPES, BlockConfig, micro_kernel, micro_kernel_2x8, micro_kernel_4x4,
                               pack_panel_a, pack_panel_b)

from matmul_checks import assert_matmul_close, random_matrix

pytestmark = pytest.mark.step(4)


def reference_pack_a(A, ic, pc, mc, kc, mr):
    """numpy: the block, zero-padded to whole MR-row slivers, each sliver row-major."""
    block = np.zeros((-(-mc // mr) * mr, kc), dtype=A.dtype)
    block[:mc] = A[ic:ic + mc, pc:pc + kc]
    return block.reshape(-1)          # sliver s, row r, column p at (s*mr + r)*kc + p


def reference_pack_b(B, pc, jc, kc, nc, nr):
    """numpy: the panel, zero-padded to whole NR-column slivers, each sliver transposed."""
    panel = np.zeros((kc, -(-nc // nr) * nr), dtype=B.dtype)
    panel[:, :nc] = B[pc:pc + kc, jc:jc + nc]
    return panel.T.reshape(-1)        # sliver s, column c, row p at (s*nr + c)*kc + p


settings_ = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
blocks = st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(0, 6), st.integers(0, 6),
                   st.sampled_from([2, 4, 8]), st.sampled_from([np.float32, np.float64]), st.booleans(),
                   st.integers(0, 2**16))


@pytest.mark.points(2)
@settings_
@given(blk=blocks)
def test_pack_panel_a(blk, seed):
    mc, kc, ic, pc, mr, dtype, transposed, salt = blk
    rng = np.random.default_rng([seed, salt])
    A = random_matrix(rng, (ic + mc + 2, pc + kc + 3), dtype)
    ap = np.full(-(-mc // mr) * mr * kc, np.nan, dtype=dtype)      # poison: padding must be written
    src = np.ascontiguousarray(A.T) if transposed else A
    pack_panel_a(src, transposed, ic, pc, mc, kc, mr, ap)
    np.testing.assert_array_equal(ap, reference_pack_a(A, ic, pc, mc, kc, mr),
                                  err_msg=f"pack_panel_a mc={mc} kc={kc} ic={ic} pc={pc} mr={mr} trans={transposed}")


@pytest.mark.points(2)
@settings_
@given(blk=blocks)
def test_pack_panel_b(blk, seed):
    nc, kc, jc, pc, nr, dtype, transposed, salt = blk
    rng = np.random.default_rng([seed, salt])
    B = random_matrix(rng, (pc + kc + 1, jc + nc + 2), dtype)
    bp = np.full(-(-nc // nr) * nr * kc, np.nan, dtype=dtype)
    src = np.ascontiguousarray(B.T) if transposed else B
    pack_panel_b(src, transposed, pc, jc, kc, nc, nr, bp)
    np.testing.assert_array_equal(bp, reference_pack_b(B, pc, jc, kc, nc, nr),
                                  err_msg=f"pack_panel_b nc={nc} kc={kc} jc={jc} pc={pc} nr={nr} trans={transposed}")


# deterministic edge blocks: one row/column, fewer than MR/NR, MR/NR +- 1, offsets into A and B
EDGE_BLOCKS = [(1, 1, 0, 0, 4), (3, 5, 2, 1, 4), (5, 1, 0, 3, 4), (9, 2, 1, 0, 8), (8, 3, 4, 2, 8),
               (7, 4, 3, 5, 2), (2, 6, 0, 0, 4), (13, 3, 2, 2, 4)]


@pytest.mark.points(2)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_edge_blocks(transposed, dtype, rng):
    """Blocks of every edge size, into a NaN-poisoned buffer with NaN canaries after it."""
    for size, kc, off, pc, mult in EDGE_BLOCKS:
        A = random_matrix(rng, (off + size + 2, pc + kc + 3), dtype)
        B = random_matrix(rng, (pc + kc + 1, off + size + 2), dtype)
        length = -(-size // mult) * mult * kc
        for name, pack, src, ref in (
                ("pack_panel_a", pack_panel_a, A, reference_pack_a(A, off, pc, size, kc, mult)),
                ("pack_panel_b", pack_panel_b, B, reference_pack_b(B, pc, off, kc, size, mult))):
            buf = np.full(length + 11, np.nan, dtype=dtype)
            arg = np.ascontiguousarray(src.T) if transposed else src
            if name == "pack_panel_a":
                pack(arg, transposed, off, pc, size, kc, mult, buf[:length])
            else:
                pack(arg, transposed, pc, off, kc, size, mult, buf[:length])
            what = f"{name} size={size} kc={kc} offset={off} pc={pc} {'mr' if name[-1] == 'a' else 'nr'}={mult} trans={transposed}"
            np.testing.assert_array_equal(buf[:length], ref, err_msg=what)
            assert np.isnan(buf[length:]).all(), f"{what}: wrote past the end of the packed buffer"


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kc", [1, 7, 64, 300])
def test_micro_kernel_4x4(kc, dtype, rng):
    a = random_matrix(rng, (4, kc), dtype)          # A~ sliver: 4 rows of kc
    bt = random_matrix(rng, (4, kc), dtype)         # B~ sliver: 4 columns of B, stored as rows
    tile = np.full((4, 4), np.nan, dtype=dtype)
    micro_kernel_4x4(kc, a.reshape(-1), bt.reshape(-1), tile)
    assert_matmul_close(tile, a, np.ascontiguousarray(bt.T), what=f"micro_kernel_4x4 kc={kc}")


@pytest.mark.hidden
@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_micro_kernel_2x8(dtype, rng):
    kc = 33
    a, bt = random_matrix(rng, (2, kc), dtype), random_matrix(rng, (8, kc), dtype)
    tile = np.full((2, 8), np.nan, dtype=dtype)
    micro_kernel_2x8(kc, a.reshape(-1), bt.reshape(-1), tile)
    assert_matmul_close(tile, a, np.ascontiguousarray(bt.T), what="micro_kernel_2x8")


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", MICRO_KERNEL_SHAPES)
def test_every_micro_kernel_shape_has_its_kernel(shape, rng):
    """``micro_kernel`` picks the kernel of the tile's shape for every shape the table lists
    (and the autotuner searches); a shape without a kernel is refused by BlockConfig."""
    mr, nr = shape
    kc = 19
    a, bt = random_matrix(rng, (mr, kc), np.float64), random_matrix(rng, (nr, kc), np.float64)
    tile = np.full((mr, nr), np.nan)
    micro_kernel(kc, a.reshape(-1), bt.reshape(-1), tile)
    assert_matmul_close(tile, a, np.ascontiguousarray(bt.T), what=f"micro_kernel for MR x NR = {mr} x {nr}")
    BlockConfig(mr=mr, nr=nr).validate()
    with pytest.raises(ValueError, match="no micro-kernel"):
        BlockConfig(mr=3, nr=5).validate()


def _has_avx2() -> bool:
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        return " avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.points(1)
@pytest.mark.skipif(not _has_avx2(), reason="the check reads x86-64 AVX2/AVX-512 machine code")
def test_micro_kernel_is_vectorised():
    """The k loop compiles to packed (vector) fused multiply-adds on ymm/zmm registers,
    not scalar ones: the accumulators live in vector registers."""
    import re

    import numba

    kernel = numba.njit(fastmath=True)(micro_kernel_4x4.py_func)     # a fresh copy: cached code has no asm
    kernel(16, np.ones(64, np.float32), np.ones(64, np.float32), np.zeros((4, 4), np.float32))
    asm = next(iter(kernel.inspect_asm().values()))
    packed_fma = re.findall(r"\bvfmadd\d+ps\s+[^\n]*%[yz]mm", asm)
    assert len(packed_fma) >= 16, (f"only {len(packed_fma)} packed-single FMAs on ymm/zmm registers; "
                                   "the micro-kernel's k loop did not vectorise")
