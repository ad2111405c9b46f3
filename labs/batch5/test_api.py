"""The OpenAI API as clients use it (issue-level behaviour beyond the lesson): the sampler's
penalties, ``logit_bias`` and ``min_p`` against their formulas; log-probabilities against
``transformers`` computed at test time; the decoder flushed on every ending; and over HTTP
(a real uvicorn server on a free localhost port) logprobs, echo, best_of, lists of prompts,
content parts, the tool role, ``GET /v1/models/{id}``, chat's default ``max_tokens``, every
error in OpenAI's shape, fields refused by name, the 413 body limit and the bounded queue."""
from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import torch

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.serving import (EOS, ByteTokenizer, SamplingParams, Sequence, apply_min_p, apply_penalties,
                                choose_token)

pytestmark = pytest.mark.step(6)
TOK = ByteTokenizer()


def letters(rng, k):
    return "".join(chr(c) for c in rng.integers(97, 123, k))


@pytest.fixture
def client(api_server):
    with httpx.Client(base_url=api_server.url, timeout=60) as c:
        yield c


def hf_logprobs(hf_model, ids: list[int], bias: dict[int, float] | None = None) -> np.ndarray:
    """log_softmax of transformers' logits (float64) at every position, after ``bias``."""
    with torch.no_grad():
        logits = hf_model(torch.tensor([ids])).logits[0]
    for t, b in (bias or {}).items():
        logits[:, t] += b
    return torch.log_softmax(logits, dim=-1).numpy()


# ---------------------------------------------------------------------- the sampler's knobs
@pytest.mark.points(2)
def test_penalties_and_logit_bias_follow_their_formulas(rng):
    """CTRL's repetition penalty (÷ a positive logit, × a negative one; prompt and output),
    OpenAI's frequency (× count) and presence (once) penalties over the output, logit_bias added."""
    V = 40
    logits = torch.tensor(rng.normal(0, 3, V))
    prompt = rng.integers(0, 15, 6).tolist()                  # tokens < 15 appear only in the prompt
    output = rng.integers(15, V, 10).tolist()
    output += [output[0], output[0]]                          # one token at least three times
    bias = {int(t): float(b) for t, b in zip(rng.choice(V, 3, replace=False), rng.uniform(-5, 5, 3))}
    p = SamplingParams(repetition_penalty=1.7, frequency_penalty=0.6, presence_penalty=-0.4, logit_bias=bias)
    ref = logits.numpy().copy()
    for t, b in bias.items():
        ref[t] += b
    for t in set(prompt + output):
        ref[t] = ref[t] / 1.7 if ref[t] > 0 else ref[t] * 1.7
    for t in set(output):
        ref[t] -= 0.6 * output.count(t) + (-0.4)
    assert_close(apply_penalties(logits, p, prompt, output).numpy(), ref, dtype="float32")
    untouched = apply_penalties(logits, SamplingParams(), prompt, output)
    assert torch.equal(untouched, logits), "no knob set: the logits must be left as they are"


@pytest.mark.points(1)
def test_min_p_keeps_tokens_within_min_p_of_the_top_after_temperature(rng):
    logits = torch.tensor(rng.permutation(np.linspace(-6, 6, 64)))     # the kept count does not depend on the seed
    for temp, min_p in [(0.5, 0.1), (1.0, 0.05), (1.7, 0.3)]:
        probs = torch.softmax(logits / temp, -1).numpy()
        kept = torch.isfinite(apply_min_p(logits, min_p, temp)).numpy()
        expected = probs >= min_p * probs.max()
        assert 1 < expected.sum() < 64, "the case must keep some tokens and drop others"
        assert (kept == expected).all(), f"T={temp}, min_p={min_p}"
    assert torch.equal(apply_min_p(logits, 0.3, 0.0), logits), "greedy: min_p does nothing"


