"""Lab 5 benchmark: prefix caching on a workload sharing a long system prompt (512 tokens,
then 16–32 tokens of each user's own, 8 output tokens), requests arriving one after another
as in a chat.  Against the cache turned off, in the same run:

- prefill tokens computed, cut by >= 80 % (target ``1 - on/off >= 0.8``);
- median time to first token, ``off / on >= 2``.

16 requests (prefill work, not request count, is what the figure measures).
"""
from __future__ import annotations

import pytest

from mlsys_labs.common.bench import record_figure
from mlsys_labs.serving.config import EngineConfig
from mlsys_labs.serving.engine import LLMEngine
from mlsys_labs.serving.model import default_model_path, load_pretrained
from mlsys_labs.serving.plumbing.offline_bench import prefix_workload, run_prefix_workload


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prefix_caching(benchmark):
    wl = prefix_workload(16, 99, system_len=512)
    model = load_pretrained(default_model_path())

    def run(caching: bool):
        return run_prefix_workload(LLMEngine(model, EngineConfig(num_blocks=512, enable_prefix_caching=caching)), wl)

    run(True)                                               # warm-up (allocator, kernels)
    on = benchmark.pedantic(lambda: run(True), rounds=1, iterations=1)
    off = run(False)
    cut = 1 - on["prefill_tokens"] / off["prefill_tokens"]
    speedup = off["median_ttft_s"] / on["median_ttft_s"]
    detail = {"prefill_tokens_on": on["prefill_tokens"], "prefill_tokens_off": off["prefill_tokens"],
              "median_ttft_on_s": on["median_ttft_s"], "median_ttft_off_s": off["median_ttft_s"],
              "hit_rate": on["hit_rate"], "requests": len(wl.prompts), "system_prompt_tokens": 513}
    benchmark.extra_info.update(detail)
    print(f"\nprefill tokens {off['prefill_tokens']} -> {on['prefill_tokens']} (cut {cut:.3f}); "
          f"median TTFT {off['median_ttft_s'] * 1e3:.1f} -> {on['median_ttft_s'] * 1e3:.1f} ms ({speedup:.2f}x)")
    record_figure(lab=5, name="prefix caching: prefill tokens cut", value=cut, unit="", target=">= 0.8",
                  peer="prefix caching off", detail=detail)
    record_figure(lab=5, name="prefix caching: median TTFT, off / on", value=speedup, unit="x", target=">= 2",
                  peer="prefix caching off", detail=detail)
