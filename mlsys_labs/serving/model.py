"""A Llama-style decoder over the paged KV cache, loading Hugging Face-format weights.

Architecture (Touvron et al., "LLaMA", 2023, §2.2): pre-norm RMSNorm (Zhang & Sennrich 2019),
rotary position embeddings (Su et al., RoFormer, §3.4), grouped-query attention (Ainslie et al.
2023) and a SwiGLU MLP (Shazeer 2020).  Parameter names follow transformers'
``LlamaForCausalLM`` so its ``model.safetensors`` loads as is, and the math follows its
modelling code (rotate-half RoPE, fp32 RMSNorm) so the logits match.

The forward pass takes a flat batch of new tokens from many sequences
(``input_ids [T]``, ``positions [T]``) plus :class:`~.attention.AttentionMetadata`: no
padding between sequences except inside attention.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.paths import state_dir
from .attention import AttentionMetadata, paged_attention, write_kv
from .config import AttentionBackend, ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x / sqrt(mean(x²) + eps) · weight, computed in fp32."""
        # BEGIN SOLUTION [step 1] hint: upcast to fp32, multiply by rsqrt(mean(x^2) + eps), cast back, scale by weight
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)
        # END SOLUTION


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[T, head_dim]`` for rotate-half RoPE: angle_i = pos · theta^(−2i/d), duplicated."""
    # BEGIN SOLUTION [step 1] hint: inv_freq = 1/theta**(arange(0,d,2)/d); angles = pos ⊗ inv_freq (fp32); cat(angles, angles)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device)
                                .float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)
    # END SOLUTION


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """theta^(−2i/d) in fp32, with the checkpoint's RoPE scaling applied (see :class:`RopeScaling`)."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = cfg.rope_scaling
    if rs is None:
        return inv_freq
    if rs.rope_type == "linear":
        return inv_freq / rs.factor
    # llama3: long wavelengths slowed by `factor`, short ones kept, a linear blend in between
    low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor
    high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq)
    smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor)
    blended = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


