"""A Triton paged-attention decode kernel (vLLM's ``paged_attention_v1``, in Triton).

One program per (sequence, query head): it walks the sequence's block table, loads one
KV block at a time and folds it into a running softmax — the online normaliser of
Milakov & Gimelshein (2018), as in FlashAttention / FlashDecoding — so the scores are
never materialised.  Grouped-query attention: query head ``h`` reads KV head
``h // (H / Hkv)``.  On a CPU the kernel runs under Triton's interpreter
(``TRITON_INTERPRET=1``, set by :func:`mlsys_labs.common.device.configure_triton`).
"""
from __future__ import annotations

import torch

from ..common.device import configure_triton

configure_triton()

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _paged_decode_kernel(q_ptr, k_ptr, v_ptr, out_ptr, tables_ptr, ctx_lens_ptr, scale,
                         stride_qt, stride_qh, stride_slot, stride_kvh, stride_table, stride_ot, stride_oh,
                         GROUP: tl.constexpr, BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr):
    # BEGIN SOLUTION [step 7] hint: online softmax over the blocks of this sequence's table: m, l, acc; rescale by exp(m_old - m_new)
    seq = tl.program_id(0)
    head = tl.program_id(1)
    kv_head = head // GROUP
    d = tl.arange(0, HEAD_DIM)
    t = tl.arange(0, BLOCK_SIZE)
    q = tl.load(q_ptr + seq * stride_qt + head * stride_qh + d).to(tl.float32)
    ctx_len = tl.load(ctx_lens_ptr + seq)
    m = tl.full((), float("-inf"), tl.float32)
    l_sum = tl.zeros((), tl.float32)
    acc = tl.zeros((HEAD_DIM,), tl.float32)
    n_blocks = tl.cdiv(ctx_len, BLOCK_SIZE)
    for j in range(0, n_blocks):
        block = tl.load(tables_ptr + seq * stride_table + j)
        slots = block * BLOCK_SIZE + t
        valid = j * BLOCK_SIZE + t < ctx_len
        offs = slots[:, None] * stride_slot + kv_head * stride_kvh + d[None, :]
        k = tl.load(k_ptr + offs, mask=valid[:, None], other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=valid[:, None], other=0.0).to(tl.float32)
        s = tl.sum(k * q[None, :], axis=1) * scale
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=0))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new)
        l_sum = l_sum * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m = m_new
    out = acc / l_sum
    tl.store(out_ptr + seq * stride_ot + head * stride_oh + d, out.to(out_ptr.dtype.element_ty))
    # END SOLUTION


def paged_decode_attention(q: torch.Tensor, kv_cache: torch.Tensor, block_tables: torch.Tensor,
                           context_lens: torch.Tensor, block_size: int, scale: float,
                           out: torch.Tensor | None = None) -> torch.Tensor:
    """One query token per sequence: ``q [B, H, d]`` against the paged cache ``[2, slots, Hkv, d]``."""
    B, H, d = q.shape
    k_cache, v_cache = kv_cache[0], kv_cache[1]
    Hkv = k_cache.shape[1]
    q = q.contiguous()
    out = torch.empty_like(q) if out is None else out
    tables = block_tables.to(torch.int32).contiguous()
    ctx = context_lens.to(torch.int32).contiguous()
    _paged_decode_kernel[(B, H)](q, k_cache, v_cache, out, tables, ctx, scale,
                                 q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
                                 tables.stride(0), out.stride(0), out.stride(1),
                                 GROUP=H // Hkv, BLOCK_SIZE=block_size, HEAD_DIM=d)
    return out