@pytest.mark.points(1)
def test_choose_token_logprobs_are_of_the_chosen_token_after_bias(rng):
    logits = torch.tensor(rng.normal(0, 2, 50))
    bias = {int(rng.integers(50)): 4.0}
    seq = Sequence("r", [1, 2, 3], SamplingParams(temperature=0, logprobs=4, logit_bias=bias))
    token, lp = choose_token(logits, seq)
    biased = logits.clone()
    for t, b in bias.items():
        biased[t] += b
    ref = torch.log_softmax(biased, -1)
    assert token == int(torch.argmax(biased)) and lp.token_id == token
    assert_close(np.array([lp.logprob]), np.array([float(ref[token])]), dtype="float32")
    top = torch.topk(ref, 4)
    assert [t for t, _ in lp.top] == top.indices.tolist()
    assert_close(np.array([x for _, x in lp.top]), top.values.numpy(), dtype="float32")
    flat = logits / 4                  # sampled, not greedy: the chosen token is rarely the most likely one
    chosen = []
    for seed in range(10):
        seq_t = Sequence("r", [1, 2, 3], SamplingParams(temperature=1.5, seed=seed, logprobs=0))
        token_t, lp_t = choose_token(flat, seq_t)
        chosen.append(token_t)
        assert lp_t.token_id == token_t and lp_t.top == []
        assert abs(lp_t.logprob - float(torch.log_softmax(flat, -1)[token_t])) < 1e-5, \
            "the chosen token's log-probability, before temperature"
    assert set(chosen) != {int(torch.argmax(flat))}


# ---------------------------------------------------------------------- every ending flushes the decoder
@pytest.mark.points(2)
def test_the_decoder_is_flushed_on_every_ending(make_engine, rng, forcing):
    """A character cut by EOS, by a stop token, by max_tokens or by an abort: the held-back
    bytes are in the text (the text equals the decode of the non-stop tokens)."""
    e = make_engine(num_blocks=64)
    p = [256] + rng.integers(97, 123, 6).tolist()
    a, b = [int(x) for x in rng.choice(np.arange(97, 123), 2, replace=False)]
    script = [a, 0xE2, 0x82, EOS, b, 0xF0, 0x9F, b, b, b]
    runs = e.generate([p, p, p], [
        SamplingParams(temperature=0, max_tokens=10, logits_processor=forcing(script, len(p))),
        SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, stop_token_ids=[b],
                       logits_processor=forcing(script, len(p))),
        SamplingParams(temperature=0, max_tokens=7, ignore_eos=True, logits_processor=forcing(script, len(p)))])
    eos, stop_id, length = (r[0] for r in runs)
    assert (eos.finish_reason, eos.text) == ("stop", TOK.decode(script[:3])), repr(eos.text)
    assert (stop_id.finish_reason, stop_id.text) == ("stop", TOK.decode(script[:4])), repr(stop_id.text)
    assert (length.finish_reason, length.text) == ("length", TOK.decode(script[:7])), repr(length.text)
    rid = e.add_request(p, SamplingParams(temperature=0, max_tokens=10, ignore_eos=True,
                                          logits_processor=forcing(script, len(p))))
    seq = e.seqs_by_request[rid][0]
    while seq.num_output_tokens < 3:
        e.step()
    e.abort(rid)
    assert seq.output_text == TOK.decode(script[:3]), "an abort leaves the held-back bytes in the decoder"
    e.block_manager.assert_all_free()