def model_rope_cos_sin(positions: torch.Tensor, cfg: ModelConfig, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rope_cos_sin` for a model's config: plain RoPE, or RoPE with scaled frequencies."""
    if cfg.rope_scaling is None:
        return rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, dtype)
    freqs = positions.float()[:, None] * rope_inv_freq(cfg).to(positions.device)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [T, heads, d]``: x·cos + rotate_half(x)·sin, rotate_half(a, b) = (−b, a)."""
    # BEGIN SOLUTION [step 1] hint: split the last dim in halves (a, b); rotate_half = cat(-b, a); broadcast cos/sin over heads
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]
    # END SOLUTION


class LlamaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, h, hkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=cfg.o_bias)

    def project_qkv(self, x):
        """q, k, v projections; plain fp weights go through one fused matmul (nano-vllm's
        QKVParallelLinear), built on first use — the weights are not meant to change after loading."""
        mods = (self.q_proj, self.k_proj, self.v_proj)
        if not all(type(m) is nn.Linear for m in mods):
            return [m(x) for m in mods]
        fused = self.__dict__.get("_qkv")
        if fused is None or fused[1] != [m.weight.data_ptr() for m in mods]:
            bias = torch.cat([m.bias for m in mods]).detach() if self.cfg.qkv_bias else None
            fused = (torch.cat([m.weight for m in mods]).detach(), [m.weight.data_ptr() for m in mods], bias)
            self.__dict__["_qkv"] = fused
        return F.linear(x, fused[0], fused[2]).split([m.out_features for m in mods], dim=-1)

    def forward(self, x, cos, sin, kv_cache, meta: AttentionMetadata):
        T = x.shape[0]
        d = self.cfg.head_dim
        q, k, v = self.project_qkv(x)
        q = apply_rope(q.reshape(T, -1, d), cos, sin)
        k = apply_rope(k.reshape(T, -1, d), cos, sin)
        v = v.reshape(T, -1, d)
        write_kv(kv_cache, k, v, meta.slot_mapping)
        if meta.backend is AttentionBackend.TRITON:
            from .triton_decode import paged_decode_attention

            out = paged_decode_attention(q, kv_cache, meta.block_tables, meta.context_lens,
                                         meta.block_size, d ** -0.5)
        else:
            out = paged_attention(q, kv_cache, meta, d ** -0.5)
        return self.o_proj(out.reshape(T, -1))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def gate_up(self, x):
        """gate(x), up(x) — one fused matmul for plain fp weights (as in :meth:`LlamaAttention.project_qkv`)."""
        mods = (self.gate_proj, self.up_proj)
        if not all(type(m) is nn.Linear for m in mods):
            return [m(x) for m in mods]
        fused = self.__dict__.get("_gate_up")
        if fused is None or fused[1] != [m.weight.data_ptr() for m in mods]:
            fused = (torch.cat([m.weight for m in mods]).detach(), [m.weight.data_ptr() for m in mods])
            self.__dict__["_gate_up"] = fused
        return F.linear(x, fused[0]).chunk(2, dim=-1)

    def forward(self, x):
        """SwiGLU: down(silu(gate(x)) · up(x))."""
        # BEGIN SOLUTION [step 1] hint: gate and up projections (self.gate_up(x) fuses them), F.silu, the down projection
        gate, up = self.gate_up(x)
        return self.down_proj(F.silu(gate) * up)
        # END SOLUTION


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = LlamaAttention(cfg)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, kv_cache, meta):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """``forward(input_ids [T], positions [T], kv_caches, meta) -> hidden [T, D]``;
    ``compute_logits(hidden)`` applies the LM head (only to the rows that need sampling)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, kv_caches: list[torch.Tensor],
                meta: AttentionMetadata) -> torch.Tensor:
        cfg = self.config
        x = self.model.embed_tokens(input_ids)
        cos, sin = model_rope_cos_sin(positions, cfg, x.dtype)
        for layer, kv in zip(self.model.layers, kv_caches):
            x = layer(x, cos, sin, kv, meta)
        return self.model.norm(x)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()

    def allocate_kv_cache(self, num_blocks: int, block_size: int, dtype=None, device=None) -> list[torch.Tensor]:
        """One ``[2, num_blocks·block_size, Hkv, d]`` tensor per layer."""
        cfg = self.config
        p = next(self.parameters())
        return [torch.zeros(2, num_blocks * block_size, cfg.num_key_value_heads, cfg.head_dim,
                            dtype=dtype or p.dtype, device=device or p.device)
                for _ in range(cfg.num_hidden_layers)]


# ------------------------------------------------------------------- weights on disk
def save_pretrained(model: LlamaForCausalLM, path: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (Hugging Face layout)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(model.config.to_hf_dict(), indent=1))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32, device="cpu") -> LlamaForCausalLM:
    """Load a Hugging Face-format Llama checkpoint (``config.json`` + ``*.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = ModelConfig.from_json(path / "config.json")
    model = LlamaForCausalLM(cfg)
    state = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(f)))
    if cfg.tie_word_embeddings:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
    unexpected = [u for u in unexpected if "rotary_emb" not in u]
    if missing or unexpected:
        raise ValueError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    return model.to(dtype=dtype, device=device).eval()


def random_model(cfg: ModelConfig, seed: int) -> LlamaForCausalLM:
    """Random weights with a spread that gives peaked (not flat) next-token distributions:
    embeddings N(0, 1), projections N(0, 1/fan_in), LM head N(0, 4/fan_in), norms 1."""
    gen = torch.Generator().manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                std = (4.0 if name.startswith("lm_head") else 1.0) ** 0.5 / p.shape[1] ** 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


DEFAULT_CONFIG = ModelConfig()   # 4 layers, d=256, 8 heads (2 KV heads), SwiGLU 688, vocab 320: 2.9 M params, 11.6 MB fp32
DEFAULT_SEED = 1234


def default_model_path() -> Path:
    """The default model's folder, created from a fixed seed on first use (no download)."""
    path = state_dir("lab5", "models", f"tiny-llama-seed{DEFAULT_SEED}")
    if not (path / "model.safetensors").exists():
        save_pretrained(random_model(DEFAULT_CONFIG, DEFAULT_SEED), path)
    return path


def default_draft_path() -> Path:
    """A small draft model for speculative decoding: the default model cut to its first layer
    (embeddings, final norm and LM head shared) — an early-exit draft (a quarter of the layers)."""
    path = state_dir("lab5", "models", f"tiny-llama-seed{DEFAULT_SEED}-draft1")
    if not (path / "model.safetensors").exists():
        target = load_pretrained(default_model_path())
        cfg = ModelConfig(**{**target.config.__dict__, "num_hidden_layers": 1})
        draft = LlamaForCausalLM(cfg)
        state = {k: v for k, v in target.state_dict().items()
                 if not k.startswith("model.layers.") or k.startswith("model.layers.0.")}
        draft.load_state_dict(state)
        save_pretrained(draft, path)
    return path
