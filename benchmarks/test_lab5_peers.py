"""Lab 5 benchmark against what a user would pick instead, on the same Hugging Face checkpoint
(built locally: 4 layers, d=256, 8 heads / 2 KV heads, BPE vocabulary of 512) and the same
workload, in one run:

- offline: transformers' own continuous batching, ``model.generate_batch`` (paged attention),
  with the same KV memory (256 blocks of 16 tokens) and token budget (512) as our engine;
  greedy, fixed output length, EOS ignored; output tokens per second (target ``>= 1``);
- online: ``transformers serve --continuous-batching`` against ``mlsys-labs serve``, each its
  own process, driven by ``mlsys-labs bench-serve``'s load generator (streaming completions):
  median TTFT and inter-token latency at the same Poisson rate (targets: ours ``<=`` theirs),
  and the output throughput of a shared-prefix workload sent all at once (target ``>= 2``).
  ``ignore_eos`` is not sent (transformers serve answers 422 to it): a request may end at an
  end token; throughputs count the tokens each server reports in ``usage``.

One torch thread per process: a shared 2-core VM slows to a crawl when OpenMP threads
oversubscribe it.  The greedy tokens of both offline runs are compared too.
"""
from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlsys_labs.common.bench import machine_name, record_figure

SEED = 1234
BENCH_SPEC = dict(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048)
POOL_BLOCKS, BLOCK, BUDGET = 256, 16, 512
BIN = Path(sys.executable).parent      # the environment's mlsys-labs and transformers commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from mlsys_labs.serving.plumbing.checkpoint import TinyCheckpoint, build_checkpoint

    os.environ["HF_HUB_OFFLINE"] = "1"
    return build_checkpoint(tmp_path_factory.mktemp("bench") / "llama-bench", TinyCheckpoint(**BENCH_SPEC, seed=SEED))


def token_workload(n: int, seed: int, input_len=(16, 128)) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[0] + rng.integers(5, BENCH_SPEC["vocab_size"], int(rng.integers(*input_len))).tolist() for _ in range(n)]


def run_generate_batch(hf, prompts, out_len: int):
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    gc = GenerationConfig(max_new_tokens=out_len, do_sample=False, eos_token_id=-1, pad_token_id=1)
    cb = ContinuousBatchingConfig(page_size=BLOCK, num_blocks=POOL_BLOCKS, max_batch_tokens=BUDGET,
                                  use_cuda_graph=False)
    t0 = time.perf_counter()
    out = hf.generate_batch(prompts, generation_config=gc, continuous_batching_config=cb, warmup=False)
    seconds = time.perf_counter() - t0
    tokens = [out[f"req_{i}"].generated_tokens for i in range(len(prompts))]
    return seconds, tokens


