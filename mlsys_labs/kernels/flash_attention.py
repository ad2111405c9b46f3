"""FlashAttention-2 forward and backward (Dao et al. 2022; Dao 2023, Algorithms 1 and 2).

    S = scale · Q Kᵀ,   P = softmax(S) (row-wise, causal: S_ij = -inf for j > i),   O = P V

Plain attention writes S and P (N×N per head) to memory.  FlashAttention never does:
a program owns BLOCK_M query rows, streams the keys and values through on-chip memory
BLOCK_N at a time, and keeps the online-softmax state of its rows (running max m, running
sum l, unnormalised output acc — see :mod:`.online_softmax`):

    m' = max(m, rowmax(S_blk));  α = exp(m - m');  P_blk = exp(S_blk - m')
    l' = α·l + rowsum(P_blk);    acc' = α·acc + P_blk V_blk;      finally O = acc / l

It also saves the log-sum-exp  L_i = m_i + log l_i  of each row, so the backward pass can
*recompute* P = exp(S - L) block by block instead of storing it.  With dO given and
D_i = rowsum(dO ∘ O)_i (= rowsum(P ∘ dP)):

    dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP - D),   dQ = scale · dS K,   dK = scale · dSᵀ Q

The backward runs as two kernels: one program per key block accumulates dK, dV over the
query blocks; one program per query block accumulates dQ over the key blocks (FA-2 §3.2
merges them with atomics; two kernels avoid atomics at the price of recomputing S twice).

The shape of the code is the Triton tutorial's (06-fused-attention): each kernel holds its
own block and calls a shared inner loop (``_attn_fwd_inner``, ``_attn_bwd_dkdv_inner``,
``_attn_bwd_dq_inner``) over a range of the other side's blocks, once per *kind* of block.
Most blocks need no mask: a key block that lies wholly before a query block's first row is
seen whole by every row (causal), and a block wholly inside the sequence has no padding.
Only two kinds do: the *diagonal* blocks under causal masking (``_key_blocks`` finds where
they start) and the *ragged edge* block when N is not a multiple of the block size.  The
inner loops take ``MASK`` as a compile-time constant, so the full blocks run without a
single comparison, and the masks live in one place (``_visible``, ``_load_rows``).

Every tensor is addressed through its four strides (batch, head, token, feature), as in the
tutorial: a transposed view such as ``x.view(B, N, H, d).transpose(1, 2)`` is read in place.
Exponentials use exp2 with log2(e) (``LOG2E``) folded into the scale (one multiply fewer per score).

Cost, B·H heads, N tokens, head dim d, b bytes per element:
  forward  flops = 4·B·H·N²·d (two matmuls; half of it when causal);
           fewest bytes = 4·B·H·N·d·b (read Q, K, V, write O) + 4·B·H·N (the fp32 LSE)
  backward flops = 2.5 × forward by convention (five N×N×d matmuls); the two kernels here execute
           seven (S and dP in both), 3.5 × forward;
           fewest bytes = 8·B·H·N·d·b (read Q, K, V, O, dO; write dQ, dK, dV) + 8·B·H·N
Intensity ≈ N flops/byte for d = 128, bf16: compute bound for every N that matters.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from mlsys_labs.common.device import triton_interpreted

from ._checks import FLOAT_DTYPES, check_out, check_same, check_tensor

SUPPORTED_HEAD_DIMS = (32, 64, 128)
LOG2E = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) = exp2(x · LOG2E), log(x) = log2(x) / LOG2E

# Block sizes.  Interpreter (CPU): fixed 16×16 blocks, the smallest a GPU's tl.dot accepts.
# GPU: fixed configurations for short sequences (tests: every autotuned config costs a compile),
# autotuning over a small set from AUTOTUNE_MIN_N tokens on (the benchmarks' regime).
INTERPRETER_BLOCKS = dict(BLOCK_M=16, BLOCK_N=16)
AUTOTUNE_MIN_N = 2048
_TUNE_KEY = ["N_CTX", "HEAD_DIM", "CAUSAL"]
FWD_CONFIGS = [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn), num_warps=w, num_stages=s)
               for bm, bn, w, s in [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (64, 32, 4, 2)]]
BWD_DKDV_CONFIGS = [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn), num_warps=w, num_stages=s)
                    for bm, bn, w, s in [(32, 128, 4, 3), (64, 128, 8, 3), (32, 64, 4, 2)]]
BWD_DQ_CONFIGS = [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn), num_warps=w, num_stages=s)
                  for bm, bn, w, s in [(128, 32, 4, 3), (128, 64, 8, 3), (64, 32, 4, 2)]]


def gpu_blocks(which: str, head_dim: int, dtype) -> dict:
    """Fixed GPU block sizes for ``which`` in {'fwd', 'dkdv', 'dq'} (sized to fit shared memory and registers)."""
    if dtype == torch.float32:  # 4-byte tiles: small blocks, two stages
        return dict(BLOCK_M=32 if which == "dkdv" else 64, BLOCK_N=64 if which == "dkdv" else 32,
                    num_warps=4, num_stages=2)
    if which == "fwd":
        return dict(BLOCK_M=128, BLOCK_N=64, num_warps=8 if head_dim == 128 else 4, num_stages=3)
    if which == "dkdv":
        return dict(BLOCK_M=32, BLOCK_N=64 if head_dim == 128 else 128, num_warps=4, num_stages=2 if head_dim == 128 else 3)
    return dict(BLOCK_M=64 if head_dim == 128 else 128, BLOCK_N=32, num_warps=4, num_stages=2 if head_dim == 128 else 3)


# ----------------------------------------------------------------------------- shared helpers
@triton.jit
def _load_rows(ptr, rows, offs_d, stride_n, stride_d, N_CTX, MASK: tl.constexpr):
    """The [len(rows), HEAD_DIM] tile of one head's (N_CTX, HEAD_DIM) slice at ``ptr``.
    MASK: rows past N_CTX (the ragged edge block) read as 0; a full block loads unmasked."""
    ptrs = ptr + rows[:, None] * stride_n + offs_d[None, :] * stride_d
    if MASK:
        tile = tl.load(ptrs, mask=rows[:, None] < N_CTX, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def _store_rows(ptr, rows, offs_d, stride_n, stride_d, N_CTX, tile):
    """Store the rows of ``tile`` that exist (< N_CTX), cast to the buffer's dtype."""
    ptrs = ptr + rows[:, None] * stride_n + offs_d[None, :] * stride_d
    tl.store(ptrs, tile.to(ptr.dtype.element_ty), mask=rows[:, None] < N_CTX)


