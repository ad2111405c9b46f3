"""The model runner: owns the KV cache tensors and turns a scheduled batch into one forward pass.

It flattens the sequences' new tokens into ``input_ids [T]`` / ``positions [T]`` (no padding),
maps every token to its cache slot through the block table, performs the step's
copy-on-write block copies, runs the model and returns logits only for the sequences whose
last new token needs a next token (finished prompts and decodes; a mid-prompt chunk does not).
"""
from __future__ import annotations

import dataclasses

import torch

from .attention import AttentionMetadata, gather_plan
from .config import AttentionBackend
from .model import LlamaForCausalLM
from .sequence import Sequence


class ModelRunner:
    def __init__(self, model: LlamaForCausalLM, num_blocks: int, block_size: int,
                 attention_backend: AttentionBackend = AttentionBackend.TORCH):
        self.model = model
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.device = next(model.parameters()).device
        self.kv_caches = model.allocate_kv_cache(num_blocks, block_size)
        self.attention_backend = attention_backend

    def copy_blocks(self, copies: list[tuple[int, int]]) -> None:
        bs = self.block_size
        for src, dst in copies:
            for kv in self.kv_caches:
                kv[:, dst * bs:(dst + 1) * bs] = kv[:, src * bs:(src + 1) * bs]

    def prepare(self, seqs: list[Sequence], num_new: list[int]):
        """Flat input ids, positions and the :class:`AttentionMetadata` for one step."""
        # BEGIN SOLUTION [step 2] hint: per sequence, new tokens are token_ids[computed: computed+n] at positions computed..; context index = position - num_dropped_tokens; slot = table[c // bs]·bs + c % bs
        bs = self.block_size
        dev = self.device
        ids, pos, q_lens, ctx_lens, ctx_start = [], [], [], [], []
        for seq, n in zip(seqs, num_new):
            c = seq.num_computed_tokens
            ids.extend(seq.token_ids[c:c + n])
            pos.extend(range(c, c + n))
            q_lens.append(n)
            ctx_lens.append(seq.context_len + n)
            ctx_start.append(seq.context_len)
        max_blocks = max(len(s.block_table) for s in seqs)
        tables = torch.tensor([s.block_table + [0] * (max_blocks - len(s.block_table)) for s in seqs],
                              dtype=torch.long)
        q_lens_t = torch.tensor(q_lens)
        ctx_lens_t = torch.tensor(ctx_lens)
        B = len(seqs)
        seq_of_token = torch.repeat_interleave(torch.arange(B), q_lens_t)
        query_start = torch.zeros(B + 1, dtype=torch.long)
        query_start[1:] = torch.cumsum(q_lens_t, 0)
        ctx_idx = torch.tensor(ctx_start)[seq_of_token] + torch.arange(len(ids)) - query_start[:-1][seq_of_token]
        slot_mapping = tables[seq_of_token, ctx_idx // bs] * bs + ctx_idx % bs
        max_ctx = int(ctx_lens_t.max())
        k_idx = torch.arange(max_ctx)
        key_slots = tables[:, (k_idx // bs).clamp(max=max_blocks - 1)] * bs + k_idx % bs
        key_slots = torch.where(k_idx[None, :] < ctx_lens_t[:, None], key_slots, 0)
        ids_t, pos_t = torch.tensor(ids, device=dev), torch.tensor(pos, device=dev)
        query_start, ctx_lens_t = query_start.to(dev), ctx_lens_t.to(dev)
        backend = self.attention_backend if max(q_lens) == 1 else AttentionBackend.TORCH   # Triton: decode only
        plan = (None, None, None)
        if backend is AttentionBackend.TORCH:
            plan = gather_plan(query_start, ctx_lens_t, max(q_lens), max_ctx)
        meta = AttentionMetadata(query_start=query_start, context_lens=ctx_lens_t,
                                 slot_mapping=slot_mapping.to(dev), key_slots=key_slots.to(dev),
                                 block_tables=tables.to(dev), block_size=bs, max_query_len=max(q_lens),
                                 backend=backend, seq_of_token=plan[0], row_of_token=plan[1], mask=plan[2])
        return ids_t, pos_t, meta
        # END SOLUTION

    @staticmethod
    def split_decodes_from_prefills(meta: AttentionMetadata) -> AttentionMetadata:
        """A step mixing decodes (1 new token) and prompt chunks attends in two groups, so the
        decodes are not padded to the longest chunk (an optimisation, not a change in results).
        Returns ``meta`` itself, or a copy of it carrying the two groups."""
        q_lens = meta.query_start[1:] - meta.query_start[:-1]
        is_decode = q_lens == 1
        if meta.backend is AttentionBackend.TRITON or bool(is_decode.all()) or not bool(is_decode.any()):
            return meta
        groups = []
        for sel in (torch.nonzero(is_decode).flatten(), torch.nonzero(~is_decode).flatten()):
            starts = meta.query_start[:-1][sel]
            lens = q_lens[sel]
            token_index = torch.cat([torch.arange(int(a), int(a) + int(n)) for a, n in zip(starts, lens)])
            qs = torch.zeros(len(sel) + 1, dtype=torch.long)
            qs[1:] = torch.cumsum(lens, 0)
            ctx = meta.context_lens[sel]
            max_ctx = int(ctx.max())
            qs = qs.to(ctx.device)
            seq_of_token, row_of_token, mask = gather_plan(qs, ctx, int(lens.max()), max_ctx)
            part = AttentionMetadata(query_start=qs, context_lens=ctx,
                                     slot_mapping=meta.slot_mapping[token_index.to(ctx.device)],
                                     key_slots=meta.key_slots[sel, :max_ctx], block_size=meta.block_size,
                                     max_query_len=int(lens.max()), seq_of_token=seq_of_token,
                                     row_of_token=row_of_token, mask=mask)
            groups.append((token_index.to(ctx.device), part))
        return dataclasses.replace(meta, groups=tuple(groups))

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], num_new: list[int], copies=(), logits_rows: list[int] | None = None,
            num_logits: list[int] | None = None):
        """Forward the step; return logits for the listed sequence indices (default: every
        sequence), taken at each one's last new token — or at its last ``num_logits[j]`` new
        tokens (speculative verification), stacked in order: ``[sum(num_logits), V]``."""
        self.copy_blocks(list(copies))
        input_ids, positions, meta = self.prepare(seqs, num_new)
        meta = self.split_decodes_from_prefills(meta)
        hidden = self.model(input_ids, positions, self.kv_caches, meta)
        rows = list(range(len(seqs)) if logits_rows is None else logits_rows)
        last = meta.query_start[1:] - 1
        if num_logits is None:
            return self.model.compute_logits(hidden[last[rows]])
        index = [int(last[r]) - m + 1 + j for r, m in zip(rows, num_logits) for j in range(m)]
        return self.model.compute_logits(hidden[index])

    @torch.inference_mode()
    def run_all_logits(self, seqs: list[Sequence], num_new: list[int]) -> torch.Tensor:
        """Logits at every new token (speculative verification, teacher forcing): ``[T, V]``."""
        input_ids, positions, meta = self.prepare(seqs, num_new)
        hidden = self.model(input_ids, positions, self.kv_caches, meta)
        return self.model.compute_logits(hidden)
