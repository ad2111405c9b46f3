"""Configuration: the model's shape (Hugging Face ``config.json`` fields) and the engine's knobs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ModelConfig:
    """The subset of a Hugging Face ``LlamaConfig`` this lab's decoder understands."""

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

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_hf_dict(self) -> dict:
        d = asdict(self)
        d.update({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                  "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
                  "head_dim": self.head_dim, "rope_scaling": None})
        return d

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError(f"only SwiGLU (silu) MLPs are supported, got {raw['hidden_act']}")
        if raw.get("rope_scaling"):
            raise ValueError("rope_scaling is not supported")
        names = cls.__dataclass_fields__.keys()
        kwargs = {k: raw[k] for k in names if k in raw and raw[k] is not None}
        kwargs.setdefault("num_key_value_heads", raw.get("num_attention_heads", cls.num_attention_heads))
        if "rope_parameters" in raw and raw["rope_parameters"]:
            kwargs["rope_theta"] = raw["rope_parameters"].get("rope_theta", cls.rope_theta)
        return cls(**kwargs)


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
    extra: dict = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        return self.sink_blocks > 0 and self.window_blocks > 0
