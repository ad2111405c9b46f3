"""Step 6, real checkpoints: a Llama-family checkpoint written by ``transformers`` itself (random
weights via ``save_pretrained``, a byte-level BPE tokenizer trained on text the project ships,
Llama 3's special tokens and chat template) runs on the engine with its own tokenizer.

References are computed at test time: ``transformers``' ``generate`` on the same files in
float64 (greedy tokens, compared up to the first near-tie of its top-2 logits) and its
``AutoTokenizer`` (ids, text, chat template).  Variants: Llama with GQA and untied embeddings;
Llama with tied embeddings and Llama 3.1's RoPE scaling; Qwen2 (q/k/v biases).  Unsupported
configs (YaRN, sliding windows, MLP biases, other architectures) must be refused by name.
Nothing is downloaded (``HF_HUB_OFFLINE=1``)."""
from __future__ import annotations

import json
import os

import pytest
import torch

from mlsys_labs.serving import EngineConfig, HFTokenizer, LLMEngine, SamplingParams
from mlsys_labs.serving.plumbing.checkpoint import TinyCheckpoint, build_checkpoint

pytestmark = pytest.mark.step(6)
os.environ["HF_HUB_OFFLINE"] = "1"
TIE_MARGIN = 1e-3
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}   # short original context: every band is scaled
VARIANTS = {
    "llama-gqa-untied": TinyCheckpoint(seed=1),
    "llama-tied-llama3-rope": TinyCheckpoint(tie_word_embeddings=True, rope_scaling=LLAMA3_ROPE, seed=2,
                                             num_key_value_heads=4),
    "qwen2-qkv-bias": TinyCheckpoint(architecture="qwen2", num_key_value_heads=1, seed=3),
}
PROMPTS = ["Hello, world! How are", "The cache is split into blocks", "Café, naïve 🙂 and 日本語",
           "def add(a, b):\n    return"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build_checkpoint(root / name, spec) for name, spec in VARIANTS.items()}


def hf_reference(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval(),
            AutoTokenizer.from_pretrained(path))


@pytest.mark.points(1)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_teacher_forced_logits_match_transformers(checkpoints, variant, rng):
    """Every position's logits of a 200-token prompt (positions far past the Llama 3 variant's
    original 64: every RoPE band in use) through the paged cache, within fp32 tolerance of
    transformers in float64 — greedy tokens alone can hide a wrong frequency or bias."""
    from mlsys_labs.common.tolerance import assert_close
    from mlsys_labs.serving import load_pretrained
    from mlsys_labs.serving import ModelRunner
    from mlsys_labs.serving import Sequence

    path = checkpoints[variant]
    hf, _ = hf_reference(path)
    model = load_pretrained(path)
    ids = [0] + rng.integers(5, model.config.vocab_size, 199).tolist()
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0]
    runner = ModelRunner(model, num_blocks=32, block_size=8)
    seq = Sequence("tf", ids, SamplingParams())
    seq.block_table = rng.permutation(32)[:25].tolist()
    got = runner.run_all_logits([seq], [len(ids)])
    assert_close(got, ref, dtype=torch.float32, scale=20, what=f"{variant} logits")


@pytest.mark.points(2)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_tokens_and_text_match_transformers(checkpoints, variant):
    """Text prompts through the checkpoint's tokenizer, batched greedy decoding stopping at the
    checkpoint's end tokens: ids = transformers' encoding, tokens = ``generate``'s (up to a
    near-tie), and where every token matched, the text = its decode."""
    path = checkpoints[variant]
    hf, tok = hf_reference(path)
    engine = LLMEngine.from_pretrained(path, EngineConfig(num_blocks=64, block_size=8))
    assert isinstance(engine.tokenizer, HFTokenizer), "a checkpoint with tokenizer.json must use its own tokenizer"
    outs = engine.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=24))
    compared = whole = 0
    for prompt, out in zip(PROMPTS, outs):
        ids = tok(prompt, return_tensors="pt").input_ids
        assert engine.tokenizer.encode(prompt) == ids[0].tolist()
        g = hf.generate(ids, max_new_tokens=24, do_sample=False, output_scores=True, return_dict_in_generate=True,
                        eos_token_id=sorted(engine.tokenizer.stop_token_ids), pad_token_id=tok.pad_token_id)
        ref = g.sequences[0, ids.shape[1]:].tolist()
        ours = out[0].token_ids
        tied = False
        for step, score in enumerate(g.scores):
            top2 = torch.topk(score[0], 2).values
            if float(top2[0] - top2[1]) < TIE_MARGIN:
                tied = True
                break
            assert ours[step] == ref[step], f"{variant}: token {step} differs: ours {ours[:step + 1]}, transformers {ref[:step + 1]}"
            compared += 1
        if not tied:
            assert ours == ref, f"{variant}: ours {ours}, transformers {ref}"
            assert out[0].text == tok.decode(ref, skip_special_tokens=True)
            whole += 1
    assert compared >= 40 and whole >= 2, f"too few tokens compared ({compared}, {whole} whole outputs)"


