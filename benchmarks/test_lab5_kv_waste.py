"""Lab 5 benchmark: KV-cache waste — allocated slots not holding a live token, summed over every
step of an offline run — for the paged cache (block size 16) and for a baseline that reserves the
full context (the model's 2048 positions) per running request, and one that reserves
prompt + max_tokens (transformers-style static reservation).  Target: paged waste <= 0.05.

Waste is counted, not timed, so it is the same on any machine.  32 requests (shrunk from 64:
the number does not depend on the request count, only on the lengths), outputs 16–256.
"""
from __future__ import annotations

import pytest

from mlsys_labs.serving.config import EngineConfig
from mlsys_labs.serving.engine import LLMEngine
from mlsys_labs.serving.model import default_model_path, load_pretrained
from mlsys_labs.serving.plumbing.offline_bench import kv_waste, make_workload, run_engine
from mlsys_labs.common.bench import record_figure


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_kv_cache_waste(benchmark):
    wl = make_workload(32, 4321, input_len=(16, 128), output_len=(16, 256))
    model = load_pretrained(default_model_path())
    engine = LLMEngine(model, EngineConfig(num_blocks=1024, block_size=16, max_num_seqs=64))
    run = benchmark.pedantic(lambda: run_engine(engine, wl, sample_kv=True), rounds=1, iterations=1)
    full = kv_waste(run, reserve_per_request=model.config.max_position_embeddings)
    per_request = kv_waste(run, reserve_per_request=wl.max_total_len)
    detail = {**full, "reserve_prompt_plus_max_tokens_waste": per_request["reserved_waste"], "steps": run.steps}
    benchmark.extra_info.update(detail)
    print(f"\npaged waste {full['paged_waste']:.4f}; full-context reservation {full['reserved_waste']:.4f}; "
          f"longest-request reservation {per_request['reserved_waste']:.4f}")
    record_figure(lab=5, name="KV-cache waste, paged (block 16)", value=full["paged_waste"], unit="",
                  target="<= 0.05", peer="full-context reservation", detail=detail)
    record_figure(lab=5, name="KV-cache waste, full-context reservation (2048 per request)",
                  value=full["reserved_waste"], unit="", detail=detail)
    record_figure(lab=5, name="KV-cache waste, reserving the longest request's length per request",
                  value=per_request["reserved_waste"], unit="", detail=detail)
