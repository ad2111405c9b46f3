"""The OpenAI-compatible HTTP server, tested against a real uvicorn server on a free
localhost port: completions, chat, streaming, models, health, metrics, every bad input,
unknown models, client disconnects and a cancellation storm.  Step 6: the server is given and
runs on your engine once the engine runs (steps 1–6)."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from mlsys_labs.serving import EngineConfig, LLMEngine, SamplingParams

pytestmark = pytest.mark.step(6)

MAX_LEN = 512


def _warm_up(c):
    for path in ("/health", "/v1/models", "/metrics"):
        c.get(path)
    c.post("/v1/completions", content=b"{", headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def server(model, running_server):
    engine = LLMEngine(model, EngineConfig(num_blocks=40, block_size=16, max_num_seqs=6,
                                           max_num_batched_tokens=128, max_model_len=MAX_LEN),
                       model_name="tiny-llama")
    yield from running_server(engine, _warm_up)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def sse_events(response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


@pytest.mark.points(1)
def test_health_models_and_a_first_request(client, server, wait_until_idle):
    assert client.get("/health").status_code == 200
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-llama"]
    r = client.post("/v1/completions", json={"model": models["data"][0]["id"], "prompt": "Hi", "max_tokens": 3})
    assert r.status_code == 200, r.text
    wait_until_idle(server)


@pytest.mark.points(2)
def test_completion_matches_the_offline_engine(client, server, new_engine, rng, wait_until_idle):
    prompt = "".join(chr(c) for c in rng.integers(97, 123, 12))
    r = client.post("/v1/completions", json={"model": "tiny-llama", "prompt": prompt, "max_tokens": 12,
                                             "temperature": 0, "ignore_eos": True})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = new_engine(num_blocks=64).generate(
        [prompt], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0][0]
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == ref.text and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": len(prompt) + 1, "completion_tokens": 12, "total_tokens": len(prompt) + 13}
    wait_until_idle(server)


@pytest.mark.points(3)
def test_streaming_sends_sse_chunks_usage_and_done(client, server, rng, wait_until_idle):
    prompt = "".join(chr(c) for c in rng.integers(97, 123, 10))
    req = {"model": "tiny-llama", "prompt": prompt, "max_tokens": 16, "temperature": 0, "ignore_eos": True}
    r = client.post("/v1/completions", json=req)
    assert r.status_code == 200, r.text
    full = r.json()["choices"][0]["text"]
    with client.stream("POST", "/v1/completions", json={**req, "stream": True,
                                                        "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) >= 2
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == full
    assert chunks[-1]["usage"]["completion_tokens"] == 16
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    wait_until_idle(server)


@pytest.mark.points(2)
def test_chat_completions_plain_and_streaming(client, server, wait_until_idle):
    req = {"model": "tiny-llama", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Hello!"}],
           "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    r = client.post("/v1/chat/completions", json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    msg = body["choices"][0]["message"]
    assert msg["role"] == "assistant" and body["usage"]["completion_tokens"] == 10
    with client.stream("POST", "/v1/chat/completions", json={**req, "stream": True}) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in events[:-1] if c["choices"]]
    assert deltas[0].get("role") == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == msg["content"]
    assert all(c["object"] == "chat.completion.chunk" for c in events[:-1])
    wait_until_idle(server)


@pytest.mark.points(1)
@pytest.mark.hidden
def test_n_choices_over_http(client, server, wait_until_idle):
    r = client.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 6, "n": 3, "seed": 7,
                                             "temperature": 1.0, "ignore_eos": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(c["index"] for c in body["choices"]) == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 18
    wait_until_idle(server)


BAD_COMPLETIONS = [
    ("malformed JSON", b'{"prompt": "hi", "max_tokens": '),
    ("not an object", [1, 2, 3]),
    ("missing prompt", {"max_tokens": 5}),
    ("empty prompt", {"prompt": ""}),
    ("empty token list", {"prompt": []}),
    ("prompt of the wrong type", {"prompt": 42}),
    ("token ids mixed with text", {"prompt": [1, "a"]}),
    ("token id outside the vocabulary", {"prompt": [1, 100000]}),
    ("max_tokens zero", {"prompt": "hi", "max_tokens": 0}),
    ("max_tokens negative", {"prompt": "hi", "max_tokens": -5}),
    ("max_tokens fractional", {"prompt": "hi", "max_tokens": 1.5}),
    ("max_tokens a string", {"prompt": "hi", "max_tokens": "10"}),
    ("max_tokens a boolean", {"prompt": "hi", "max_tokens": True}),
    ("prompt + max_tokens beyond the context", {"prompt": "x" * 300, "max_tokens": 300}),
    ("temperature negative", {"prompt": "hi", "temperature": -0.5}),
    ("temperature a string", {"prompt": "hi", "temperature": "hot"}),
    ("top_p zero", {"prompt": "hi", "top_p": 0}),
    ("top_p above one", {"prompt": "hi", "top_p": 1.5}),
    ("top_p a string", {"prompt": "hi", "top_p": "all"}),
    ("n a string", {"prompt": "hi", "n": "two"}),
    ("n zero", {"prompt": "hi", "n": 0}),
    ("stop a number", {"prompt": "hi", "stop": 5}),
    ("stop list of numbers", {"prompt": "hi", "stop": [1]}),
    ("stream a string", {"prompt": "hi", "stream": "yes"}),
    ("seed fractional", {"prompt": "hi", "seed": 1.5}),
    ("top_k a string", {"prompt": "hi", "top_k": "5"}),
]
BAD_CHATS = [
    ("no messages", {"messages": []}),
    ("messages a string", {"messages": "hi"}),
    ("message without content", {"messages": [{"role": "user"}]}),
    ("content of the wrong type", {"messages": [{"role": "user", "content": 5}]}),
    ("all messages empty", {"messages": [{"role": "user", "content": ""}]}),
]


@pytest.mark.points(4)
def test_every_bad_input_gets_an_openai_style_400_and_the_engine_keeps_serving(client, server, wait_until_idle):
    failures = []
    for path, cases in [("/v1/completions", BAD_COMPLETIONS), ("/v1/chat/completions", BAD_CHATS)]:
        for name, body in cases:
            if isinstance(body, bytes):
                r = client.post(path, content=body, headers={"content-type": "application/json"})
            else:
                r = client.post(path, json=body)
            try:
                err = r.json().get("error") if isinstance(r.json(), dict) else None
            except ValueError:
                err = None
            if r.status_code != 400 or not err or not err.get("message") or err.get("type") != "invalid_request_error":
                failures.append(f"{path} {name}: HTTP {r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures)
    ok = client.post("/v1/completions", json={"prompt": "still alive?", "max_tokens": 4})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1, ok.text
    wait_until_idle(server)


@pytest.mark.points(1)
def test_unknown_model_is_404(client, server, wait_until_idle):
    r = client.post("/v1/completions", json={"model": "tiny-llama", "prompt": "known model", "max_tokens": 2})
    assert r.status_code == 200, r.text
    wait_until_idle(server)
    for path, body in [("/v1/completions", {"model": "gpt-17", "prompt": "hi"}),
                       ("/v1/chat/completions", {"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]})]:
        r = client.post(path, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text


def metric_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.points(2)
def test_metrics_in_prometheus_format(client, server, wait_until_idle):
    r = client.post("/v1/completions", json={"prompt": "metrics please", "max_tokens": 5, "ignore_eos": True})
    assert r.status_code == 200, r.text
    wait_until_idle(server)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = metric_lines(r.text)
    for name in ["num_requests_running", "num_requests_waiting", "kv_cache_usage_ratio", "prefix_cache_hit_rate",
                 "spec_decode_acceptance_rate", "spec_decode_tokens_per_step"]:
        assert f'mlsys_serving_{name}{{model="tiny-llama"}}' in m, name
    for hist in ["time_to_first_token_seconds", "time_per_output_token_seconds"]:
        buckets = [v for k, v in m.items() if k.startswith(f"mlsys_serving_{hist}_bucket")]
        assert buckets == sorted(buckets), "histogram buckets must be cumulative"
        assert buckets[-1] == m[f"mlsys_serving_{hist}_count"] >= 1
        assert f'mlsys_serving_{hist}_bucket{{le="+Inf"}}' in m
    assert m['mlsys_serving_kv_cache_usage_ratio{model="tiny-llama"}'] == 0.0
    assert "# TYPE mlsys_serving_time_to_first_token_seconds histogram" in r.text


@pytest.mark.points(3)
def test_client_disconnect_aborts_and_frees_blocks(server, wait_until_idle):
    aborted = server.engine.metrics.requests_aborted
    long = {"prompt": "tell me a long story", "max_tokens": 480, "ignore_eos": True, "temperature": 0}
    with httpx.Client(base_url=server.url, timeout=60) as c:           # streaming: leave after 3 chunks
        with c.stream("POST", "/v1/completions", json={**long, "stream": True}) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i >= 5:
                    break
    wait_until_idle(server)
    assert server.engine.metrics.requests_aborted == aborted + 1, "the streaming request was not aborted"
    with httpx.Client(base_url=server.url, timeout=0.2) as c:          # non-streaming: give up waiting
        with pytest.raises(httpx.TimeoutException):
            c.post("/v1/completions", json=long)
    wait_until_idle(server)
    assert server.engine.metrics.requests_aborted == aborted + 2, "the non-streaming request was not aborted"


@pytest.mark.points(3)
def test_cancellation_storm_leaves_no_block_allocated(server, seed, wait_until_idle):
    """24 concurrent streams on 6 sequence slots and a small pool (waiting, running and
    preempted requests); half the clients vanish at random points."""
    import random

    rnd = random.Random(seed)
    preempted_before = server.engine.scheduler.num_preemptions

    async def one(c, i):
        body = {"prompt": f"request {i} " + "x" * rnd.randrange(1, 60), "max_tokens": rnd.randrange(20, 120),
                "ignore_eos": True, "stream": True, "temperature": 1.0}
        quit_after = rnd.randrange(0, 30) if i % 2 else None
        async with c.stream("POST", "/v1/completions", json=body) as r:
            n = 0
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    if '"error"' in line:
                        return "error: " + line
                    n += 1
                    if quit_after is not None and n > quit_after:
                        return "cancelled"
                    if line == "data: [DONE]":
                        return "done"
        return "ended"

    async def storm():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
            return await asyncio.gather(*(one(c, i) for i in range(24)))

    results = asyncio.run(storm())
    errors = [r for r in results if r.startswith("error")]
    assert not errors, f"{len(errors)} streams ended in an error, the first: {errors[0] if errors else ''}"
    assert results.count("done") >= 12
    wait_until_idle(server, timeout=60)
    assert server.engine.scheduler.num_preemptions >= preempted_before


@pytest.mark.points(1)
def test_bench_serve_load_generator_reports_latencies(server, wait_until_idle):
    """``bench-serve``'s client against this server: Poisson arrivals and all at once, every
    request completed, TTFT <= E2E, token counts as asked."""
    import math

    from mlsys_labs.serving.plumbing.loadgen import make_workload, run_bench

    summaries = run_bench(server.url, [20.0, math.inf], num_prompts=4, seed=3, input_len=(5, 20), output_len=(3, 8))
    wl = make_workload(4, 3, (5, 20), (3, 8))
    for s in summaries:
        assert s["completed"] == 4, s["errors"]
        assert s["output_tokens"] == sum(m for _, m in wl)
        assert 0 < s["ttft_s"]["median"] <= s["e2e_s"]["median"]
        assert s["itl_s"]["mean"] > 0 and s["tpot_s"]["mean"] > 0
    wait_until_idle(server)


@pytest.mark.points(2)
def test_a_waiting_request_whose_client_leaves_is_aborted(server, wait_until_idle):
    """All 6 sequence slots busy with streams; a 7th request waits in the queue, its client
    gives up, and it is aborted from the queue; then the streams leave too."""
    before = server.engine.metrics.requests_aborted

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            streams, iters = [], []
            for i in range(6):
                cm = c.stream("POST", "/v1/completions", json={"prompt": f"busy {i}", "max_tokens": 480,
                                                               "ignore_eos": True, "stream": True})
                r = await cm.__aenter__()
                it = r.aiter_lines()
                while not (await it.__anext__()).startswith("data: "):
                    pass
                streams.append(cm)
                iters.append(it)
            with pytest.raises(httpx.TimeoutException):
                await c.post("/v1/completions", json={"prompt": "I will wait", "max_tokens": 5}, timeout=0.3)
            t0 = time.monotonic()
            while server.engine.metrics.requests_aborted < before + 1 and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.05)
            waiting_aborted = server.engine.metrics.requests_aborted - before
            for cm in streams:
                await cm.__aexit__(None, None, None)
            return waiting_aborted

    waiting_aborted = asyncio.run(scenario())
    assert waiting_aborted == 1, "the waiting request was not aborted when its client left"
    wait_until_idle(server)
    assert server.engine.metrics.requests_aborted == before + 7