# ---------------------------------------------------------------------- over HTTP
@pytest.mark.points(3)
def test_completion_logprobs_match_transformers(client, api_server, new_engine, hf_model, rng, wait_until_idle):
    """``logprobs: 3`` and ``logprobs: 0``, with a logit_bias: each chosen token's log-probability
    and the top 3 equal transformers' log_softmax after the bias, streamed or not."""
    prompt = letters(rng, 8)
    bias = {int(rng.integers(97, 123)): 3.0}
    body = {"prompt": prompt, "max_tokens": 6, "temperature": 0, "ignore_eos": True,
            "logit_bias": {str(t): v for t, v in bias.items()}}
    ref = new_engine(num_blocks=64).generate([prompt], SamplingParams(temperature=0, max_tokens=6, ignore_eos=True,
                                                                      logit_bias=bias))[0][0]
    ids = TOK.encode(prompt)
    lp = hf_logprobs(hf_model, ids + ref.token_ids, bias)
    expected = np.array([lp[len(ids) - 1 + i, t] for i, t in enumerate(ref.token_ids)])
    r = client.post("/v1/completions", json={**body, "logprobs": 3})
    assert r.status_code == 200, r.text
    got = r.json()["choices"][0]["logprobs"]
    assert got["tokens"] == [TOK.decode([t]) for t in ref.token_ids]
    assert_close(np.array(got["token_logprobs"]), expected, dtype="float32", scale=10, what="token_logprobs")
    for i, top in enumerate(got["top_logprobs"]):
        order = np.argsort(-lp[len(ids) - 1 + i])[:3]
        want = {TOK.decode([int(t)]): lp[len(ids) - 1 + i, t] for t in order}
        assert set(want) <= set(top) and len(top) <= 4
        assert_close(np.array([top[k] for k in want]), np.array(list(want.values())), dtype="float32", scale=10)
    assert got["text_offset"] == list(np.cumsum([0] + [len(t) for t in got["tokens"][:-1]]))
    zero = client.post("/v1/completions", json={**body, "logprobs": 0}).json()["choices"][0]["logprobs"]
    assert zero is not None and len(zero["token_logprobs"]) == len(got["token_logprobs"])
    assert_close(np.array(zero["token_logprobs"]), np.array(got["token_logprobs"]), dtype="float32")
    assert all(len(t) == 1 for t in zero["top_logprobs"]), "logprobs 0: only the chosen token"
    with client.stream("POST", "/v1/completions", json={**body, "logprobs": 3, "stream": True}) as s:
        chunks = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: {")]
    streamed = [v for c in chunks for v in c["choices"][0]["logprobs"]["token_logprobs"]]
    assert len(streamed) == len(got["token_logprobs"])
    assert_close(np.array(streamed), np.array(got["token_logprobs"]), dtype="float32")
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_chat_logprobs_and_top_logprobs(client, api_server, new_engine, hf_model, wait_until_idle):
    msgs = [{"role": "user", "content": "Hi there"}]
    body = {"messages": msgs, "max_tokens": 5, "temperature": 0, "ignore_eos": True,
            "logprobs": True, "top_logprobs": 2}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert len(content) == 5
    ids = TOK.apply_chat_template(msgs)
    ref = new_engine(num_blocks=64).generate([ids], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))[0][0]
    lp = hf_logprobs(hf_model, ids + ref.token_ids)
    assert [c["token"] for c in content] == [TOK.decode([t]) for t in ref.token_ids]
    assert_close(np.array([c["logprob"] for c in content]),
                 np.array([lp[len(ids) - 1 + i, t] for i, t in enumerate(ref.token_ids)]), dtype="float32", scale=10)
    for i, c in enumerate(content):
        top = np.argsort(-lp[len(ids) - 1 + i])[:2]
        assert [x["token"] for x in c["top_logprobs"]] == [TOK.decode([int(t)]) for t in top]
        assert c["top_logprobs"][0]["logprob"] == c["logprob"], "greedy: the chosen token is the most likely"
        assert c["bytes"] == list(c["token"].encode("utf-8"))
    plain = client.post("/v1/chat/completions", json={**body, "logprobs": False, "top_logprobs": None}).json()
    assert plain["choices"][0]["logprobs"] is None
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
        chunks = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: {")]
    streamed = [e for c in chunks for e in ((c["choices"][0].get("logprobs") or {}).get("content") or [])]
    assert len(streamed) == len(content)     # the cache may be reused by now: equal up to rounding
    assert_close(np.array([e["logprob"] for e in streamed]), np.array([c["logprob"] for c in content]), dtype="float32")
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_best_of_returns_the_n_most_likely_of_best_of(client, api_server, wait_until_idle):
    body = {"prompt": "Once upon", "max_tokens": 5, "temperature": 1.0, "seed": 11, "ignore_eos": True}
    every = client.post("/v1/completions", json={**body, "n": 4, "logprobs": 0}).json()
    sums = {c["text"]: sum(c["logprobs"]["token_logprobs"]) for c in every["choices"]}
    best = sorted(every["choices"], key=lambda c: -sum(c["logprobs"]["token_logprobs"]))[:2]
    r = client.post("/v1/completions", json={**body, "n": 2, "best_of": 4})
    assert r.status_code == 200, r.text
    got = r.json()
    assert [c["text"] for c in got["choices"]] == [c["text"] for c in best], sums
    assert [c["index"] for c in got["choices"]] == [0, 1] and got["choices"][0]["logprobs"] is None
    assert got["usage"]["completion_tokens"] == 20, "best_of's discarded choices are generated (and counted)"
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_a_list_of_prompts_token_ids_and_echo(client, api_server, new_engine, rng, wait_until_idle):
    texts = [letters(rng, 5), letters(rng, 9)]
    ids = TOK.encode(letters(rng, 7))
    r = client.post("/v1/completions", json={"prompt": texts + [ids], "max_tokens": 4, "n": 2, "temperature": 0,
                                             "ignore_eos": True, "echo": True})
    assert r.status_code == 200, r.text
    body = r.json()
    refs = new_engine(num_blocks=64).generate(texts + [ids], SamplingParams(temperature=0, max_tokens=4,
                                                                           ignore_eos=True))
    echoes = texts + [TOK.decode(ids)]
    assert [c["index"] for c in body["choices"]] == list(range(6))
    for c in body["choices"]:
        p = c["index"] // 2
        assert c["text"] == echoes[p] + refs[p][0].text, (p, c["text"])
    assert body["usage"]["prompt_tokens"] == sum(len(TOK.encode(t)) for t in texts) + len(ids)
    assert body["usage"]["completion_tokens"] == 24
    with client.stream("POST", "/v1/completions", json={"prompt": texts + [ids], "max_tokens": 4, "n": 2,
                                                        "temperature": 0, "ignore_eos": True, "stream": True}) as s:
        chunks = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: {")]
    streamed = {}
    for c in chunks:
        for ch in c["choices"]:
            streamed[ch["index"]] = streamed.get(ch["index"], "") + ch["text"]
    assert streamed == {i: refs[i // 2][0].text for i in range(6)}, "streamed choices of a list of prompts"
    single = client.post("/v1/completions", json={"prompt": ids, "max_tokens": 4, "temperature": 0,
                                                  "ignore_eos": True}).json()
    assert single["choices"][0]["text"] == refs[2][0].text
    with client.stream("POST", "/v1/completions", json={"prompt": texts[0], "max_tokens": 4, "temperature": 0,
                                                        "ignore_eos": True, "echo": True, "stream": True}) as s:
        chunks = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: {")]
    assert "".join(c["choices"][0]["text"] for c in chunks) == texts[0] + refs[0][0].text
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_penalties_and_min_p_over_http_equal_the_engine(client, api_server, new_engine, wait_until_idle):
    prompt = "ab" * 6
    knobs = {"presence_penalty": 1.5, "frequency_penalty": 0.7, "repetition_penalty": 1.3}
    ref = new_engine(num_blocks=64).generate([prompt], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True,
                                                                      **knobs))[0][0]
    plain = new_engine(num_blocks=64).generate([prompt], SamplingParams(temperature=0, max_tokens=12,
                                                                        ignore_eos=True))[0][0]
    assert ref.token_ids != plain.token_ids, "the case must be one the penalties change"
    r = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 12, "temperature": 0,
                                             "ignore_eos": True, **knobs})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == ref.text, r.text
    seeded = {"prompt": prompt, "max_tokens": 8, "temperature": 1.5, "seed": 3, "ignore_eos": True, "min_p": 0.3}
    ref = new_engine(num_blocks=64).generate([prompt], SamplingParams(temperature=1.5, max_tokens=8, seed=3,
                                                                      ignore_eos=True, min_p=0.3))[0][0]
    free = new_engine(num_blocks=64).generate([prompt], SamplingParams(temperature=1.5, max_tokens=8, seed=3,
                                                                       ignore_eos=True))[0][0]
    assert free.token_ids != ref.token_ids, "the case must be one min_p changes"
    assert client.post("/v1/completions", json=seeded).json()["choices"][0]["text"] == ref.text
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_chat_content_parts_tool_role_and_default_max_tokens(client, api_server, wait_until_idle):
    """Text parts are joined by newlines; a tool message is accepted; without max_tokens a chat
    runs to the end of the context (vLLM's default), and a long prompt is still served."""
    base = {"temperature": 0, "ignore_eos": True, "max_tokens": 6}
    parts = client.post("/v1/chat/completions", json={**base, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}]})
    joined = client.post("/v1/chat/completions", json={**base, "messages": [{"role": "user", "content": "Hel\nlo"}]})
    assert parts.status_code == 200, parts.text
    assert parts.json()["choices"][0]["message"] == joined.json()["choices"][0]["message"]
    assert parts.json()["usage"] == joined.json()["usage"]
    tool = client.post("/v1/chat/completions", json={**base, "messages": [
        {"role": "user", "content": "weather?"}, {"role": "tool", "content": "sunny", "tool_call_id": "c1"}]})
    assert tool.status_code == 200, tool.text
    assert tool.json()["usage"]["prompt_tokens"] == len(TOK.apply_chat_template(
        [{"role": "user", "content": "weather?"}, {"role": "tool", "content": "sunny"}]))
    max_len = api_server.engine.max_model_len
    msgs = [{"role": "user", "content": "x" * 40}]
    r = client.post("/v1/chat/completions", json={"messages": msgs, "temperature": 0, "ignore_eos": True})
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert u["completion_tokens"] == max_len - u["prompt_tokens"] and r.json()["choices"][0]["finish_reason"] == "length"
    long = client.post("/v1/completions", json={"prompt": "y" * (max_len - 6), "ignore_eos": True})
    assert long.status_code == 200, long.text
    assert long.json()["usage"]["completion_tokens"] == 5, "the default 16 capped by the room left"
    wait_until_idle(api_server)