@triton.jit
def _visible(q_idx, k_idx, N_CTX, CAUSAL: tl.constexpr):
    """True where query ``q_idx`` may attend to key ``k_idx`` (broadcast index tensors):
    the key exists (< N_CTX) and, causal, is not in the query's future."""
    ok = k_idx < N_CTX
    if CAUSAL:
        ok = ok & (q_idx >= k_idx)
    return ok


@triton.jit
def _key_blocks(start_m, N_CTX, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """(n_full, hi) for query block ``start_m``: keys [0, n_full) lie in whole blocks every row
    of the block sees entirely (no mask); keys [n_full, hi) are the diagonal blocks (causal)
    and the ragged edge block, streamed with the mask.  Used by the forward and the dQ kernel."""
    # BEGIN SOLUTION [step 5] hint: causal: rows see keys up to their own index, so hi = min(end of this query block, N_CTX) and the unmasked keys end at the last whole key block before the block's first row; otherwise hi = N_CTX and the unmasked keys end at the last whole key block
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, N_CTX)
        n_full = start_m * BLOCK_M // BLOCK_N * BLOCK_N
    else:
        hi = N_CTX
        n_full = N_CTX // BLOCK_N * BLOCK_N
    return n_full, hi
    # END SOLUTION


# ----------------------------------------------------------------------------------- forward
@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_kd, stride_vn, stride_vd,
                    offs_m, offs_n, offs_d, lo, hi, qk_scale, N_CTX,
                    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASK: tl.constexpr,
                    DOT_PRECISION: tl.constexpr):
    """Stream the key blocks [lo, hi) past the query block: the online-softmax update of
    (acc, l_i, m_i), scores in the exp2 domain (already multiplied by scale · LOG2E)."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_rows(K, cols, offs_d, stride_kn, stride_kd, N_CTX, MASK)
        v = _load_rows(V, cols, offs_d, stride_vn, stride_vd, N_CTX, MASK)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        if MASK:
            s = tl.where(_visible(offs_m[:, None], cols[None, :], N_CTX, CAUSAL), s, -float("inf"))
        # BEGIN SOLUTION [step 5] hint: online softmax in base 2: m' = max(m, rowmax s), alpha = exp2(m - m'), p = exp2(s - m'), l = alpha·l + rowsum p, acc = alpha·acc + p V (p cast to V's dtype for tl.dot), m = m'
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new
        # END SOLUTION
    return acc, l_i, m_i


@triton.jit
def attn_fwd_kernel(Q, K, V, O, LSE, sm_scale, H, N_CTX,
                    stride_qb, stride_qh, stride_qn, stride_qd,
                    stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd,
                    stride_ob, stride_oh, stride_on, stride_od,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Program (m-block, batch·head): O rows [start_m·BLOCK_M, +BLOCK_M) and their LSE (natural log)."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1).to(tl.int64)
    off_b, off_h = off_bh // H, off_bh % H
    Q += off_b * stride_qb + off_h * stride_qh
    K += off_b * stride_kb + off_h * stride_kh
    V += off_b * stride_vb + off_h * stride_vh
    O += off_b * stride_ob + off_h * stride_oh
    LSE += off_bh * N_CTX
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = _load_rows(Q, offs_m, offs_d, stride_qn, stride_qd, N_CTX, True)
    qk_scale = sm_scale * LOG2E
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    # BEGIN SOLUTION [step 5] hint: n_full, hi = _key_blocks(...); _attn_fwd_inner over [0, n_full) with MASK=False, then over [n_full, hi) with MASK=True; store LSE = (m + log2 l) / LOG2E (rows < N_CTX) and O = acc / l with _store_rows
    n_full, hi = _key_blocks(start_m, N_CTX, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_kd, stride_vn, stride_vd,
                                    offs_m, offs_n, offs_d, 0, n_full, qk_scale, N_CTX,
                                    BLOCK_N, CAUSAL, False, DOT_PRECISION)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_kd, stride_vn, stride_vd,
                                    offs_m, offs_n, offs_d, n_full, hi, qk_scale, N_CTX,
                                    BLOCK_N, CAUSAL, True, DOT_PRECISION)
    tl.store(LSE + offs_m, (m_i + tl.log2(l_i)) / LOG2E, mask=offs_m < N_CTX)
    _store_rows(O, offs_m, offs_d, stride_on, stride_od, N_CTX, acc / l_i[:, None])
    # END SOLUTION


# ---------------------------------------------------------------------------------- backward
@triton.jit
def _attn_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qn, stride_qd, stride_don, stride_dod,
                         offs_n, offs_m, offs_d, lo, hi, qk_scale, N_CTX,
                         BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, MASK: tl.constexpr,
                         DOT_PRECISION: tl.constexpr):
    """Stream the query blocks [lo, hi) past one key block: accumulate its dK (unscaled) and dV.
    Transposed tiles ([BLOCK_N, BLOCK_M], keys along rows) so no product needs a transpose of P.
    Query rows past N_CTX load as zeros (q, dO, L, D), which makes their terms exactly 0."""
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m
        q = _load_rows(Q, rows, offs_d, stride_qn, stride_qd, N_CTX, MASK)
        do = _load_rows(DO, rows, offs_d, stride_don, stride_dod, N_CTX, MASK)
        if MASK:
            lse = tl.load(LSE + rows, mask=rows < N_CTX, other=0.0)
            delta = tl.load(DELTA + rows, mask=rows < N_CTX, other=0.0)
        else:
            lse = tl.load(LSE + rows)
            delta = tl.load(DELTA + rows)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale   # [BLOCK_N, BLOCK_M]
        if MASK:
            s_t = tl.where(_visible(rows[None, :], offs_n[:, None], N_CTX, CAUSAL), s_t, -float("inf"))
        # BEGIN SOLUTION [step 6] hint: Pᵀ = exp2(sᵀ - L·LOG2E); dV += Pᵀ dO; dPᵀ = V dOᵀ; dSᵀ = Pᵀ ∘ (dPᵀ - D); dK += dSᵀ Q (cast P and dS to the inputs' dtype for tl.dot)
        p_t = tl.exp2(s_t - lse[None, :] * LOG2E)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PRECISION)
        # END SOLUTION
    return dk, dv


@triton.jit
def attn_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, sm_scale, H, N_CTX,
                         stride_qb, stride_qh, stride_qn, stride_qd,
                         stride_kb, stride_kh, stride_kn, stride_kd,
                         stride_vb, stride_vh, stride_vn, stride_vd,
                         stride_dob, stride_doh, stride_don, stride_dod,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Program (n-block, batch·head): dK, dV of BLOCK_N keys, streaming the query blocks that see them.
    dK, dV are written with K's and V's strides."""
    start_n = tl.program_id(0)
    off_bh = tl.program_id(1).to(tl.int64)
    off_b, off_h = off_bh // H, off_bh % H
    Q += off_b * stride_qb + off_h * stride_qh
    K += off_b * stride_kb + off_h * stride_kh
    V += off_b * stride_vb + off_h * stride_vh
    DO += off_b * stride_dob + off_h * stride_doh
    DK += off_b * stride_kb + off_h * stride_kh
    DV += off_b * stride_vb + off_h * stride_vh
    LSE += off_bh * N_CTX
    DELTA += off_bh * N_CTX
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    k = _load_rows(K, offs_n, offs_d, stride_kn, stride_kd, N_CTX, True)
    v = _load_rows(V, offs_n, offs_d, stride_vn, stride_vd, N_CTX, True)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    # BEGIN SOLUTION [step 6] hint: causal: query blocks before the diagonal see none of these keys, those from the first block wholly past the key block see all of them; stream the diagonal ones masked, the whole ones unmasked, the ragged last query block masked; then dK *= sm_scale and store dK, dV with _store_rows
    if CAUSAL:
        lo = start_n * BLOCK_N // BLOCK_M * BLOCK_M       # earlier query rows cannot see these keys
        full_lo = tl.cdiv((start_n + 1) * BLOCK_N, BLOCK_M) * BLOCK_M   # rows from here see every key of the block
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qn, stride_qd, stride_don, stride_dod,
                                      offs_n, offs_m, offs_d, lo, tl.minimum(full_lo, N_CTX), qk_scale, N_CTX,
                                      BLOCK_M, CAUSAL, True, DOT_PRECISION)
    else:
        full_lo = 0
    full_hi = N_CTX // BLOCK_M * BLOCK_M
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qn, stride_qd, stride_don, stride_dod,
                                  offs_n, offs_m, offs_d, full_lo, full_hi, qk_scale, N_CTX,
                                  BLOCK_M, CAUSAL, False, DOT_PRECISION)
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qn, stride_qd, stride_don, stride_dod,
                                  offs_n, offs_m, offs_d, tl.maximum(full_lo, full_hi), N_CTX, qk_scale, N_CTX,
                                  BLOCK_M, CAUSAL, True, DOT_PRECISION)
    dk = dk * sm_scale
    _store_rows(DK, offs_n, offs_d, stride_kn, stride_kd, N_CTX, dk)
    _store_rows(DV, offs_n, offs_d, stride_vn, stride_vd, N_CTX, dv)
    # END SOLUTION


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, stride_kn, stride_kd, stride_vn, stride_vd,
                       offs_m, offs_n, offs_d, lo, hi, qk_scale, N_CTX,
                       BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASK: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    """Stream the key blocks [lo, hi) past one query block: accumulate its dQ (unscaled)."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_rows(K, cols, offs_d, stride_kn, stride_kd, N_CTX, MASK)
        v = _load_rows(V, cols, offs_d, stride_vn, stride_vd, N_CTX, MASK)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        if MASK:
            s = tl.where(_visible(offs_m[:, None], cols[None, :], N_CTX, CAUSAL), s, -float("inf"))
        # BEGIN SOLUTION [step 6] hint: P = exp2(s - L·LOG2E); dP = dO Vᵀ; dS = P ∘ (dP - D); dQ += dS K (cast dS to K's dtype for tl.dot)
        p = tl.exp2(s - lse[:, None] * LOG2E)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)
        # END SOLUTION
    return dq


@triton.jit
def attn_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, sm_scale, H, N_CTX,
                       stride_qb, stride_qh, stride_qn, stride_qd,
                       stride_kb, stride_kh, stride_kn, stride_kd,
                       stride_vb, stride_vh, stride_vn, stride_vd,
                       stride_dob, stride_doh, stride_don, stride_dod,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Program (m-block, batch·head): dQ of BLOCK_M query rows, streaming the key blocks they see.
    dQ is written with Q's strides."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1).to(tl.int64)
    off_b, off_h = off_bh // H, off_bh % H
    Q += off_b * stride_qb + off_h * stride_qh
    K += off_b * stride_kb + off_h * stride_kh
    V += off_b * stride_vb + off_h * stride_vh
    DO += off_b * stride_dob + off_h * stride_doh
    DQ += off_b * stride_qb + off_h * stride_qh
    LSE += off_bh * N_CTX
    DELTA += off_bh * N_CTX
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = _load_rows(Q, offs_m, offs_d, stride_qn, stride_qd, N_CTX, True)
    do = _load_rows(DO, offs_m, offs_d, stride_don, stride_dod, N_CTX, True)
    lse = tl.load(LSE + offs_m, mask=offs_m < N_CTX, other=0.0)
    delta = tl.load(DELTA + offs_m, mask=offs_m < N_CTX, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    # BEGIN SOLUTION [step 6] hint: the same key blocks as the forward (_key_blocks): [0, n_full) unmasked, [n_full, hi) masked, through _attn_bwd_dq_inner; then dQ *= sm_scale and store it with _store_rows
    n_full, hi = _key_blocks(start_m, N_CTX, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, stride_kn, stride_kd, stride_vn, stride_vd,
                            offs_m, offs_n, offs_d, 0, n_full, qk_scale, N_CTX, BLOCK_N, CAUSAL, False, DOT_PRECISION)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, stride_kn, stride_kd, stride_vn, stride_vd,
                            offs_m, offs_n, offs_d, n_full, hi, qk_scale, N_CTX, BLOCK_N, CAUSAL, True, DOT_PRECISION)
    dq = dq * sm_scale
    _store_rows(DQ, offs_m, offs_d, stride_qn, stride_qd, N_CTX, dq)
    # END SOLUTION


# ---------------------------------------------------------------------------------- launchers
_KERNELS = {"fwd": (attn_fwd_kernel, FWD_CONFIGS, "BLOCK_M"),
            "dkdv": (attn_bwd_dkdv_kernel, BWD_DKDV_CONFIGS, "BLOCK_N"),
            "dq": (attn_bwd_dq_kernel, BWD_DQ_CONFIGS, "BLOCK_M")}
_TUNED: dict = {}


def _launch(which: str, args, *, batch_heads: int, n_ctx: int, head_dim: int, dtype, **constexprs) -> None:
    """Launch one of the three kernels over (row or key blocks, batch·heads) with the block sizes above."""
    kernel, configs, block_key = _KERNELS[which]
    grid = lambda meta: (triton.cdiv(n_ctx, meta[block_key]), batch_heads)  # noqa: E731
    if triton_interpreted():
        kernel[grid](*args, HEAD_DIM=head_dim, **constexprs, **INTERPRETER_BLOCKS)
    elif n_ctx >= AUTOTUNE_MIN_N:
        if which not in _TUNED:
            _TUNED[which] = triton.autotune(configs, key=_TUNE_KEY)(kernel)
        _TUNED[which][grid](*args, HEAD_DIM=head_dim, **constexprs)
    else:
        kernel[grid](*args, HEAD_DIM=head_dim, **constexprs, **gpu_blocks(which, head_dim, dtype))


def _strides(*tensors) -> tuple[int, ...]:
    """(batch, head, token, feature) strides of each tensor, in order: the kernels' stride arguments."""
    return tuple(s for t in tensors for s in t.stride())


