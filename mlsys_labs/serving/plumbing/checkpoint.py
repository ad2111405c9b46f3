"""A small Llama-family checkpoint built locally, in the exact layout a Hugging Face user has:
random weights written by ``transformers``' ``save_pretrained`` and a real byte-level BPE
tokenizer (GPT-2 / Llama 3 style) trained in a second with ``tokenizers`` on the text shipped
next to this file, with Llama 3's special tokens and chat template.  Tests and benchmarks
use it so nothing is downloaded; ``mlsys-labs serve --model PATH`` serves it (or any local
Llama, Mistral or Qwen2 checkpoint).

    python -m mlsys_labs.serving.plumbing.checkpoint DEST [--layers 2 --hidden 64 ...]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...common.cli_args import at_least

CORPUS = Path(__file__).with_name("tokenizer_corpus.txt")
BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
SPECIALS = [BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", EOT]
CHAT_TEMPLATE = (   # Llama 3's template, as its tokenizer_config.json writes it (minus the date header)
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


@dataclass
class TinyCheckpoint:
    """The shape of the checkpoint (``LlamaConfig`` fields) and how its weights are drawn."""

    vocab_size: int = 512          # BPE merges learned up to this size (specials included)
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = False
    rope_scaling: dict | None = None          # e.g. {"rope_type": "llama3", "factor": 8.0, ...}
    architecture: str = "llama"               # "llama" or "qwen2" (q/k/v biases)
    seed: int = 0
    extra_config: dict = field(default_factory=dict)


def train_tokenizer(vocab_size: int):
    """Byte-level BPE (Sennrich et al. 2016 over GPT-2's byte alphabet) on the shipped corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _peaked_init(model, seed: int) -> None:
    """Random weights whose next-token distributions are peaked, not flat (so greedy choices are
    not near-ties): embeddings N(0, 1), matrices N(0, 1/fan_in), LM head N(0, 4/fan_in), biases
    N(0, 0.1²), norms 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                gain = 4.0 if name.startswith("lm_head") else 1.0
                p.copy_(torch.randn(p.shape, generator=gen) * (gain / p.shape[1]) ** 0.5)


def build_checkpoint(dest: str | Path, spec: TinyCheckpoint | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``generation_config.json`` and the tokenizer
    files to ``dest`` with transformers' own ``save_pretrained``."""
    import transformers

    spec = spec or TinyCheckpoint()
    dest = Path(dest)
    tok = train_tokenizer(spec.vocab_size)
    kind = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}
    config_cls, model_cls = (getattr(transformers, n) for n in kind[spec.architecture])
    bos, eos, eot = (tok.convert_tokens_to_ids(t) for t in (BOS, EOS, EOT))
    config = config_cls(
        vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
        rms_norm_eps=1e-6, rope_scaling=spec.rope_scaling, **spec.extra_config)
    torch.manual_seed(spec.seed)
    model = model_cls(config)
    _peaked_init(model, spec.seed)
    model.generation_config = transformers.GenerationConfig(bos_token_id=bos, eos_token_id=[eos, eot],
                                                            pad_token_id=eos)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest")
    p.add_argument("--layers", type=at_least(1), default=2)
    p.add_argument("--hidden", type=at_least(1), default=64)
    p.add_argument("--intermediate", type=at_least(1), default=128)
    p.add_argument("--heads", type=at_least(1), default=4)
    p.add_argument("--kv-heads", type=at_least(1), default=2)
    p.add_argument("--vocab", type=at_least(1), default=512)
    p.add_argument("--architecture", choices=["llama", "qwen2"], default="llama")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    spec = TinyCheckpoint(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                          num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                          architecture=a.architecture, seed=a.seed)
    path = build_checkpoint(a.dest, spec)
    print(json.dumps({"checkpoint": str(path), "files": sorted(f.name for f in path.iterdir())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
