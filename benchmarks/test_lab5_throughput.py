"""Lab 5 benchmark: offline throughput of our engine against transformers ``generate`` on the
same weights, in one run (vLLM's benchmark_throughput methodology: seeded prompts, mixed
output lengths 16–256, EOS ignored, output tokens per second).

Peers:
- static batching with the **same KV memory** as our pool (4096 token slots): transformers
  reserves prompt + max output for every row of a batch, so it fits ``4096 // longest`` rows
  (the comparison PagedAttention's paper makes) — target ``ours / peer >= 2``;
- static batching of all 64 requests in one batch (transformers' best case, memory unlimited);
- one request at a time (measured on the first 8 requests; tokens/s is per token).

Sizes: the issue's 64 requests and outputs 16–256 tokens; prompts 16–128 tokens.  One torch
thread for both sides (a shared 2-core VM slows to a crawl when OpenMP threads oversubscribe).
"""
from __future__ import annotations

import pytest

from mlsys_labs.common.bench import machine_name, record_figure
from mlsys_labs.serving.config import EngineConfig
from mlsys_labs.serving.engine import LLMEngine
from mlsys_labs.serving.model import default_model_path, load_pretrained
from mlsys_labs.serving.plumbing.offline_bench import (Workload, load_hf, make_workload, run_engine, run_hf_one_at_a_time,
                                              run_hf_static)

N, SEED, POOL_BLOCKS, BLOCK = 64, 1234, 256, 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_offline_throughput_vs_transformers(benchmark):
    wl = make_workload(N, SEED, input_len=(16, 128), output_len=(16, 256))
    path = default_model_path()
    model = load_pretrained(path)
    hf = load_hf(path)
    cfg = EngineConfig(num_blocks=POOL_BLOCKS, block_size=BLOCK, max_num_seqs=64, max_num_batched_tokens=512)
    static_bs = max(1, POOL_BLOCKS * BLOCK // wl.max_total_len)

    def ours():
        return run_engine(LLMEngine(model, cfg), wl)

    run_engine(LLMEngine(model, cfg), make_workload(4, SEED + 1, output_len=(4, 8)))   # warm-up
    run = benchmark.pedantic(ours, rounds=1, iterations=1)
    static_s = run_hf_static(hf, wl, static_bs)
    static_all_s = run_hf_static(hf, wl, N)
    few = Workload(wl.prompts[:8], wl.output_lens[:8])
    single_s = run_hf_one_at_a_time(hf, few)

    ours_tps = run.tokens_per_s
    static_tps = wl.output_tokens / static_s
    static_all_tps = wl.output_tokens / static_all_s
    single_tps = few.output_tokens / single_s
    detail = {"machine": machine_name(), "requests": N, "output_tokens": wl.output_tokens,
              "ours_tok_s": ours_tps, "ours_steps": run.steps, "ours_preemptions": run.preemptions,
              "hf_static_batch_size": static_bs, "hf_static_tok_s": static_tps,
              "hf_static_all_tok_s": static_all_tps, "hf_one_at_a_time_tok_s": single_tps,
              "kv_pool_slots": POOL_BLOCKS * BLOCK, "torch_threads": 1}
    benchmark.extra_info.update(detail)
    print(f"\nours {ours_tps:.1f} tok/s; transformers static (batch {static_bs}, same KV memory) {static_tps:.1f}; "
          f"static (batch {N}) {static_all_tps:.1f}; one at a time {single_tps:.1f}")
    record_figure(lab=5, name="offline throughput: ours / transformers static batching (same KV memory)",
                  value=ours_tps / static_tps, unit="x", target=">= 2",
                  peer=f"transformers generate, static batches of {static_bs}", detail=detail)
    record_figure(lab=5, name="offline throughput: ours / transformers static batching (all 64 in one batch)",
                  value=ours_tps / static_all_tps, unit="x", peer="transformers generate, one batch of 64",
                  detail=detail)
    record_figure(lab=5, name="offline throughput: ours / transformers one request at a time",
                  value=ours_tps / single_tps, unit="x", peer="transformers generate, batch 1", detail=detail)