def _check_qkv(q, k, v):
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, dtypes=FLOAT_DTYPES, ndim=4, contiguous=False)
    check_same("flash_attention", q=q, k=k, v=v)
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"flash_attention: q, k, v must share shape (B, H, N, d); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    d = q.shape[-1]
    if d not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"flash_attention: head dim {d} unsupported; supported: {SUPPORTED_HEAD_DIMS}")
    if q.shape[2] == 0:
        raise ValueError("flash_attention: empty sequence")
    if q.dtype == torch.bfloat16 and triton_interpreted():
        raise TypeError("flash_attention: bfloat16 tl.dot is not supported by the Triton interpreter "
                        "(results are silently wrong); use float16/float32 on CPU, bfloat16 on a GPU")


def _with_grad_buffer(name: str, t, given):
    """(t, the buffer for its gradient) with equal strides: the backward kernels write dX through
    X's strides.  A layout no new tensor can have (a slice with gaps, a broadcast) is copied first."""
    if given is None:
        given = torch.empty_like(t)  # t's strides whenever t is dense and free of overlaps
        return (t if given.stride() == t.stride() else t.contiguous()), given
    check_tensor(name, given, dtypes=(t.dtype,), ndim=4, contiguous=False)
    if given.shape != t.shape or given.device != t.device or given.stride() != t.stride():
        raise ValueError(f"{name} must have its input's shape {tuple(t.shape)}, strides {t.stride()} and device "
                         f"{t.device}; got {tuple(given.shape)}, {given.stride()}, {given.device}")
    return t, given


