"""Lab 5 — an LLM inference server in the shape of vLLM / nano-vllm.

Request → :mod:`scheduler` (continuous batching, chunked prefill, preemption) →
:mod:`block_manager` (paged KV cache, prefix caching, copy-on-write) →
:mod:`model` (a Llama decoder over the paged cache, :mod:`attention`) →
:mod:`sampler` → :mod:`engine` (the step loop).

The plumbing around the engine — the HTTP server, the load generator, the offline
benchmarks and the demo — lives in :mod:`plumbing`.

Options from the readings: :mod:`speculative` (SpecInfer / Leviathan et al.),
:mod:`quant` (int8 weight-only, LLM.int8() / AWQ family), StreamingLLM attention sinks
(``EngineConfig.sink_blocks`` / ``window_blocks``).
"""
from .config import EngineConfig, ModelConfig
from .sequence import SamplingParams, Sequence, SequenceStatus
from .tokenizer import ByteTokenizer

__all__ = ["EngineConfig", "ModelConfig", "SamplingParams", "Sequence", "SequenceStatus", "ByteTokenizer"]
