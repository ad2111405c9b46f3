"""The official ``openai`` Python client against the server (a real uvicorn server on a free
localhost port): every feature of the API as a client calls it, streaming included, and every
error raised as the client's own exception class with OpenAI's fields."""
from __future__ import annotations

import numpy as np
import openai
import pytest

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.serving import ByteTokenizer, SamplingParams

pytestmark = pytest.mark.step(6)
TOK = ByteTokenizer()
GREEDY = {"temperature": 0, "extra_body": {"ignore_eos": True}}


@pytest.fixture
def oa(api_server):
    with openai.OpenAI(base_url=api_server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.mark.points(2)
def test_completions_with_the_openai_client(oa, api_server, new_engine, wait_until_idle):
    prompts = ["Hello", "A longer prompt"]
    refs = new_engine(num_blocks=64).generate(prompts, SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))
    r = oa.completions.create(model="tiny-llama", prompt=prompts, max_tokens=5, n=2, logprobs=2, echo=False, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for c in r.choices:
        ref = refs[c.index // 2][0]
        assert c.text == ref.text and c.finish_reason == "length"
        assert c.logprobs.tokens == [TOK.decode([t]) for t in ref.token_ids]
        assert len(c.logprobs.token_logprobs) == 5 and all(len(t) <= 3 for t in c.logprobs.top_logprobs)
    assert r.usage.completion_tokens == 20
    echo = oa.completions.create(model="tiny-llama", prompt=prompts[0], max_tokens=5, echo=True, **GREEDY)
    assert echo.choices[0].text == prompts[0] + refs[0][0].text
    best = oa.completions.create(model="tiny-llama", prompt="Once", max_tokens=4, n=1, best_of=3, seed=2,
                                 temperature=1.0, logit_bias={"101": 2.0}, presence_penalty=0.5,
                                 frequency_penalty=0.5, extra_body={"ignore_eos": True, "min_p": 0.05})
    assert len(best.choices) == 1 and best.usage.completion_tokens == 12
    stream = oa.completions.create(model="tiny-llama", prompt=prompts[1], max_tokens=5, stream=True, logprobs=1,
                                   stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == refs[1][0].text
    assert sum(len(c.choices[0].logprobs.tokens) for c in chunks if c.choices) == 5
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].choices == []
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_chat_with_the_openai_client(oa, api_server, new_engine, hf_model, wait_until_idle):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}]
    flat = [msgs[0], {"role": "user", "content": "Hi\nthere"}]
    ids = TOK.apply_chat_template(flat)
    ref = new_engine(num_blocks=64).generate([ids], SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))[0][0]
    r = oa.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=6, logprobs=True, top_logprobs=3,
                                   **GREEDY)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == ref.text
    assert [e.token for e in choice.logprobs.content] == [TOK.decode([t]) for t in ref.token_ids]
    assert all(len(e.top_logprobs) == 3 for e in choice.logprobs.content)
    import torch

    with torch.no_grad():
        lp = torch.log_softmax(hf_model(torch.tensor([ids + ref.token_ids])).logits[0], -1).numpy()
    assert_close(np.array([e.logprob for e in choice.logprobs.content]),
                 np.array([lp[len(ids) - 1 + i, t] for i, t in enumerate(ref.token_ids)]), dtype="float32", scale=10)
    chunks = list(oa.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=6, stream=True, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ref.text
    assert chunks[-1].choices[0].finish_reason == "length"
    tool = oa.chat.completions.create(model="tiny-llama", max_tokens=2, messages=[
        {"role": "user", "content": "weather?"}, {"role": "tool", "content": "sunny", "tool_call_id": "c1"}])
    assert tool.choices[0].message.role == "assistant"
    default = oa.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "x"}], **GREEDY)
    assert default.usage.completion_tokens == api_server.engine.max_model_len - default.usage.prompt_tokens
    wait_until_idle(api_server)


@pytest.mark.points(1)
def test_token_ids_and_streamed_choices_with_the_openai_client(oa, api_server, new_engine, wait_until_idle):
    """Token-id prompts, two streamed chat choices carrying log-probabilities, and vLLM's
    ``repetition_penalty`` through ``extra_body``: each against the engine run directly."""
    ids = TOK.encode("Token ids")
    engine = new_engine(num_blocks=64)
    ref = engine.generate([ids], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))[0][0]
    r = oa.completions.create(model="tiny-llama", prompt=ids, max_tokens=5, **GREEDY)
    assert r.choices[0].text == ref.text and r.usage.prompt_tokens == len(ids)

    msgs = [{"role": "user", "content": "Two of them"}]
    chat_ids = TOK.apply_chat_template(msgs)
    chat_ref = engine.generate([chat_ids], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))[0][0]
    texts, tokens = {0: "", 1: ""}, {0: [], 1: []}
    for chunk in oa.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=4, n=2, stream=True,
                                            logprobs=True, top_logprobs=2, **GREEDY):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            tokens[c.index] += [e.token for e in (c.logprobs.content or [])] if c.logprobs else []
    want = [TOK.decode([t]) for t in chat_ref.token_ids]
    assert texts == {0: chat_ref.text, 1: chat_ref.text} and tokens == {0: want, 1: want}

    penal = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, repetition_penalty=1.8)
    ref_pen = engine.generate([ids], penal)[0][0]
    plain = engine.generate([ids], SamplingParams(temperature=0, max_tokens=24, ignore_eos=True))[0][0]
    assert ref_pen.token_ids != plain.token_ids, "this prompt cannot tell the penalty from none"
    r = oa.completions.create(model="tiny-llama", prompt=ids, max_tokens=24, temperature=0,
                              extra_body={"ignore_eos": True, "repetition_penalty": 1.8})
    assert r.choices[0].text == ref_pen.text
    wait_until_idle(api_server)


@pytest.mark.points(2)
def test_models_and_errors_with_the_openai_client(oa, api_server):
    assert [m.id for m in oa.models.list().data] == ["tiny-llama"]
    assert oa.models.retrieve("tiny-llama").id == "tiny-llama"
    with pytest.raises(openai.NotFoundError) as e:
        oa.models.retrieve("gpt-17")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        oa.completions.create(model="gpt-17", prompt="hi")
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}],
                                   tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert e.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as e:
        oa.completions.create(model="tiny-llama", prompt="hi", max_tokens=0)
    assert e.value.param == "max_tokens" and e.value.type == "invalid_request_error"
    with pytest.raises(openai.APIStatusError) as e:
        oa.completions.create(model="tiny-llama", prompt="x" * (api_server.max_request_bytes + 1))
    assert e.value.status_code == 413 and e.value.code == "request_too_large"