def _precision(dtype):
    return "ieee" if dtype == torch.float32 else "tf32"


def flash_attention_forward(q, k, v, *, causal: bool = False, sm_scale: float | None = None,
                            out: torch.Tensor | None = None):
    """(O, LSE) for q, k, v of shape (B, H, N, d), any strides; LSE is (B, H, N) float32, natural log.
    O is a new contiguous tensor, or ``out`` (contiguous) when given."""
    _check_qkv(q, k, v)
    B, H, N, d = q.shape
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    check_out("out", out, q.shape, q.dtype, q)
    lse = torch.empty((B, H, N), device=q.device, dtype=torch.float32)
    _launch("fwd", (q, k, v, out, lse, sm_scale, H, N, *_strides(q, k, v, out)), batch_heads=B * H,
            n_ctx=N, head_dim=d, dtype=q.dtype, CAUSAL=causal, DOT_PRECISION=_precision(q.dtype))
    return out, lse


def flash_attention_backward(q, k, v, o, lse, do, *, causal: bool = False, sm_scale: float | None = None,
                             dq: torch.Tensor | None = None, dk: torch.Tensor | None = None,
                             dv: torch.Tensor | None = None):
    """(dQ, dK, dV) from the saved O and LSE, recomputing P block by block (into dq/dk/dv if given).
    q, k, v, o, do may have any strides; each gradient has the strides of its input."""
    _check_qkv(q, k, v)
    check_tensor("o", o, dtypes=(q.dtype,), ndim=4, contiguous=False)
    check_tensor("do", do, dtypes=(q.dtype,), ndim=4, contiguous=False)
    check_tensor("lse", lse, dtypes=(torch.float32,), ndim=3)
    if o.shape != q.shape or do.shape != q.shape or lse.shape != q.shape[:3]:
        raise ValueError("flash_attention_backward: o, do must match q's shape and lse must be (B, H, N)")
    B, H, N, d = q.shape
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    q, dq = _with_grad_buffer("dq", q, dq)
    k, dk = _with_grad_buffer("dk", k, dk)
    v, dv = _with_grad_buffer("dv", v, dv)
    strides = _strides(q, k, v, do)
    # BEGIN SOLUTION [step 6] hint: D_i = rowsum(dO ∘ O) in float32 (contiguous, like the LSE), then launch the dK/dV and the dQ kernels
    delta = (do.float() * o.float()).sum(-1).contiguous()
    shape = dict(batch_heads=B * H, n_ctx=N, head_dim=d, dtype=q.dtype, CAUSAL=causal,
                 DOT_PRECISION=_precision(q.dtype))
    _launch("dkdv", (q, k, v, do, lse, delta, dk, dv, sm_scale, H, N, *strides), **shape)
    _launch("dq", (q, k, v, do, lse, delta, dq, sm_scale, H, N, *strides), **shape)
    return dq, dk, dv
    # END SOLUTION


class FlashAttention(torch.autograd.Function):
    """Attention that trains: forward saves (q, k, v, O, LSE), backward recomputes P from LSE."""

    @staticmethod
    def forward(ctx, q, k, v, causal=False, sm_scale=None):
        o, lse = flash_attention_forward(q, k, v, causal=causal, sm_scale=sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(q, k, v, o, lse, do, causal=ctx.causal, sm_scale=ctx.sm_scale)
        return dq, dk, dv, None, None


def flash_attention(q, k, v, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    """softmax(scale · Q Kᵀ [+ causal mask]) V, differentiable through :class:`FlashAttention`."""
    return FlashAttention.apply(q, k, v, causal, sm_scale)


def attention_reference(q, k, v, causal: bool = False, sm_scale: float | None = None):
    """(O, LSE) of plain attention in float64 (S and P materialised)."""
    q, k, v = q.double(), k.double(), v.double()
    n, d = q.shape[-2], q.shape[-1]
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    s = (q @ k.transpose(-1, -2)) * sm_scale
    if causal:
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v, torch.logsumexp(s, dim=-1)