def test_offline_throughput_vs_transformers_generate_batch(benchmark, checkpoint):
    from transformers import AutoModelForCausalLM

    from mlsys_labs.serving import EngineConfig, LLMEngine, SamplingParams

    n, out_len = 32, 64
    prompts = token_workload(n, SEED)
    hf = AutoModelForCausalLM.from_pretrained(checkpoint, dtype="float32").eval()
    cfg = EngineConfig(num_blocks=POOL_BLOCKS, block_size=BLOCK, max_num_batched_tokens=BUDGET, max_num_seqs=64)
    sp = SamplingParams(temperature=0, max_tokens=out_len, ignore_eos=True)
    engine = LLMEngine.from_pretrained(checkpoint, cfg)
    warm = token_workload(4, SEED + 1)
    engine.generate(warm, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    run_generate_batch(hf, warm, 4)

    def ours():
        t0 = time.perf_counter()
        outs = engine.generate(prompts, sp)
        return time.perf_counter() - t0, [o[0].token_ids for o in outs]

    ours_s, ours_tokens = benchmark.pedantic(ours, rounds=1, iterations=1)
    theirs_s, theirs_tokens = run_generate_batch(hf, prompts, out_len)
    same = sum(a == b for a, b in zip(ours_tokens, theirs_tokens))
    tokens = n * out_len
    detail = {"machine": machine_name(), "load_avg": os.getloadavg()[0], "requests": n, "output_len": out_len,
              "ours_tok_s": tokens / ours_s, "generate_batch_tok_s": tokens / theirs_s,
              "identical_outputs": same, "kv_blocks": POOL_BLOCKS, "block_size": BLOCK}
    benchmark.extra_info.update(detail)
    print(f"\nours {tokens / ours_s:.1f} tok/s; transformers generate_batch {tokens / theirs_s:.1f} tok/s; "
          f"{same}/{n} outputs identical")
    record_figure(lab=5, name="offline throughput: ours / transformers generate_batch (same checkpoint, KV memory)",
                  value=theirs_s / ours_s, unit="x", target=">= 1", peer="transformers generate_batch",
                  detail=detail)


# ------------------------------------------------------------------ online
def start_server(argv: list[str], url: str, log_path, timeout: float = 600.0) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(log_path, "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[:3]} exited: {open(log_path).read()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise RuntimeError(f"{argv[:3]} did not start in {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def shared_prefix_workload(n: int, seed: int, out_len: int) -> list[tuple[str, int]]:
    from mlsys_labs.serving.plumbing.checkpoint import CORPUS

    rng = np.random.default_rng(seed)
    system = CORPUS.read_text(encoding="utf-8")[:1200]
    return [(system + "".join(chr(c) for c in rng.integers(97, 123, 24)), out_len) for _ in range(n)]


def drive(url: str, model: str, workloads: dict) -> dict:
    from mlsys_labs.serving.plumbing.loadgen import run_rate

    asyncio.run(run_rate(url, [("warm up", 4)] * 2, math.inf, SEED, model, ignore_eos=False))
    return {name: asyncio.run(run_rate(url, wl, rate, SEED, model, ignore_eos=False))   # transformers serve refuses ignore_eos
            for name, (wl, rate) in workloads.items()}


def test_online_latency_vs_transformers_serve(benchmark, checkpoint, tmp_path):
    from mlsys_labs.common.procs import free_port
    from mlsys_labs.serving.plumbing.loadgen import format_summary, make_workload

    workloads = {"poisson 1 req/s": (make_workload(16, SEED, (16, 128), (16, 64)), 1.0),
                 "shared prefix, all at once": (shared_prefix_workload(16, SEED, 32), math.inf)}
    results = {}
    peers = {
        "ours": [str(BIN / "mlsys-labs"), "serve", "--model", str(checkpoint), "--device", "cpu",
                 "--num-blocks", str(POOL_BLOCKS * 4), "--max-num-batched-tokens", str(BUDGET)],
        "transformers serve": [str(BIN / "transformers"), "serve", str(checkpoint),
                               "--continuous-batching", "--device", "cpu", "--cb-block-size", str(BLOCK),
                               "--cb-num-blocks", str(POOL_BLOCKS * 4), "--cb-max-batch-tokens", str(BUDGET)],
    }
    for name, argv in peers.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = argv + (["--host", "127.0.0.1", "--port", str(port)])
        proc = start_server(argv, url, tmp_path / f"{name.split()[0]}.log")
        try:
            model = str(checkpoint) if name != "ours" else checkpoint.name
            results[name] = drive(url, model, workloads)
        finally:
            stop_server(proc)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    for name, per in results.items():
        for wl, s in per.items():
            print(f"\n{name} — {wl}\n{format_summary(s)}")
    ours, theirs = results["ours"], results["transformers serve"]
    p, sh = "poisson 1 req/s", "shared prefix, all at once"
    detail = {"machine": machine_name(), "load_avg": os.getloadavg()[0], "summaries": results}
    benchmark.extra_info.update({"machine": detail["machine"], "load_avg": detail["load_avg"]})
    record_figure(lab=5, name="online p50 TTFT: ours / transformers serve (1 req/s)",
                  value=ours[p]["ttft_s"]["median"] / theirs[p]["ttft_s"]["median"], unit="x", target="<= 1",
                  peer="transformers serve --continuous-batching", detail=detail)
    record_figure(lab=5, name="online p50 ITL: ours / transformers serve (1 req/s)",
                  value=ours[p]["itl_s"]["median"] / theirs[p]["itl_s"]["median"], unit="x", target="<= 1",
                  peer="transformers serve --continuous-batching", detail=detail)
    record_figure(lab=5, name="online shared-prefix throughput: ours / transformers serve",
                  value=ours[sh]["output_throughput"] / theirs[sh]["output_throughput"], unit="x", target=">= 2",
                  peer="transformers serve --continuous-batching", detail=detail)
