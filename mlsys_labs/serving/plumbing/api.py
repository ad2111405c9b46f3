"""The OpenAI request schema: parse and validate a JSON body into engine inputs.

Every mistake becomes an :class:`APIError` carrying the HTTP status and an OpenAI-style
error object ``{"error": {"message", "type", "param", "code"}}``.  Types are checked by
hand (``True`` is not an integer here, ``"10"`` is not a number) so the rules are visible.
Unknown fields are ignored, as OpenAI's API does; known fields of the wrong type are errors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..sequence import SamplingParams


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class ParsedRequest:
    prompt_ids: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool
    model: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _get(body: dict, name: str, check, what: str, default):
    if name not in body or body[name] is None:
        return default
    v = body[name]
    if not check(v):
        raise APIError(400, f"'{name}' must be {what}, got {json.dumps(v)[:60]}", name)
    return v


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the JSON body must be an object")
    return body


def parse_request(body: dict, *, chat: bool, tokenizer, served_model: str, max_model_len: int,
                  vocab_size: int) -> ParsedRequest:
    model = _get(body, "model", lambda v: isinstance(v, str), "a string", served_model)
    if model != served_model:
        raise APIError(404, f"the model '{model}' does not exist (this server serves '{served_model}')",
                       "model", "invalid_request_error", "model_not_found")
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise APIError(400, "'messages' must be a non-empty list", "messages")
        for m in msgs:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise APIError(400, "each message must be an object with string 'role' and 'content'", "messages")
            if m["role"] not in ("system", "user", "assistant", "developer"):
                raise APIError(400, f"unknown role {m['role']!r}", "messages")
        if not any(m["content"] for m in msgs):
            raise APIError(400, "the messages are empty", "messages")
        prompt_ids = tokenizer.apply_chat_template(msgs)
    else:
        if "prompt" not in body:
            raise APIError(400, "'prompt' is required", "prompt")
        prompt = body["prompt"]
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            if not prompt:
                raise APIError(400, "the prompt is empty", "prompt")
            prompt_ids = tokenizer.encode(prompt)
        elif isinstance(prompt, list) and all(_is_int(t) for t in prompt):
            if not prompt:
                raise APIError(400, "the prompt is empty", "prompt")
            if any(not 0 <= t < vocab_size for t in prompt):
                raise APIError(400, f"prompt token ids must be in [0, {vocab_size})", "prompt")
            prompt_ids = list(prompt)
        else:
            raise APIError(400, "'prompt' must be a string or a list of token ids", "prompt")
    default_max = 16 if not chat else 64
    max_tokens = _get(body, "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens",
                      _is_int, "an integer", default_max)
    if max_tokens <= 0:
        raise APIError(400, f"'max_tokens' must be at least 1, got {max_tokens}", "max_tokens")
    if len(prompt_ids) + max_tokens > max_model_len:
        raise APIError(400, f"this model's maximum context length is {max_model_len} tokens; the prompt has "
                            f"{len(prompt_ids)} and max_tokens asks for {max_tokens} more", "max_tokens")
    temperature = _get(body, "temperature", _is_num, "a number", 1.0)
    if not 0 <= temperature <= 2:
        raise APIError(400, f"'temperature' must be in [0, 2], got {temperature}", "temperature")
    top_p = _get(body, "top_p", _is_num, "a number", 1.0)
    if not 0 < top_p <= 1:
        raise APIError(400, f"'top_p' must be in (0, 1], got {top_p}", "top_p")
    top_k = _get(body, "top_k", _is_int, "an integer", 0)
    if top_k < -1:
        raise APIError(400, f"'top_k' must be -1, 0 (off) or positive, got {top_k}", "top_k")
    n = _get(body, "n", _is_int, "an integer", 1)
    if not 1 <= n <= 16:
        raise APIError(400, f"'n' must be in [1, 16], got {n}", "n")
    seed = _get(body, "seed", _is_int, "an integer", None)
    stop = _get(body, "stop", lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
                "a string or a list of strings", [])
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > 4 or any(not s for s in stop):
        raise APIError(400, "'stop' takes at most 4 non-empty strings", "stop")
    stop_ids = _get(body, "stop_token_ids", lambda v: isinstance(v, list) and all(_is_int(t) for t in v),
                    "a list of integers", [])
    stream = _get(body, "stream", lambda v: isinstance(v, bool), "a boolean", False)
    opts = _get(body, "stream_options", lambda v: isinstance(v, dict), "an object", {})
    include_usage = opts.get("include_usage", True)
    if not isinstance(include_usage, bool):
        raise APIError(400, "'stream_options.include_usage' must be a boolean", "stream_options")
    ignore_eos = _get(body, "ignore_eos", lambda v: isinstance(v, bool), "a boolean", False)
    _get(body, "user", lambda v: isinstance(v, str), "a string", None)
    for name in ("presence_penalty", "frequency_penalty"):
        if _get(body, name, _is_num, "a number", 0) != 0:
            raise APIError(400, f"'{name}' is not supported by this server", name)
    if _get(body, "logprobs", lambda v: isinstance(v, (bool, int)), "a boolean or an integer", None):
        raise APIError(400, "'logprobs' is not supported by this server", "logprobs")
    params = SamplingParams(temperature=float(temperature), top_p=float(top_p), top_k=max(top_k, 0),
                            max_tokens=max_tokens, n=n, seed=seed, stop=list(stop),
                            stop_token_ids=list(stop_ids), ignore_eos=ignore_eos)
    return ParsedRequest(prompt_ids, params, stream, include_usage, model)
