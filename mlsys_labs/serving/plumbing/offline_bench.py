"""Offline measurements shared by the benchmarks and the demo (vLLM's ``benchmark_throughput``
methodology): seeded prompts, mixed output lengths, EOS ignored, output tokens per second.

- :func:`run_engine` — our engine on a workload, with the KV-cache occupancy sampled every step;
- :func:`run_hf_static` / :func:`run_hf_one_at_a_time` — transformers ``generate`` on the same weights;
- :func:`kv_waste` — allocated-but-empty slots against a full-context reservation baseline;
- :func:`run_prefix_workload` — a long shared system prompt, prefix caching on or off.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..engine import LLMEngine
from ..sequence import SamplingParams


@dataclass
class Workload:
    prompts: list[list[int]]
    output_lens: list[int]

    @property
    def output_tokens(self) -> int:
        return sum(self.output_lens)

    @property
    def max_total_len(self) -> int:
        return max(len(p) + o for p, o in zip(self.prompts, self.output_lens))


def make_workload(n: int, seed: int, input_len=(16, 128), output_len=(16, 256), bos: int = 256) -> Workload:
    rng = np.random.default_rng(seed)
    prompts = [[bos] + rng.integers(0, 256, int(rng.integers(input_len[0], input_len[1] + 1))).tolist()
               for _ in range(n)]
    return Workload(prompts, rng.integers(output_len[0], output_len[1] + 1, n).tolist())


@dataclass
class EngineRun:
    seconds: float
    output_tokens: int
    steps: int
    allocated_slots: list[int] = field(default_factory=list)   # per step
    live_tokens: list[int] = field(default_factory=list)       # per step
    running: list[int] = field(default_factory=list)           # sequences per step
    preemptions: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds


def run_engine(engine: LLMEngine, wl: Workload, sample_kv: bool = False) -> EngineRun:
    params = [SamplingParams(temperature=0, max_tokens=o, ignore_eos=True) for o in wl.output_lens]
    for p, sp in zip(wl.prompts, params):
        engine.add_request(p, sp)
    run = EngineRun(0.0, 0, 0)
    bm = engine.block_manager
    t0 = time.perf_counter()
    while engine.has_unfinished():
        outs = engine.step()
        run.steps += 1
        run.output_tokens += sum(len(o.new_token_ids) for o in outs)
        if sample_kv:
            running = engine.scheduler.running
            run.allocated_slots.append((bm.num_blocks - bm.num_free_blocks) * bm.block_size)
            run.live_tokens.append(sum(s.context_len for s in running))
            run.running.append(len(running))
    run.seconds = time.perf_counter() - t0
    run.preemptions = engine.scheduler.num_preemptions
    engine.block_manager.assert_all_free()
    return run


def kv_waste(run: EngineRun, reserve_per_request: int) -> dict:
    """Fraction of allocated KV slots not holding a live token, summed over the run's steps,
    for the paged cache and for a baseline reserving ``reserve_per_request`` slots per running request."""
    alloc, live = sum(run.allocated_slots), sum(run.live_tokens)
    reserved = sum(n * reserve_per_request for n in run.running)
    return {"paged_waste": 1 - live / alloc if alloc else 0.0,
            "reserved_waste": 1 - live / reserved if reserved else 0.0,
            "allocated_slot_steps": alloc, "live_token_steps": live, "reserved_slot_steps": reserved}


def load_hf(path, dtype=torch.float32):
    """transformers' LlamaForCausalLM on the same weights (offline, no progress bars)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return LlamaForCausalLM.from_pretrained(path, dtype=dtype).eval()


@torch.inference_mode()
def run_hf_static(hf, wl: Workload, batch_size: int, pad_id: int = 258) -> float:
    """Static batching: batches of ``batch_size`` in arrival order, left-padded, each run until its
    longest request is done.  Returns seconds (useful tokens are ``wl.output_tokens``)."""
    dev = next(hf.parameters()).device
    t0 = time.perf_counter()
    for i in range(0, len(wl.prompts), batch_size):
        ps = wl.prompts[i:i + batch_size]
        L = max(map(len, ps))
        ids = torch.tensor([[pad_id] * (L - len(p)) + p for p in ps], device=dev)
        mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in ps], device=dev)
        hf.generate(ids, attention_mask=mask, max_new_tokens=max(wl.output_lens[i:i + batch_size]),
                    min_new_tokens=max(wl.output_lens[i:i + batch_size]), do_sample=False,
                    eos_token_id=None, pad_token_id=pad_id)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_hf_one_at_a_time(hf, wl: Workload) -> float:
    return run_hf_static(hf, wl, batch_size=1)


def prefix_workload(n: int, seed: int, system_len: int = 512, suffix_len=(16, 32), output_len: int = 8) -> Workload:
    rng = np.random.default_rng(seed)
    system = [256] + rng.integers(0, 256, system_len).tolist()
    prompts = [system + rng.integers(0, 256, int(rng.integers(suffix_len[0], suffix_len[1] + 1))).tolist()
               for _ in range(n)]
    return Workload(prompts, [output_len] * n)


def run_prefix_workload(engine: LLMEngine, wl: Workload) -> dict:
    """Requests arrive one after another (each after the previous finished, as in a chat);
    returns prefill tokens computed and the time to first token of each request."""
    ttfts = []
    before = engine.metrics.prefill_tokens_computed
    for p, o in zip(wl.prompts, wl.output_lens):
        t0 = time.perf_counter()
        engine.add_request(p, SamplingParams(temperature=0, max_tokens=o, ignore_eos=True))
        first = None
        while engine.has_unfinished():
            outs = engine.step()
            if first is None and any(out.new_token_ids for out in outs):
                first = time.perf_counter() - t0
        ttfts.append(first)
    engine.block_manager.assert_all_free()
    return {"prefill_tokens": engine.metrics.prefill_tokens_computed - before,
            "median_ttft_s": statistics.median(ttfts), "ttft_s": ttfts,
            "hit_rate": engine.block_manager.stats.hit_rate}