@pytest.mark.points(2)
def test_tokenizer_ids_text_and_chat_template_match_transformers(checkpoints):
    """encode/decode on the shipped corpus and on text the BPE never saw, the end tokens from
    ``generation_config.json``, and the chat template rendered by transformers."""
    from mlsys_labs.serving.plumbing.checkpoint import CORPUS

    path = checkpoints["llama-gqa-untied"]
    _, tok = hf_reference(path)
    ours = HFTokenizer(path)
    texts = CORPUS.read_text(encoding="utf-8").splitlines()[::3] + ["zebra quokka ✓ — Ωmega", "  two  spaces\n\ttab"]
    for text in texts:
        assert ours.encode(text) == tok.encode(text)
        assert ours.encode(text, add_bos=False) == tok.encode(text, add_special_tokens=False)
        assert ours.decode(ours.encode(text)) == tok.decode(tok.encode(text), skip_special_tokens=True) == text
    gen = json.loads((path / "generation_config.json").read_text())
    assert ours.stop_token_ids == frozenset(gen["eos_token_id"]) and len(ours.stop_token_ids) == 2
    assert ours.eos_token_id == tok.eos_token_id and ours.bos_token_id == tok.bos_token_id
    assert ours.vocab_size == len(tok)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is paging?"},
            {"role": "assistant", "content": "Blocks."}, {"role": "user", "content": "And caching?"}]
    ref = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert ours.apply_chat_template(msgs) == tok.encode(ref, add_special_tokens=False)
    assert ref.count("<|begin_of_text|>") == 1 and ref.endswith("assistant<|end_header_id|>\n\n")


@pytest.mark.points(2)
def test_incremental_decoder_never_splits_a_character(checkpoints, rng):
    """Streaming through the checkpoint's decoder: no delta carries U+FFFD for valid text (a
    character whose bytes span several BPE tokens is held back), and the deltas plus ``flush``
    concatenate to ``decode(all ids)`` — for valid text and for arbitrary id streams."""
    ours = HFTokenizer(checkpoints["llama-gqa-untied"])
    text = "Emoji 🙂🚀 and 日本語のテキスト, Ångström — “quoted” ✨ end"
    ids = ours.encode(text, add_bos=False)
    assert len(ids) > len(text.split()), "the BPE should split this text into many pieces"
    dec = ours.incremental_decoder()
    deltas = [dec.add(t) for t in ids]
    assert not any("\ufffd" in d for d in deltas)
    assert "".join(deltas) + dec.flush() == text
    for _ in range(20):
        stream = rng.integers(0, ours.vocab_size, int(rng.integers(1, 30))).tolist()
        dec = ours.incremental_decoder()
        got = "".join(dec.add(t) for t in stream) + dec.flush()
        assert got == ours.decode(stream)


@pytest.mark.points(1)
@pytest.mark.parametrize("change, named", [
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}}, "yarn"),
    ({"model_type": "mistral", "sliding_window": 32}, "sliding"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"model_type": "gemma"}, "gemma"),
    ({"hidden_act": "gelu"}, "gelu"),
])
def test_unsupported_configs_are_refused_by_name(checkpoints, tmp_path, change, named):
    """A config feature the decoder would get silently wrong is refused with an error naming it."""
    import shutil

    from mlsys_labs.serving import load_pretrained

    src = checkpoints["llama-gqa-untied"]
    dst = tmp_path / "ck"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(change)
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=named):
        load_pretrained(dst)
    load_pretrained(src)    # the unchanged checkpoint loads


@pytest.mark.points(2)
def test_checkpoint_served_over_http_matches_transformers(checkpoints):
    """``serve --model PATH``'s app on a real uvicorn server: a completion and a chat completion
    (the checkpoint's template) return transformers' greedy text, and the stream concatenates
    to the same text."""
    import httpx

    from mlsys_labs.serving.plumbing.server import ServerThread

    path = checkpoints["llama-gqa-untied"]
    hf, tok = hf_reference(path)
    engine = LLMEngine.from_pretrained(path, EngineConfig(num_blocks=64, block_size=8))
    msgs = [{"role": "user", "content": "Explain paging in one sentence."}]
    cases = {"completions": (tok.encode("The quick brown fox"), {"prompt": "The quick brown fox"}),
             "chat/completions": (tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                                          return_dict=False), {"messages": msgs})}
    with ServerThread(engine) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
        for route, (ids, body) in cases.items():
            g = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                            eos_token_id=sorted(engine.tokenizer.stop_token_ids))
            want = tok.decode(g[0, len(ids):].tolist(), skip_special_tokens=True)
            body = {**body, "model": path.name, "max_tokens": 12, "temperature": 0}
            r = client.post(f"/v1/{route}", json=body)
            assert r.status_code == 200, r.text
            choice = r.json()["choices"][0]
            text = choice["text"] if route == "completions" else choice["message"]["content"]
            assert text == want, f"{route}: ours {text!r}, transformers {want!r}"
            streamed = []
            with client.stream("POST", f"/v1/{route}", json={**body, "stream": True}) as s:
                for line in s.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        for c in json.loads(line[6:]).get("choices", []):
                            streamed.append(c.get("text") or (c.get("delta") or {}).get("content") or "")
            assert "".join(streamed) == want, f"{route} streamed"
    engine.block_manager.assert_all_free()
