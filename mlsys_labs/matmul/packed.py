"""Step 4: the GotoBLAS/BLIS structure — five loops, packed panels, a register-blocked
micro-kernel.

Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication" (ACM TOMS 2008)
and Van Zee & van de Geijn, "BLIS" (ACM TOMS 2015), Figure 1 there.  Around a tiny
MR x NR micro-kernel, five loops carve C = A B into pieces that live at each cache level:

    for jc in 0..n step NC:            loop 5   a KC x NC panel of B   -> L3
      for pc in 0..k step KC:          loop 4   pack B[pc:, jc:] into B~ (NR-wide slivers)
        for ic in 0..m step MC:        loop 3   pack A[ic:, pc:] into A~ (MR-tall slivers) -> L2
          for jr in 0..NC step NR:     loop 2   one sliver of B~ -> L1
            for ir in 0..MC step MR:   loop 1   one sliver of A~
              micro-kernel: C[ir:ir+MR, jr:jr+NR] += A~sliver @ B~sliver   (registers)

Packing copies each block once into the exact order the micro-kernel reads it: contiguous,
on few pages (few TLB misses), and of the operands' strides (a transposed operand is just
another read order, BLAS's TRANSA/TRANSB), zero-padded to whole MR/NR slivers so the
micro-kernel never branches on edges; only the write-back into C clips to the real edge.

The micro-kernel is written in *inner-product* form over the packed panels: A~ sliver
row-major (MR rows of KC), B~ sliver transposed (NR rows of KC), MR x NR scalar
accumulators, each a reduction over k.  With ``fastmath=True`` LLVM may reassociate
the sums, vectorises the k loop, and keeps all MR*NR accumulators in vector registers
(check the machine code: numba will not show cached code, so compile a fresh copy,
``k = numba.njit(fastmath=True)(micro_kernel_4x4.py_func)``, call it once, and look for
``vfmadd231ps`` on ``%zmm`` registers in ``next(iter(k.inspect_asm().values()))``).  The
outer-product form with an ``acc = np.zeros((MR, NR))`` array spilled the accumulators
to memory here (about 6x slower); with named scalar accumulators it needs LLVM's SLP
vectoriser, which numba leaves off by default (``NUMBA_SLP_VECTORIZE=0``) — lab 2's README
(Figures) measures what that form would gain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .operands import c_or_transposed, check_operands, finish, output_buffer


@dataclass(frozen=True)
class BlockConfig:
    """Block sizes of the five loops; ``(mr, nr)`` picks the micro-kernel.

    The defaults: a long KC = 1024, because each inner-product micro-kernel call ends with
    a horizontal reduction (16 vector accumulators summed across their lanes) that a
    longer KC pays less often (measured here: the L1-resident kernel made 16, 21 and 31
    GFLOP/s at KC = 256, 512, 1024 in one run; the whole kernel at n = 960 fp32, best of 5:
    0.58 of BLAS at KC = 512 and 0.68 at KC = 1024 with MC = 96, 0.48 at KC = 256) — an A~ and a B~ sliver (4 x 1024
    float32, 16 KiB each) then just fill the 32 KiB L1; MC x KC of A~ (384 KiB float32) sits
    in the 1 MiB L2; NC x KC of B~ (4 MiB) in the 32 MiB L3.
    """

    mc: int = 96
    kc: int = 1024
    nc: int = 1024
    mr: int = 4
    nr: int = 4

    def validate(self) -> "BlockConfig":
        if (self.mr, self.nr) not in MICRO_KERNEL_SHAPES:
            raise ValueError(f"no micro-kernel for MR x NR = {self.mr} x {self.nr}; have {MICRO_KERNEL_SHAPES}")
        if min(self.mc, self.kc, self.nc) < 1:
            raise ValueError(f"block sizes must be positive: {self}")
        return self


MICRO_KERNEL_SHAPES = ((4, 4), (2, 8))
"""The MR x NR shapes :func:`micro_kernel` has code for (the autotuner searches them all)."""
DEFAULT_CONFIG = BlockConfig()


@njit(cache=True)
def pack_panel_a(a, trans_a, ic, pc, mc, kc, mr, ap):
    """Pack the block A[ic:ic+mc, pc:pc+kc] into ``ap`` as ceil(mc/mr) slivers of mr rows.

    Sliver s, row r, column p goes to ``ap[s*mr*kc + r*kc + p]`` (each row contiguous in
    k, the order the inner-product micro-kernel reads); rows past ``mc`` are zeros.  When
    ``trans_a`` is true, ``a`` holds A transposed (A[i, p] is ``a[p, i]``).
    """
    # BEGIN SOLUTION [step 4] hint: for each sliver s and row r: i = s*mr + r; copy A[ic+i, pc+p] for p < kc, or zeros when i >= mc
    n_slivers = (mc + mr - 1) // mr
    for s in range(n_slivers):
        for r in range(mr):
            i = s * mr + r
            base = (s * mr + r) * kc
            if i < mc:
                if trans_a:
                    for p in range(kc):
                        ap[base + p] = a[pc + p, ic + i]
                else:
                    for p in range(kc):
                        ap[base + p] = a[ic + i, pc + p]
            else:
                for p in range(kc):
                    ap[base + p] = 0
    # END SOLUTION


@njit(cache=True)
def pack_panel_b(b, trans_b, pc, jc, kc, nc, nr, bp):
    """Pack the panel B[pc:pc+kc, jc:jc+nc] into ``bp`` as ceil(nc/nr) slivers of nr columns.

    Sliver s, column c, row p goes to ``bp[s*nr*kc + c*kc + p]`` — the sliver stored
    transposed, each column contiguous in k; columns past ``nc`` are zeros.  When
    ``trans_b`` is true, ``b`` holds B transposed (B[p, j] is ``b[j, p]``).
    """
    # BEGIN SOLUTION [step 4] hint: mirror pack_panel_a with columns: j = s*nr + c; copy B[pc+p, jc+j] for p < kc, or zeros when j >= nc
    n_slivers = (nc + nr - 1) // nr
    for s in range(n_slivers):
        for c in range(nr):
            j = s * nr + c
            base = (s * nr + c) * kc
            if j < nc:
                if trans_b:
                    for p in range(kc):
                        bp[base + p] = b[jc + j, pc + p]
                else:
                    for p in range(kc):
                        bp[base + p] = b[pc + p, jc + j]
            else:
                for p in range(kc):
                    bp[base + p] = 0
    # END SOLUTION


@njit(cache=True)
def write_back(tile, c, i0, j0, m_edge, n_edge):
    """C[i0:i0+m_edge, j0:j0+n_edge] += tile[:m_edge, :n_edge] — the only place edges clip."""
    for i in range(m_edge):
        for j in range(n_edge):
            c[i0 + i, j0 + j] += tile[i, j]


@njit(cache=True, fastmath=True)
def micro_kernel_4x4(kc, a_sliver, b_sliver, tile):
    """tile = A~ sliver [4 x kc] @ (B~ sliver [4 x kc])^T, both slivers packed row by row.

    16 scalar accumulators s_ij, one reduction over k each; per k step 4 + 4 loads feed
    16 fused multiply-adds.  LLVM vectorises the k loop (fastmath lets it split each sum
    into vector lanes) with the 16 accumulators in vector registers.

    The slivers come in as views starting at their first element: an index like
    ``a_sliver[2 * kc + p]`` is provably non-negative, while ``ap[offset + p]`` with a
    runtime offset made numba emit a negative-index wrap-around check that blocked
    vectorisation (measured: 2 GFLOP/s instead of 64).
    """
    # BEGIN SOLUTION [step 4] hint: 16 scalar accumulators s00..s33; one k loop loading a0..a3 (rows of A~) and b0..b3 (rows of B~); then store them into tile
    zero = tile.dtype.type(0)
    s00 = s01 = s02 = s03 = zero
    s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = zero
    s30 = s31 = s32 = s33 = zero
    for p in range(kc):
        a0 = a_sliver[p]
        a1 = a_sliver[kc + p]
        a2 = a_sliver[2 * kc + p]
        a3 = a_sliver[3 * kc + p]
        b0 = b_sliver[p]
        b1 = b_sliver[kc + p]
        b2 = b_sliver[2 * kc + p]
        b3 = b_sliver[3 * kc + p]
        s00 += a0 * b0
        s01 += a0 * b1
        s02 += a0 * b2
        s03 += a0 * b3
        s10 += a1 * b0
        s11 += a1 * b1
        s12 += a1 * b2
        s13 += a1 * b3
        s20 += a2 * b0
        s21 += a2 * b1
        s22 += a2 * b2
        s23 += a2 * b3
        s30 += a3 * b0
        s31 += a3 * b1
        s32 += a3 * b2
        s33 += a3 * b3
    tile[0, 0] = s00
    tile[0, 1] = s01
    tile[0, 2] = s02
    tile[0, 3] = s03
    tile[1, 0] = s10
    tile[1, 1] = s11
    tile[1, 2] = s12
    tile[1, 3] = s13
    tile[2, 0] = s20
    tile[2, 1] = s21
    tile[2, 2] = s22
    tile[2, 3] = s23
    tile[3, 0] = s30
    tile[3, 1] = s31
    tile[3, 2] = s32
    tile[3, 3] = s33
    # END SOLUTION


@njit(cache=True, fastmath=True)
def micro_kernel_2x8(kc, a_sliver, b_sliver, tile):
    """The 2 x 8 shape of the same kernel (an alternative the autotuner may pick):
    2 + 8 loads per 16 multiply-adds instead of 4 + 4."""
    # BEGIN SOLUTION [step 4] hint: as micro_kernel_4x4 with 2 rows of A~ (a0, a1) and 8 rows of B~ (b0..b7): 16 accumulators s00..s17
    zero = tile.dtype.type(0)
    s00 = s01 = s02 = s03 = s04 = s05 = s06 = s07 = zero
    s10 = s11 = s12 = s13 = s14 = s15 = s16 = s17 = zero
    for p in range(kc):
        a0 = a_sliver[p]
        a1 = a_sliver[kc + p]
        b0 = b_sliver[p]
        b1 = b_sliver[kc + p]
        b2 = b_sliver[2 * kc + p]
        b3 = b_sliver[3 * kc + p]
        b4 = b_sliver[4 * kc + p]
        b5 = b_sliver[5 * kc + p]
        b6 = b_sliver[6 * kc + p]
        b7 = b_sliver[7 * kc + p]
        s00 += a0 * b0
        s01 += a0 * b1
        s02 += a0 * b2
        s03 += a0 * b3
        s04 += a0 * b4
        s05 += a0 * b5
        s06 += a0 * b6
        s07 += a0 * b7
        s10 += a1 * b0
        s11 += a1 * b1
        s12 += a1 * b2
        s13 += a1 * b3
        s14 += a1 * b4
        s15 += a1 * b5
        s16 += a1 * b6
        s17 += a1 * b7
    tile[0, 0] = s00
    tile[0, 1] = s01
    tile[0, 2] = s02
    tile[0, 3] = s03
    tile[0, 4] = s04
    tile[0, 5] = s05
    tile[0, 6] = s06
    tile[0, 7] = s07
    tile[1, 0] = s10
    tile[1, 1] = s11
    tile[1, 2] = s12
    tile[1, 3] = s13
    tile[1, 4] = s14
    tile[1, 5] = s15
    tile[1, 6] = s16
    tile[1, 7] = s17
    # END SOLUTION


@njit(cache=True)
def micro_kernel(kc, a_sliver, b_sliver, tile):
    """The micro-kernel of ``tile``'s shape, one of :data:`MICRO_KERNEL_SHAPES` — the one
    place a shape picks its code.  The branch is taken once per MR x NR tile, outside the
    k loop, so it costs nothing measurable."""
    mr, nr = tile.shape
    if mr == 4 and nr == 4:
        micro_kernel_4x4(kc, a_sliver, b_sliver, tile)
    elif mr == 2 and nr == 8:
        micro_kernel_2x8(kc, a_sliver, b_sliver, tile)
    else:
        raise ValueError("no micro-kernel for this MR x NR (see MICRO_KERNEL_SHAPES)")


@njit(cache=True)
def macro_kernel(ap, bp, c, ic, jc, mc, nc, kc, mr, nr, tile):
    """Loops 2 and 1: C[ic:ic+mc, jc:jc+nc] += A~ @ B~, one MR x NR tile at a time.

    ``ap`` holds ceil(mc/mr) packed slivers of A~ (the layout of :func:`pack_panel_a`),
    ``bp`` ceil(nc/nr) slivers of B~ (:func:`pack_panel_b`); ``tile`` is an (mr, nr)
    scratch buffer.  Edge tiles compute whole MR x NR products (the padding's rows and
    columns included), but nothing outside C[ic:ic+mc, jc:jc+nc] is written, whatever
    the padding holds.
    """
    # BEGIN SOLUTION [step 4] hint: loop jr over the NR slivers of B~, ir over the MR slivers of A~; sliver views ap[ir*kc:(ir+mr)*kc], bp[jr*kc:(jr+nr)*kc]; micro_kernel; write_back clips to edges min(mr, mc - ir), min(nr, nc - jr)
    for jr in range(0, nc, nr):
        n_edge = min(nr, nc - jr)
        for ir in range(0, mc, mr):
            m_edge = min(mr, mc - ir)
            a_sliver = ap[ir * kc:(ir + mr) * kc]
            b_sliver = bp[jr * kc:(jr + nr) * kc]
            micro_kernel(kc, a_sliver, b_sliver, tile)
            write_back(tile, c, ic + ir, jc + jr, m_edge, n_edge)
    # END SOLUTION


@njit(cache=True)
def gemm_packed(a, trans_a, b, trans_b, c, i_begin, i_end, j_begin, j_end, mc, kc, nc, mr, nr):
    """The five loops on one thread for the block ``C[i_begin:i_end, j_begin:j_end]`` of
    C = A @ B (that block is overwritten; the rest of ``c`` is not touched)."""
    # BEGIN SOLUTION [step 4] hint: zero the block one row slice at a time (c[i, j_begin:j_end] = 0); buffers for A~ (ceil(mc/mr)*mr*kc) and B~ (ceil(nc/nr)*nr*kc); loops jc from j_begin, pc (pack B~), ic from i_begin (pack A~, macro_kernel)
    k = a.shape[0] if trans_a else a.shape[1]
    for i in range(i_begin, i_end):
        c[i, j_begin:j_end] = 0                     # a row slice: one vectorised fill, no index checks
    ap = np.empty(((mc + mr - 1) // mr) * mr * kc, dtype=c.dtype)
    bp = np.empty(((nc + nr - 1) // nr) * nr * kc, dtype=c.dtype)
    tile = np.empty((mr, nr), dtype=c.dtype)
    for jc in range(j_begin, j_end, nc):            # loop 5
        nc_b = min(nc, j_end - jc)
        for pc in range(0, k, kc):                  # loop 4
            kc_b = min(kc, k - pc)
            pack_panel_b(b, trans_b, pc, jc, kc_b, nc_b, nr, bp)
            for ic in range(i_begin, i_end, mc):    # loop 3
                mc_b = min(mc, i_end - ic)
                pack_panel_a(a, trans_a, ic, pc, mc_b, kc_b, mr, ap)
                macro_kernel(ap, bp, c, ic, jc, mc_b, nc_b, kc_b, mr, nr, tile)
    # END SOLUTION


def matmul_packed(a, b, out=None, config: BlockConfig | None = None):
    """C = A @ B with the packed, register-blocked five-loop kernel on one thread."""
    a, b = check_operands(a, b, out)
    cfg = (config or DEFAULT_CONFIG).validate()
    c = output_buffer(a, b, out)
    a_c, trans_a = c_or_transposed(a)
    b_c, trans_b = c_or_transposed(b)
    m, n = c.shape
    gemm_packed(a_c, trans_a, b_c, trans_b, c, 0, m, 0, n, cfg.mc, cfg.kc, cfg.nc, cfg.mr, cfg.nr)
    return finish(c, out)
