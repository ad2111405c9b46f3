"""Lab 5 — an LLM inference server in the shape of vLLM / nano-vllm.

Request → :mod:`scheduler` (continuous batching, chunked prefill, preemption) →
:mod:`block_manager` (paged KV cache, prefix caching, copy-on-write) →
:mod:`model` (a Llama decoder over the paged cache, :mod:`attention`; :mod:`model_runner`
turns a batch of sequences into one forward pass: flattened tokens, slots, block tables) →
:mod:`sampler` (temperature, top-k, top-p; penalties, ``logit_bias``, ``min_p`` and
log-probabilities for the API) → :mod:`engine` (the step loop; :mod:`sequence` the typed
state of one generation stream, :mod:`metrics` its Prometheus counters).

The plumbing around the engine — the HTTP server, the load generator, the offline
benchmarks and the demo — lives in :mod:`plumbing`.

Real checkpoints: :mod:`config` reads a Hugging Face Llama / Mistral / Qwen2 ``config.json``
(RoPE scaling, GQA, tied embeddings, q/k/v biases) and refuses what the decoder does not
model; :mod:`tokenizer` has the byte tokenizer and a checkpoint's own (:class:`HFTokenizer`).

Options from the readings: :mod:`speculative` (SpecInfer / Leviathan et al.; prompt-lookup
drafting inside the engine with ``EngineConfig.speculative``),
:mod:`quant` (int8 weight-only, LLM.int8() / AWQ family, on lab 4's per-channel quantiser;
imported on demand: ``from mlsys_labs.serving import quant``), StreamingLLM attention sinks
(``EngineConfig.sink_blocks`` / ``window_blocks``), and :mod:`triton_decode` (the decode step's
paged attention as one Triton kernel, vLLM's ``paged_attention_v1``; imported on demand:
``from mlsys_labs.serving import triton_decode``).
"""
from .config import AttentionBackend, EngineConfig, ModelConfig, RopeScaling, SpeculativeConfig
from .attention import AttentionMetadata, gather_plan, paged_attention
from .block_manager import BlockManager
from .engine import Completion, LLMEngine, RequestOutput
from .model import (LlamaForCausalLM, apply_rope, default_draft_path, default_model_path, load_pretrained,
                    rope_cos_sin)
from .model_runner import ModelRunner
from .sampler import TokenLogprobs, apply_min_p, apply_penalties, choose_token, filter_logits, sample_token
from .scheduler import RequestRejected, Scheduler
from .sequence import SamplingParams, Sequence, SequenceStatus
from .speculative import SpeculativeStats, greedy_generate, ngram_propose, speculative_generate
from .tokenizer import BOS, EOS, ByteTokenizer, HFTokenizer, IncrementalDecoder, load_tokenizer

__all__ = ["EngineConfig", "ModelConfig", "SamplingParams", "Sequence", "SequenceStatus", "ByteTokenizer",
           "LLMEngine", "AttentionBackend", "RopeScaling", "SpeculativeConfig", "SpeculativeStats",
           "HFTokenizer", "load_tokenizer",
           # the step loop's parts and the sampler's knobs
           "Scheduler", "RequestRejected", "BlockManager", "RequestOutput", "Completion", "TokenLogprobs",
           "filter_logits", "sample_token", "choose_token", "apply_penalties", "apply_min_p",
           "IncrementalDecoder", "BOS", "EOS",
           # the model over the paged cache
           "LlamaForCausalLM", "load_pretrained", "default_model_path", "default_draft_path", "rope_cos_sin",
           "apply_rope", "AttentionMetadata", "gather_plan", "paged_attention", "ModelRunner",
           # the options from the readings
           "ngram_propose", "speculative_generate", "greedy_generate"]
