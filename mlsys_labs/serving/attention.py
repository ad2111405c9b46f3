"""Attention over the paged KV cache, in PyTorch (the CPU path; vLLM's "gather" fallback).

The KV cache of one layer is a tensor ``[2, num_slots, num_kv_heads, head_dim]`` where
``slot = block_id * block_size + offset``: a sequence's keys live in whatever blocks its
block table names (PagedAttention, Kwon et al., SOSP'23, §4.1–4.2).

Per step, every scheduled sequence brings ``q_len`` new tokens (a prompt chunk, or one
decode token) and sees ``ctx_len`` keys (the cache, including the new tokens' own keys).
New token ``j`` of a sequence sits at context index ``ctx_len - q_len + j`` and may
attend to context indices ``<=`` that (causal masking with an offset: chunked prefill
and prefix-cache hits need nothing else).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import AttentionBackend


@dataclass(frozen=True)
class AttentionMetadata:
    """What one forward pass needs to read and write the paged cache; built once per step
    (by the model runner) and never changed afterwards.

    ``query_start``: [B+1] offsets of each sequence's new tokens in the flat batch (cu_seqlens);
    ``context_lens``: [B] keys visible to each sequence (cache after this step's writes);
    ``slot_mapping``: [T] cache slot each new token's K/V is written to;
    ``key_slots``: [B, max_ctx] slots of each sequence's context in order (padded with 0);
    ``block_tables``: [B, max_blocks] block ids (padded with 0), for the Triton decode kernel;
    ``seq_of_token``, ``row_of_token``, ``mask``: the gather plan (:func:`gather_plan`), for the
    PyTorch backend; ``groups``: (token_index, AttentionMetadata) parts attended separately
    (decodes apart from prompt chunks: no padding of q to the longest chunk).
    """

    query_start: torch.Tensor
    context_lens: torch.Tensor
    slot_mapping: torch.Tensor
    key_slots: torch.Tensor
    block_tables: torch.Tensor | None = None
    block_size: int = 16
    max_query_len: int = 1
    backend: AttentionBackend = AttentionBackend.TORCH
    seq_of_token: torch.Tensor | None = None
    row_of_token: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    groups: tuple = ()

    @property
    def num_seqs(self) -> int:
        return self.context_lens.shape[0]


def write_kv(kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store the new tokens' keys and values (``[T, Hkv, d]``) at their slots."""
    # BEGIN SOLUTION [step 2] hint: index the slot axis of kv_cache[0] and kv_cache[1] with slot_mapping
    kv_cache[0].index_copy_(0, slot_mapping, k)
    kv_cache[1].index_copy_(0, slot_mapping, v)
    # END SOLUTION


def gather_plan(query_start: torch.Tensor, context_lens: torch.Tensor, max_query_len: int, max_ctx: int):
    """Per step (shared by every layer): each new token's sequence and row in the padded
    query batch, and the boolean mask ``[B, max_q, max_ctx]`` of keys it may see."""
    # BEGIN SOLUTION [step 2] hint: q_lens from query_start; new token j of a sequence sits at context index ctx_len - q_len + j; mask keys after it and padding
    B = context_lens.shape[0]
    dev = context_lens.device
    q_lens = query_start[1:] - query_start[:-1]
    T = int(query_start[-1])
    seq_of_token = torch.repeat_interleave(torch.arange(B, device=dev), q_lens)
    row_of_token = torch.arange(T, device=dev) - query_start[:-1][seq_of_token]
    key_idx = torch.arange(max_ctx, device=dev)
    q_ctx = (context_lens - q_lens)[:, None] + torch.arange(max_query_len, device=dev)[None, :]
    mask = key_idx[None, None, :] <= q_ctx[:, :, None]                  # causal, offset by the cache
    mask &= key_idx[None, None, :] < context_lens[:, None, None]        # padding keys
    return seq_of_token, row_of_token, mask
    # END SOLUTION


def paged_attention(q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata,
                    scale: float) -> torch.Tensor:
    """Causal attention of the new tokens ``q [T, H, d]`` over each sequence's paged context.

    Gathers every sequence's keys and values by ``meta.key_slots`` into a padded batch,
    masks padding and the future (``meta.mask`` from :func:`gather_plan`), and runs
    scaled-dot-product attention with grouped query heads.  Returns ``[T, H, d]``.
    """
    if meta.groups:
        out = torch.empty_like(q)
        for token_index, part in meta.groups:
            out[token_index] = paged_attention(q[token_index], kv_cache, part, scale)
        return out
    # BEGIN SOLUTION [step 2] hint: scatter q into [B, max_q, H, d] by (seq_of_token, row_of_token), gather K/V by key_slots, group the G = H/Hkv query heads of each KV head, SDPA, gather the rows back
    T, H, d = q.shape
    B = meta.num_seqs
    max_q = meta.max_query_len
    Hkv = kv_cache.shape[2]
    G = H // Hkv
    flat_rows = meta.seq_of_token * max_q + meta.row_of_token       # each token's row in [B·max_q]
    if max_q == 1:                                    # pure decode: one query per sequence, no scatter
        qp = q[:, None]
    else:
        qp = q.new_zeros(B * max_q, H, d).index_copy_(0, flat_rows, q).view(B, max_q, H, d)
    L = meta.key_slots.shape[1]
    flat_slots = meta.key_slots.reshape(-1)           # index_select: a much faster gather than x[index]
    k = kv_cache[0].index_select(0, flat_slots).view(B, L, Hkv, d).transpose(1, 2)   # [B, Hkv, L, d]
    v = kv_cache[1].index_select(0, flat_slots).view(B, L, Hkv, d).transpose(1, 2)
    # GQA without copying K/V per query head: the G query heads of a KV head become G extra query rows
    qg = qp.view(B, max_q, Hkv, G, d).permute(0, 2, 1, 3, 4).reshape(B, Hkv, max_q * G, d)
    mask = meta.mask[:, None, :, None, :].expand(B, 1, max_q, G, L).reshape(B, 1, max_q * G, L)
    out = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, scale=scale)
    out = out.view(B, Hkv, max_q, G, d).permute(0, 2, 1, 3, 4).reshape(B, max_q, H, d)
    return out[:, 0] if max_q == 1 else out.reshape(B * max_q, H, d).index_select(0, flat_rows)
    # END SOLUTION