@pytest.mark.points(1)
def test_models_by_id(client):
    r = client.get("/v1/models/tiny-llama")
    assert r.status_code == 200 and r.json()["id"] == "tiny-llama" and r.json()["object"] == "model"
    r = client.get("/v1/models/gpt-17")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text


REFUSED = [   # fields OpenAI acts on that this server does not: a 400 naming the field, never ignored
    ("/v1/completions", {"prompt": "hi", "suffix": "end"}, "suffix"),
    ("/v1/completions", {"prompt": "hi", "echo": True, "logprobs": 1}, "echo"),
    ("/v1/completions", {"prompt": "hi", "n": 2, "best_of": 1}, "best_of"),
    ("/v1/completions", {"prompt": "hi", "best_of": 3, "stream": True}, "best_of"),
    ("/v1/completions", {"prompt": "hi", "logprobs": 21}, "logprobs"),
    ("/v1/completions", {"prompt": "hi", "logit_bias": {"99999": 1}}, "logit_bias"),
    ("/v1/completions", {"prompt": "hi", "logit_bias": {"5": 101}}, "logit_bias"),
    ("/v1/completions", {"prompt": "hi", "presence_penalty": 3}, "presence_penalty"),
    ("/v1/completions", {"prompt": "hi", "min_p": 1.5}, "min_p"),
    ("/v1/completions", {"prompt": "hi", "stream_options": {"include_usage": True}}, "stream_options"),
    ("/v1/completions", {"prompt": "hi", "made_up_field": 1}, "made_up_field"),
    ("/v1/completions", {"prompt": "hi", "stop_token_ids": [-1]}, "stop_token_ids"),     # could never stop
    ("/v1/completions", {"prompt": "hi", "stop_token_ids": [99999]}, "stop_token_ids"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": []}, "tools"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "response_format": {}},
     "response_format"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "echo": True}, "echo"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "logprobs": 2}, "logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "x", "tool_calls": []}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
]


