"""``mlsys-labs run 5`` after the tests and benchmarks: the engine end to end on the default model.

1. the default model (created from a seed on first use) and a few completions;
2. offline throughput against transformers (static batching with the same KV memory);
3. KV-cache occupancy over that run (plot: allocated vs live vs a full-context reservation);
4. prefix caching on a shared system prompt; speculative decoding; int8 weight-only quality;
5. the HTTP server in this process and ``bench-serve`` against it.
Plots go to ``reports/lab5/``.
"""
from __future__ import annotations

import argparse
import copy
import math

import torch

from ...common.bench import machine_name
from ...common.cli_args import at_least
from ...common.paths import reports_dir
from ..config import EngineConfig
from ..engine import LLMEngine
from ..model import default_draft_path, default_model_path, load_pretrained
from ..model_runner import ModelRunner
from ..quant import linear_weight_bytes, quantize_model_int8
from ..sequence import SamplingParams, Sequence
from ..speculative import speculative_generate
from .loadgen import format_summary, run_bench
from .offline_bench import (kv_waste, load_hf, make_workload, prefix_workload, run_engine, run_hf_static,
                            run_prefix_workload)
from .server import ServerThread


def plot_kv(run, reserve: int, path):
    from ...common.plotting import figure, save

    fig, ax = figure()
    steps = range(len(run.allocated_slots))
    ax.plot(steps, [n * reserve for n in run.running], label=f"full-context reservation ({reserve}/request)")
    ax.plot(steps, run.allocated_slots, label="paged: allocated slots")
    ax.plot(steps, run.live_tokens, label="live tokens", linestyle="--")
    ax.set_xlabel("engine step")
    ax.set_ylabel("KV slots")
    ax.set_yscale("log")
    ax.set_title("KV-cache occupancy (block size 16)")
    ax.legend()
    return save(fig, path)


def plot_ttft(summaries, path):
    from ...common.plotting import figure, save

    fig, ax = figure()
    labels = ["all at once" if math.isinf(s["rate"]) else f"{s['rate']:g} req/s" for s in summaries]
    for key, name in [("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")]:
        ax.plot(labels, [s[key]["median"] * 1e3 for s in summaries], marker="o", label=f"median {name}")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("bench-serve: latency vs arrival rate")
    ax.legend()
    return save(fig, path)


def _offline(model, path, requests: int, out):
    """Offline throughput against transformers' static batching with the same KV memory, and KV waste."""
    wl = make_workload(requests, 7, output_len=(16, 256))
    cfg = EngineConfig(num_blocks=256, max_num_seqs=64)
    run_engine(LLMEngine(model, cfg), make_workload(4, 1, output_len=(4, 8)))     # warm-up
    run = run_engine(LLMEngine(model, cfg), wl, sample_kv=True)
    hf = load_hf(path)
    bs = max(1, 256 * 16 // wl.max_total_len)
    run_hf_static(hf, make_workload(2, 1, output_len=(4, 8)), 2)                   # warm-up
    hf_s = run_hf_static(hf, wl, bs)
    waste = kv_waste(run, model.config.max_position_embeddings)
    plot_kv(run, model.config.max_position_embeddings, out / "kv_occupancy.png")
    print(f"offline, {requests} requests: ours {run.tokens_per_s:.1f} tok/s, transformers static batching "
          f"(batch {bs}, same KV memory) {wl.output_tokens / hf_s:.1f} tok/s -> "
          f"{run.tokens_per_s * hf_s / wl.output_tokens:.2f}x (target >= 2)")
    print(f"KV waste: paged {waste['paged_waste']:.3f} (target <= 0.05), "
          f"full-context reservation {waste['reserved_waste']:.3f}")
    return wl


def _prefix_caching(model) -> None:
    pw = prefix_workload(8, 3)
    on = run_prefix_workload(LLMEngine(model, EngineConfig(num_blocks=256)), pw)
    off = run_prefix_workload(LLMEngine(model, EngineConfig(num_blocks=256, enable_prefix_caching=False)), pw)
    print(f"prefix caching: prefill tokens {off['prefill_tokens']} -> {on['prefill_tokens']} "
          f"(cut {1 - on['prefill_tokens'] / off['prefill_tokens']:.2f}, target >= 0.8); median TTFT "
          f"{off['median_ttft_s'] * 1e3:.0f} -> {on['median_ttft_s'] * 1e3:.0f} ms "
          f"({off['median_ttft_s'] / on['median_ttft_s']:.1f}x, target >= 2)")


def _speculative_and_int8(model, prompt: list[int]) -> None:
    """Two drafts for speculative decoding, and the int8 copy's quality (KL, greedy agreement)."""
    qmodel = quantize_model_int8(copy.deepcopy(model))
    for name, draft in [("early-exit draft (1 of 4 layers)", load_pretrained(default_draft_path())),
                        ("int8 copy as draft", qmodel)]:
        r = speculative_generate(model, draft, prompt, 48, k=4)
        print(f"speculative decoding, {name}: acceptance {r.acceptance_rate:.2f}, "
              f"{48 / r.target_passes:.2f} tokens per target pass")
    with torch.no_grad():
        lps = []
        for m in (model, qmodel):
            s = Sequence("q", prompt, SamplingParams())
            s.block_table = list(range(-(-len(prompt) // 16)))
            lps.append(ModelRunner(m, 16, 16).run_all_logits([s], [len(prompt)]).double().log_softmax(-1))
        kl = float((lps[0].exp() * (lps[0] - lps[1])).sum(-1).mean())
        agree = float((lps[0].argmax(-1) == lps[1].argmax(-1)).double().mean())
    print(f"int8 weight-only: linear weights {linear_weight_bytes(model) / 2**20:.1f} -> "
          f"{linear_weight_bytes(qmodel) / 2**20:.1f} MiB; KL(fp32||int8) {kl:.2e} nats/token, "
          f"greedy agreement {agree:.3f} over {len(prompt)} positions")


def _online(model, out) -> None:
    with ServerThread(LLMEngine(model, EngineConfig(num_blocks=512, max_num_seqs=32))) as srv:
        print(f"server on {srv.url}; bench-serve (16 prompts, outputs 16-64):")
        summaries = run_bench(srv.url, [4.0, math.inf], 16, 0, (16, 128), (16, 64))
    for s in summaries:
        print(format_summary(s))
    plot_ttft(summaries, out / "bench_serve_latency.png")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mlsys-labs run 5 (demo)")
    p.add_argument("--requests", type=at_least(1), default=32)
    args = p.parse_args(argv)
    from tqdm import tqdm

    torch.set_num_threads(1)
    out = reports_dir("lab5")
    path = default_model_path()
    model = load_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Lab 5 demo on {machine_name()}\nmodel: {path} ({n_params / 1e6:.2f} M parameters, "
          f"{n_params * 4 / 2**20:.1f} MiB fp32, {model.config.num_hidden_layers} layers, byte-level vocabulary)")
    engine = LLMEngine(model, EngineConfig(num_blocks=256))
    for c in engine.generate(["Hello, world", "Paged attention is"], SamplingParams(temperature=0.8, seed=0, max_tokens=24)):
        print(f"  sample ({c[0].finish_reason}): {c[0].text!r}")
    steps = tqdm(total=4, desc="lab 5 demo", leave=False)
    wl = _offline(model, path, args.requests, out)
    steps.update()
    _prefix_caching(model)
    steps.update()
    _speculative_and_int8(model, wl.prompts[0])
    steps.update()
    _online(model, out)
    steps.update()
    steps.close()
    print(f"plots: {out}/kv_occupancy.png, {out}/bench_serve_latency.png")
    return 0
