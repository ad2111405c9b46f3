"""Lab 5 on CUDA: offline throughput on a larger random-weight Llama in bf16 against transformers
``generate`` (static batching with the same KV memory), written to the results file with the
card named.  Skipped without a GPU."""
from __future__ import annotations

import pytest
import torch

from mlsys_labs.common.bench import machine_name, record_figure
from mlsys_labs.common.paths import state_dir
from mlsys_labs.serving.config import EngineConfig, ModelConfig
from mlsys_labs.serving.engine import LLMEngine
from mlsys_labs.serving.model import load_pretrained, random_model, save_pretrained
from mlsys_labs.serving.plumbing.offline_bench import load_hf, make_workload, run_engine, run_hf_static

GPU_CONFIG = ModelConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                         num_key_value_heads=4)     # ~110 M parameters


def gpu_model_path():
    path = state_dir("lab5", "models", "gpu-llama-110m-seed7")
    if not (path / "model.safetensors").exists():
        save_pretrained(random_model(GPU_CONFIG, 7), path)
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gpu_offline_throughput_bf16(benchmark, backend):
    path = gpu_model_path()
    wl = make_workload(64, 1234, input_len=(16, 128), output_len=(16, 256))
    model = load_pretrained(path, dtype=torch.bfloat16, device="cuda")
    hf = load_hf(path, dtype=torch.bfloat16).cuda()
    blocks = 256
    cfg = EngineConfig(num_blocks=blocks, max_num_seqs=64, max_num_batched_tokens=1024, device="cuda",
                       dtype="bfloat16", attention_backend=backend)
    run_engine(LLMEngine(model, cfg), make_workload(4, 1, output_len=(4, 8)))        # warm-up
    run = benchmark.pedantic(lambda: run_engine(LLMEngine(model, cfg), wl), rounds=1, iterations=1)
    bs = max(1, blocks * 16 // wl.max_total_len)
    hf_s = run_hf_static(hf, wl, bs)
    ratio = run.tokens_per_s / (wl.output_tokens / hf_s)
    detail = {"gpu": machine_name(), "ours_tok_s": run.tokens_per_s, "hf_tok_s": wl.output_tokens / hf_s,
              "hf_batch": bs, "backend": backend, "model": "110M random Llama, bf16"}
    benchmark.extra_info.update(detail)
    record_figure(lab=5, name=f"GPU offline throughput ({backend} decode): ours / transformers static batching",
                  value=ratio, unit="x", target=">= 2", peer=f"transformers generate bf16, batches of {bs}",
                  detail=detail)