@pytest.mark.points(2)
def test_unsupported_fields_are_refused_by_name(client, api_server, wait_until_idle):
    failures = []
    for path, body, param in REFUSED:
        r = client.post(path, json=body)
        err = r.json().get("error") if r.headers.get("content-type", "").startswith("application/json") else None
        if r.status_code != 400 or not err or err.get("param") != param or set(err) != {"message", "type", "param", "code"}:
            failures.append(f"{path} {body}: HTTP {r.status_code} {r.text[:160]}")
    assert not failures, "\n".join(failures)
    wait_until_idle(api_server)


def assert_openai_error(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], r.text


@pytest.mark.points(2)
def test_routing_errors_and_the_body_limit_in_openai_shape(client, api_server, wait_until_idle):
    limit = api_server.max_request_bytes
    assert_openai_error(client.get("/v1/nothing-here"), 404)
    assert_openai_error(client.get("/v1/completions"), 405)
    assert_openai_error(client.post("/v1/models"), 405)
    big = json.dumps({"prompt": "z" * (limit + 10), "max_tokens": 1}).encode()
    assert_openai_error(client.post("/v1/completions", content=big, headers={"content-type": "application/json"}), 413)

    def chunked():        # no Content-Length: the limit must hold on the bytes actually read
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096
    assert_openai_error(client.post("/v1/completions", content=chunked(),
                                    headers={"content-type": "application/json"}), 413)
    ok = client.post("/v1/completions", json={"prompt": "still here", "max_tokens": 2})
    assert ok.status_code == 200, ok.text
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_the_waiting_queue_is_bounded_exactly(model):
    """The engine thread admits while fewer than ``max_num_queued_reqs`` sequences wait: with
    the engine not stepping, exactly that many of a burst are queued, the rest get 503 with
    Retry-After."""
    from mlsys_labs.serving import EngineConfig, LLMEngine
    from mlsys_labs.serving.plumbing.server import ACCEPTED, AsyncEngine

    engine = LLMEngine(model, EngineConfig(num_blocks=32, max_model_len=96))
    aengine = AsyncEngine(engine, max_num_queued_reqs=3)      # its thread is never started

    async def burst():
        q = asyncio.Queue()
        for i in range(7):
            aengine.submit(f"r{i}", [256, 97 + i], SamplingParams(max_tokens=4), q)
        aengine._drain_inbox()
        await asyncio.sleep(0)
        return [q.get_nowait() for _ in range(7)]

    answers = asyncio.run(burst())
    assert answers[:3] == [ACCEPTED] * 3 and len(engine.scheduler.waiting) == 3
    assert all(getattr(a, "status", None) == 503 and a.headers.get("Retry-After") for a in answers[3:]), answers


