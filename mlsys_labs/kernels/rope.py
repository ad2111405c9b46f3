"""Fused rotary position embedding (RoFormer, Su et al. 2021, §3.4; the "rotate-half" layout of
GPT-NeoX / LLaMA / vLLM).

Pair feature i with feature i + d/2 and rotate the pair by the angle pos · θ_i, θ_i = base^(-2i/d):

    y_i       = x_i · cos(pos θ_i) − x_{i+d/2} · sin(pos θ_i)
    y_{i+d/2} = x_{i+d/2} · cos(pos θ_i) + x_i · sin(pos θ_i)

so q·k after rotation depends only on the positions' difference (eq. 16).  The cos/sin table
(max_positions × d/2) is computed once in float64 and stored in float32 (as vLLM's
cos_sin_cache); the kernel rotates q and k in one launch, each program a block of tokens
of one (batch, head), looking up the table rows of their positions.

Cost, q and k of B·H·N·d elements each, b bytes:  flops = 6·B·H·N·d (3 per element, both tensors);
fewest bytes = 4·B·H·N·d·b (q, k in and out) + N·d·4 (the table rows used).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._checks import FLOAT_DTYPES, check_out, check_same, check_tensor

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128, 256)


def rope_cache(max_positions: int, head_dim: int, base: float = 10000.0, device=None):
    """(cos, sin), each (max_positions, head_dim/2) float32, computed in float64."""
    if head_dim % 2:
        raise ValueError(f"rope: head_dim must be even, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float().to(device), angles.sin().float().to(device)


@triton.jit
def _rotate_block(X, XO, base, rows, cols, mask, cos, sin, HALF: tl.constexpr):
    """Rotate the (i, i + HALF) feature pairs of a [rows, HALF] block of one head."""
    # BEGIN SOLUTION [step 4] hint: load both halves as float32, y1 = x1·cos − x2·sin, y2 = x2·cos + x1·sin, store both halves
    ptr = base + rows[:, None] * (2 * HALF) + cols[None, :]
    x1 = tl.load(X + ptr, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(X + ptr + HALF, mask=mask, other=0.0).to(tl.float32)
    tl.store(XO + ptr, (x1 * cos - x2 * sin).to(XO.dtype.element_ty), mask=mask)
    tl.store(XO + ptr + HALF, (x2 * cos + x1 * sin).to(XO.dtype.element_ty), mask=mask)
    # END SOLUTION


@triton.jit
def rope_kernel(Q, K, QO, KO, COS, SIN, POS, N_CTX, HALF: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program (token block, batch·head): look up cos/sin rows of the tokens' positions, rotate q and k."""
    # BEGIN SOLUTION [step 4] hint: rows = pid·BLOCK_N + arange; pos = load(POS + rows); cos/sin = load(table + pos·HALF + cols); _rotate_block for q, then k
    pid_n = tl.program_id(0)
    off_bh = tl.program_id(1).to(tl.int64)
    base = off_bh * N_CTX * (2 * HALF)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, HALF)
    row_mask = rows < N_CTX
    mask = row_mask[:, None]
    pos = tl.load(POS + rows, mask=row_mask, other=0)
    cos = tl.load(COS + pos[:, None] * HALF + cols[None, :], mask=mask, other=0.0)
    sin = tl.load(SIN + pos[:, None] * HALF + cols[None, :], mask=mask, other=0.0)
    _rotate_block(Q, QO, base, rows, cols, mask, cos, sin, HALF)
    _rotate_block(K, KO, base, rows, cols, mask, cos, sin, HALF)
    # END SOLUTION


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
         positions: torch.Tensor | None = None, *, out_q: torch.Tensor | None = None,
         out_k: torch.Tensor | None = None, block_n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k, both (B, H, N, d), by the angles of ``positions`` (N,) (default 0..N-1)."""
    check_tensor("q", q, dtypes=FLOAT_DTYPES, ndim=4)
    check_tensor("k", k, dtypes=FLOAT_DTYPES, ndim=4)
    check_same("rope", q=q, k=k)
    if q.shape != k.shape:
        raise ValueError(f"rope: q is {tuple(q.shape)} but k is {tuple(k.shape)}")
    B, H, N, d = q.shape
    if d not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"rope: head dim {d} unsupported; supported: {SUPPORTED_HEAD_DIMS}")
    for name, t in (("cos", cos), ("sin", sin)):
        check_tensor(name, t, dtypes=(torch.float32,), ndim=2)
        if t.shape[1] != d // 2:
            raise ValueError(f"rope: {name} table has {t.shape[1]} columns, need d/2 = {d // 2}")
        if t.device != q.device:
            raise ValueError(f"rope: {name} on {t.device}, q on {q.device}")
    if cos.shape != sin.shape:
        raise ValueError("rope: cos and sin tables differ in shape")
    if positions is None:
        positions = torch.arange(N, device=q.device, dtype=torch.int32)
    check_tensor("positions", positions, dtypes=(torch.int32, torch.int64), ndim=1)
    if positions.shape[0] != N:
        raise ValueError(f"rope: {positions.shape[0]} positions for {N} tokens")
    if N and (int(positions.min()) < 0 or int(positions.max()) >= cos.shape[0]):
        raise ValueError(f"rope: positions must lie in [0, {cos.shape[0]}) (the table's length)")
    out_q = torch.empty_like(q) if out_q is None else out_q
    out_k = torch.empty_like(k) if out_k is None else out_k
    check_out("out_q", out_q, q.shape, q.dtype, q)
    check_out("out_k", out_k, k.shape, k.dtype, k)
    rope_kernel[(triton.cdiv(N, block_n), B * H)](q, k, out_q, out_k, cos, sin, positions, N,
                                                  HALF=d // 2, BLOCK_N=block_n)
    return out_q, out_k


def rope_reference(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """float64 rotate-half RoPE of x (…, N, d) with angles computed in float64 from scratch."""
    x = x.double()
    n, d = x.shape[-2], x.shape[-1]
    pos = torch.arange(n, dtype=torch.float64) if positions is None else positions.cpu().double()
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.device), torch.cat([ang.sin()] * 2, -1).to(x.device)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin
