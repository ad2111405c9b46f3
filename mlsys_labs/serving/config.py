"""Configuration: the model's shape (Hugging Face ``config.json`` fields) and the engine's knobs."""
from __future__ import annotations

import enum
import json
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path


SUPPORTED_MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling for contexts longer than pre-training's (``rope_parameters``).

    ``linear`` (Chen et al. 2023, position interpolation): every frequency divided by ``factor``.
    ``llama3`` (Llama 3.1): wavelengths shorter than ``original_max / high_freq_factor`` kept,
    longer than ``original_max / low_freq_factor`` divided by ``factor``, a smooth blend between."""

    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass
class ModelConfig:
    """The subset of a Hugging Face Llama-family config (Llama, Mistral, Qwen2) this lab's decoder
    understands; :meth:`from_json` refuses what it does not (sliding windows, YaRN, MoE, ...)."""

    vocab_size: int = 320
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    bos_token_id: int = 256
    eos_token_id: int = 257
    pad_token_id: int = 258
    head_dim: int = 0                      # 0: hidden_size // num_attention_heads
    qkv_bias: bool = False                 # Qwen2, or Llama's attention_bias
    o_bias: bool = False                   # Llama's attention_bias (o_proj too)
    rope_scaling: RopeScaling | None = None
    model_type: str = "llama"

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def to_hf_dict(self) -> dict:
        d = asdict(self)
        for k in ("qkv_bias", "o_bias", "rope_scaling"):
            d.pop(k)
        d.update({"architectures": [SUPPORTED_MODEL_TYPES[self.model_type]], "hidden_act": "silu",
                  "attention_bias": self.o_bias, "mlp_bias": False, "torch_dtype": "float32",
                  "rope_scaling": asdict(self.rope_scaling) if self.rope_scaling else None})
        return d

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        raw = json.loads(Path(path).read_text())
        model_type = raw.get("model_type", "llama")
        _refuse_unsupported(raw, model_type)
        names = set(cls.__dataclass_fields__) - {"rope_scaling", "qkv_bias", "o_bias", "model_type"}
        kwargs = {k: raw[k] for k in names if k in raw and raw[k] is not None}
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):   # Llama 3 lists several EOS ids
            if isinstance(kwargs.get(k), list):
                kwargs[k] = kwargs[k][0]
        kwargs.setdefault("num_key_value_heads", raw.get("num_attention_heads", cls.num_attention_heads))
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if "rope_theta" in rope:
            kwargs["rope_theta"] = rope["rope_theta"]
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        scaling = None
        if rope_type != "default":
            fields = RopeScaling.__dataclass_fields__
            scaling = RopeScaling(rope_type, **{k: v for k, v in rope.items() if k in fields and k != "rope_type"})
        bias = bool(raw.get("attention_bias", False))
        return cls(**kwargs, rope_scaling=scaling, model_type=model_type,
                   qkv_bias=bias or model_type == "qwen2", o_bias=bias)


def _refuse_unsupported(raw: dict, model_type: str) -> None:
    """A clear error for every config feature the decoder would otherwise silently get wrong."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported (supported: {sorted(SUPPORTED_MODEL_TYPES)})")
    if raw.get("hidden_act", "silu") != "silu":
        raise ValueError(f"only SwiGLU (silu) MLPs are supported, got {raw['hidden_act']}")
    if raw.get("mlp_bias"):
        raise ValueError("mlp_bias is not supported")
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"RoPE scaling {rope_type!r} is not supported (supported: {list(SUPPORTED_ROPE_TYPES)})")
    if rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial rotary embeddings are not supported")
    window = raw.get("sliding_window")
    uses_window = raw.get("use_sliding_window", model_type == "mistral")
    if uses_window and window is not None and window < raw.get("max_position_embeddings", 0):
        raise ValueError(f"sliding-window attention (sliding_window={window}) is not supported")


class AttentionBackend(enum.Enum):
    """Which kernel runs decode attention: PyTorch's gather + SDPA, or the Triton paged-decode kernel."""

    TORCH = "torch"
    TRITON = "triton"


@dataclass
class SpeculativeConfig:
    """Speculative decoding in the engine (vLLM's ``speculative_config``): prompt-lookup drafting
    (``method="ngram"``, Saxena 2023; vLLM's n-gram proposer) of up to ``num_speculative_tokens``
    tokens per step, found by matching the last ``prompt_lookup_max`` .. ``prompt_lookup_min``
    tokens earlier in the sequence.  Greedy requests only; the output is unchanged."""

    method: str = "ngram"
    num_speculative_tokens: int = 4
    prompt_lookup_min: int = 1
    prompt_lookup_max: int = 3

    def __post_init__(self):
        if self.method != "ngram":
            raise ValueError(f"speculative method {self.method!r} is not supported in the engine (use 'ngram'; "
                             "a draft model runs as speculative.speculative_generate)")
        if self.num_speculative_tokens < 1 or not 1 <= self.prompt_lookup_min <= self.prompt_lookup_max:
            raise ValueError("need num_speculative_tokens >= 1 and 1 <= prompt_lookup_min <= prompt_lookup_max")


@dataclass
class EngineConfig:
    """Knobs of the engine (vLLM's names where there is one)."""

    block_size: int = 16                 # tokens per KV block (vLLM's default)
    num_blocks: int = 512                # KV blocks in the pool
    max_num_batched_tokens: int = 512    # token budget per step (chunked prefill splits longer prompts)
    max_num_seqs: int = 64               # sequences running at once
    max_model_len: int | None = None     # default: the model's max_position_embeddings
    enable_prefix_caching: bool = True
    sink_blocks: int = 0                 # StreamingLLM: blocks kept from the start (0 = off)
    window_blocks: int = 0               # StreamingLLM: most recent blocks kept
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    attention_backend: AttentionBackend = AttentionBackend.TORCH
    speculative: SpeculativeConfig | None = None   # None: off

    def __post_init__(self):
        self.attention_backend = AttentionBackend(self.attention_backend)   # accepts "torch" / "triton"
        for name in ("block_size", "num_blocks", "max_num_batched_tokens", "max_num_seqs"):
            if not isinstance(getattr(self, name), numbers.Integral) or getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_model_len is not None and (not isinstance(self.max_model_len, numbers.Integral)
                                               or self.max_model_len < 1):
            raise ValueError(f"EngineConfig.max_model_len must be a positive integer or None, got {self.max_model_len!r}")
        if self.sink_blocks < 0 or self.window_blocks < 0:
            raise ValueError("EngineConfig.sink_blocks and window_blocks must be >= 0")
        if self.dtype not in ("float32", "float16", "bfloat16", "float64"):
            raise ValueError(f"EngineConfig.dtype must be float32, float16, bfloat16 or float64, got {self.dtype!r}")

    @property
    def streaming(self) -> bool:
        return self.sink_blocks > 0 and self.window_blocks > 0