@pytest.mark.points(2)
def test_a_full_queue_is_answered_503_without_waiting_for_the_engine(model):
    """The handler checks the bound itself, counting requests the engine thread has not taken
    yet (one per prompt): with the engine thread held inside a step, exactly enough requests to
    fill the queue are let through, every other one is answered 503 at once, and once the step ends the queue
    drains and the server admits again (nothing is counted twice or forgotten)."""
    import threading

    from mlsys_labs.serving import EngineConfig, LLMEngine
    from mlsys_labs.serving.plumbing.server import ServerThread

    bound, burst = 3, 8
    engine = LLMEngine(model, EngineConfig(num_blocks=48, max_model_len=96, max_num_seqs=1))
    stepping, release = threading.Event(), threading.Event()
    real_step = engine.step

    def held_step():
        stepping.set()
        release.wait(60)
        return real_step()

    engine.step = held_step
    body = {"prompt": "queued", "max_tokens": 3, "ignore_eos": True}

    async def run(url):
        try:
            return await burst_while_held(url)
        finally:
            release.set()

    async def burst_while_held(url):
        async with httpx.AsyncClient(base_url=url, timeout=90) as c:
            first = asyncio.create_task(c.post("/v1/completions", json=body))
            assert await asyncio.to_thread(stepping.wait, 30), "the first request never reached the engine"
            waiting = len(engine.scheduler.waiting)           # the first request, not yet scheduled
            try:
                wide = await asyncio.wait_for(c.post("/v1/completions", json={**body, "prompt": ["a", "b", "c"]}), 15)
            except asyncio.TimeoutError:
                wide = None
            assert wide is not None and wide.status_code == 503, \
                "three prompts were let through to a queue with room for two (or waited for the engine)"
            rest = [asyncio.create_task(c.post("/v1/completions", json=body)) for _ in range(burst)]
            t0 = asyncio.get_running_loop().time()
            while sum(t.done() for t in rest) < burst - (bound - waiting) and asyncio.get_running_loop().time() - t0 < 30:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)                          # a request let through too many would show now
            answered = [t.result() for t in rest if t.done()]
            held = sum(not t.done() for t in rest)
            release.set()
            later = await asyncio.gather(first, *rest)
            again = await c.post("/v1/completions", json=body)
            return waiting, answered, held, later, again

    try:
        with ServerThread(engine, max_num_queued_reqs=bound) as srv:
            waiting, answered, held, later, again = asyncio.run(run(srv.url))
    finally:
        release.set()
    assert waiting == 1
    assert held == bound - waiting, f"{held} requests were let through to a queue with room for {bound - waiting}"
    assert len(answered) == burst - held and all(r.status_code == 503 for r in answered), \
        [r.status_code for r in answered]
    for r in answered:
        assert_openai_error(r, 503)
        assert r.headers.get("retry-after") == "1"
    assert sorted(r.status_code for r in later) == [200] * (1 + held) + [503] * len(answered)
    assert again.status_code == 200, f"an idle server refused a request: {again.text}"


@pytest.mark.points(2)
def test_a_burst_beyond_the_queue_gets_503_and_leaves_nothing_behind(api_server, wait_until_idle):
    """60 requests at once on 6 slots and a queue of 8: the excess is answered 503 (OpenAI's
    shape, Retry-After), the admitted ones complete, and afterwards no block, request or
    stream is left."""
    async def one(c, i):
        r = await c.post("/v1/completions", json={"prompt": f"burst {i}", "max_tokens": 80, "ignore_eos": True})
        return r

    async def burst():
        async with httpx.AsyncClient(base_url=api_server.url, timeout=120,
                                     limits=httpx.Limits(max_connections=100)) as c:
            return await asyncio.gather(*(one(c, i) for i in range(60)))

    queued = api_server.aengine.max_num_queued_reqs
    results = asyncio.run(burst())
    codes = [r.status_code for r in results]
    assert set(codes) <= {200, 503}, codes
    busy = [r for r in results if r.status_code == 503]
    assert len(busy) >= 60 - 6 - queued - 6, f"only {len(busy)} refused: the queue is not bounded"
    for r in busy:
        assert_openai_error(r, 503)
        assert r.headers.get("retry-after") == "1"
    done = [r for r in results if r.status_code == 200]
    assert len(done) >= queued and all(r.json()["usage"]["completion_tokens"] == 80 for r in done)
    wait_until_idle(api_server, timeout=120)
