"""The OpenAI API's shapes: a JSON body in (parsed and validated into engine requests), JSON out.

Requests: ``POST /v1/completions`` (a prompt, a list of prompts, token ids or lists of token
ids; ``echo``, ``logprobs: k``, ``best_of``) and ``POST /v1/chat/completions`` (messages whose
content is a string or a list of text parts; roles system, developer, user, assistant and
tool; ``logprobs: true`` with ``top_logprobs: k``), with the sampling knobs of both (penalties,
``logit_bias``, ``min_p``, vLLM's ``top_k``, ``ignore_eos``, ``stop_token_ids`` and
``repetition_penalty``).  A field this server does not act on is refused with a 400 naming it,
as OpenAI refuses an unrecognised one — never accepted and ignored.  Types are checked by hand
(``True`` is not an integer here, ``"10"`` is not a number) so the rules are visible.

Every mistake becomes an :class:`APIError` carrying the HTTP status and OpenAI's error object
``{"error": {"message", "type", "param", "code"}}``.

Responses: :class:`ChoiceState` gathers one choice's outputs; ``choice_json`` /
``chunk_choice_json`` write it as OpenAI does, log-probabilities included (legacy
completions: ``tokens`` / ``token_logprobs`` / ``top_logprobs`` / ``text_offset``; chat:
``content: [{token, logprob, bytes, top_logprobs}]``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

from ..sampler import TokenLogprobs
from ..sequence import SamplingParams

MAX_N = 16           # n and best_of
MAX_LOGPROBS = 20    # vLLM's default max_logprobs
LOGPROB_FLOOR = -9999.0   # -inf is not JSON; vLLM clamps the same way

SAMPLING_FIELDS = {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "n", "seed", "stop",
                   "stop_token_ids", "stream", "stream_options", "ignore_eos", "user", "presence_penalty",
                   "frequency_penalty", "repetition_penalty", "logit_bias", "logprobs"}
COMPLETION_FIELDS = SAMPLING_FIELDS | {"prompt", "echo", "best_of"}
CHAT_FIELDS = SAMPLING_FIELDS | {"messages", "max_completion_tokens", "top_logprobs"}
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class ParsedRequest:
    """One HTTP request: one engine request per prompt, each with its own sampling parameters
    (their ``n`` is ``best_of`` when that is larger); ``n`` choices per prompt are returned."""

    prompts: list[list[int]]
    params: list[SamplingParams]
    echo_texts: list[str]            # the prompt text echoed before each choice ("" without echo)
    n: int
    logprobs: int | None             # top-k the client asked for (None: no logprobs in the response)
    stream: bool
    include_usage: bool
    chat: bool
    model: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get(body: dict, name: str, check, what: str, default):
    if name not in body or body[name] is None:
        return default
    v = body[name]
    if not check(v):
        raise APIError(400, f"'{name}' must be {what}, got {json.dumps(v)[:60]}", name)
    return v


def _in_range(body: dict, name: str, lo: float, hi: float, default, integer: bool = False):
    v = _get(body, name, _is_int if integer else _is_num, "an integer" if integer else "a number", default)
    if v is not None and not lo <= v <= hi:
        raise APIError(400, f"'{name}' must be in [{lo}, {hi}], got {v}", name)
    return v


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the JSON body must be an object")
    return body


def _refuse_unsupported(body: dict, chat: bool) -> None:
    known = CHAT_FIELDS if chat else COMPLETION_FIELDS
    for name in body:
        if name not in known:
            raise APIError(400, f"'{name}' is not supported by this server", name, code="unsupported_parameter")


def _token_ids(prompt, vocab_size: int) -> list[int]:
    if not prompt:
        raise APIError(400, "the prompt is empty", "prompt")
    if any(not 0 <= t < vocab_size for t in prompt):
        raise APIError(400, f"prompt token ids must be in [0, {vocab_size})", "prompt")
    return list(prompt)


def _parse_prompts(body: dict, tokenizer, vocab_size: int) -> tuple[list[list[int]], list[str]]:
    """A string, a list of token ids, or a non-empty list of either: (token ids, text) per prompt."""
    if "prompt" not in body:
        raise APIError(400, "'prompt' is required", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt)):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise APIError(400, "'prompt' must be a string, a list of token ids or a non-empty list of those", "prompt")
    ids, texts = [], []
    for p in prompt:
        if isinstance(p, str):
            if not p:
                raise APIError(400, "the prompt is empty", "prompt")
            ids.append(tokenizer.encode(p))
            texts.append(p)
        elif isinstance(p, list) and all(_is_int(t) for t in p):
            ids.append(_token_ids(p, vocab_size))
            texts.append(tokenizer.decode(p))
        else:
            raise APIError(400, "'prompt' must be a string, a list of token ids or a non-empty list of those",
                           "prompt")
    return ids, texts


def _message_text(m: dict) -> str:
    """A message's content: a string, or a list of text parts joined by newlines (as vLLM does)."""
    content = m.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise APIError(400, f"content parts must be text parts; {kind!r} is not supported", "messages")
            if not isinstance(part.get("text"), str):
                raise APIError(400, "a text content part needs a string 'text'", "messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise APIError(400, "each message's 'content' must be a string or a non-empty list of text parts", "messages")


def _parse_messages(body: dict, tokenizer) -> list[int]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, "'messages' must be a non-empty list", "messages")
    flat = []
    for m in msgs:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)):
            raise APIError(400, "each message must be an object with a string 'role'", "messages")
        if m["role"] not in CHAT_ROLES:
            raise APIError(400, f"unknown role {m['role']!r}; supported: {', '.join(CHAT_ROLES)}", "messages")
        extra = set(m) - {"role", "content"} - ({"tool_call_id"} if m["role"] == "tool" else set())
        if extra:
            raise APIError(400, f"message field '{sorted(extra)[0]}' is not supported by this server", "messages")
        one = {"role": m["role"], "content": _message_text(m)}
        if "tool_call_id" in m:
            one["tool_call_id"] = str(m["tool_call_id"])
        flat.append(one)
    if not any(m["content"] for m in flat):
        raise APIError(400, "the messages are empty", "messages")
    return tokenizer.apply_chat_template(flat)


def _parse_logit_bias(body: dict, vocab_size: int) -> dict[int, float]:
    bias = _get(body, "logit_bias", lambda v: isinstance(v, dict), "an object", {})
    out = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise APIError(400, f"'logit_bias' keys must be token ids, got {key!r}", "logit_bias") from None
        if not 0 <= token < vocab_size:
            raise APIError(400, f"'logit_bias' token id {token} is outside [0, {vocab_size})", "logit_bias")
        if not _is_num(value) or not -100 <= value <= 100:
            raise APIError(400, f"'logit_bias' values must be numbers in [-100, 100], got {value!r}", "logit_bias")
        out[token] = float(value)
    return out


def _parse_logprobs(body: dict, chat: bool) -> int | None:
    """Completions: ``logprobs: k`` (0 = the chosen token only).  Chat: ``logprobs: true`` and
    ``top_logprobs: k``.  None: no log-probabilities."""
    if not chat:
        return _in_range(body, "logprobs", 0, MAX_LOGPROBS, None, integer=True)
    want = _get(body, "logprobs", lambda v: isinstance(v, bool), "a boolean", False)
    top = _in_range(body, "top_logprobs", 0, MAX_LOGPROBS, None, integer=True)
    if top is not None and not want:
        raise APIError(400, "'top_logprobs' needs 'logprobs' set to true", "top_logprobs")
    return (top or 0) if want else None


def _parse_stop(body: dict) -> list[str]:
    stop = _get(body, "stop", lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
                "a string or a list of strings", [])
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > 4 or any(not s for s in stop):
        raise APIError(400, "'stop' takes at most 4 non-empty strings", "stop")
    return list(stop)


def _parse_sampling(body: dict, vocab_size: int) -> SamplingParams:
    """The knobs shared by completions and chat (``max_tokens`` is set per prompt later)."""
    top_k = _get(body, "top_k", _is_int, "an integer", 0)
    if top_k < -1:
        raise APIError(400, f"'top_k' must be -1, 0 (off) or positive, got {top_k}", "top_k")
    repetition = _get(body, "repetition_penalty", _is_num, "a number", 1.0)
    if not 0 < repetition <= 2:
        raise APIError(400, f"'repetition_penalty' must be in (0, 2], got {repetition}", "repetition_penalty")
    top_p = _get(body, "top_p", _is_num, "a number", 1.0)
    if not 0 < top_p <= 1:
        raise APIError(400, f"'top_p' must be in (0, 1], got {top_p}", "top_p")
    stop_ids = _get(body, "stop_token_ids", lambda v: isinstance(v, list) and all(_is_int(t) for t in v),
                    "a list of integers", [])
    if any(not 0 <= t < vocab_size for t in stop_ids):     # one the model can never produce would do nothing
        raise APIError(400, f"'stop_token_ids' must be token ids in [0, {vocab_size})", "stop_token_ids")
    return SamplingParams(
        temperature=float(_in_range(body, "temperature", 0, 2, 1.0)), top_p=float(top_p), top_k=max(top_k, 0),
        min_p=float(_in_range(body, "min_p", 0, 1, 0.0)), n=_in_range(body, "n", 1, MAX_N, 1, integer=True),
        seed=_in_range(body, "seed", -2**63, 2**64 - 1, None, integer=True), stop=_parse_stop(body), stop_token_ids=list(stop_ids),
        ignore_eos=_get(body, "ignore_eos", lambda v: isinstance(v, bool), "a boolean", False),
        presence_penalty=float(_in_range(body, "presence_penalty", -2, 2, 0.0)),
        frequency_penalty=float(_in_range(body, "frequency_penalty", -2, 2, 0.0)),
        repetition_penalty=float(repetition), logit_bias=_parse_logit_bias(body, vocab_size))


def _max_tokens(body: dict, chat: bool, prompt_len: int, max_model_len: int, capacity: int) -> int:
    """Asked for, or by default: completions 16, chat the rest of the context (as vLLM); both
    capped by the tokens the cache can hold for one sequence (``capacity``)."""
    name = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    asked = _get(body, name, _is_int, "an integer", None)
    room = min(max_model_len, capacity) - prompt_len
    if asked is None:
        if room < 1:
            raise APIError(400, f"the prompt has {prompt_len} tokens; this model's maximum context length is "
                                f"{min(max_model_len, capacity)} tokens", "messages" if chat else "prompt")
        return min(16, room) if not chat else room
    if asked <= 0:
        raise APIError(400, f"'{name}' must be at least 1, got {asked}", name)
    if prompt_len + asked > max_model_len:
        raise APIError(400, f"this model's maximum context length is {max_model_len} tokens; the prompt has "
                            f"{prompt_len} and {name} asks for {asked} more", name)
    return asked


def _parse_stream(body: dict) -> tuple[bool, bool]:
    stream = _get(body, "stream", lambda v: isinstance(v, bool), "a boolean", False)
    opts = _get(body, "stream_options", lambda v: isinstance(v, dict), "an object", None)
    if opts is not None and not stream:
        raise APIError(400, "'stream_options' is only allowed when 'stream' is true", "stream_options")
    opts = opts or {}
    if set(opts) - {"include_usage"}:
        raise APIError(400, f"'stream_options.{sorted(set(opts) - {'include_usage'})[0]}' is not supported",
                       "stream_options")
    include_usage = opts.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise APIError(400, "'stream_options.include_usage' must be a boolean", "stream_options")
    return stream, include_usage


def _parse_echo_and_best_of(body: dict, chat: bool, n: int, stream: bool, logprobs) -> tuple[bool, int]:
    if chat:
        return False, n
    echo = _get(body, "echo", lambda v: isinstance(v, bool), "a boolean", False)
    if echo and logprobs is not None:
        raise APIError(400, "'echo' with 'logprobs' (the prompt's log-probabilities) is not supported", "echo")
    best_of = _in_range(body, "best_of", 1, MAX_N, n, integer=True)
    if best_of < n:
        raise APIError(400, f"'best_of' ({best_of}) must be at least 'n' ({n})", "best_of")
    if best_of > n and stream:
        raise APIError(400, "'best_of' larger than 'n' cannot be streamed", "best_of")
    return echo, best_of


def parse_request(body: dict, *, chat: bool, tokenizer, served_model: str, max_model_len: int,
                  vocab_size: int, capacity: int | None = None) -> ParsedRequest:
    """Validate ``body``; ``capacity``: the most tokens one sequence can hold in the KV cache."""
    _refuse_unsupported(body, chat)
    model = _get(body, "model", lambda v: isinstance(v, str), "a string", served_model)
    if model != served_model:
        raise APIError(404, f"the model '{model}' does not exist (this server serves '{served_model}')",
                       "model", "invalid_request_error", "model_not_found")
    if chat:
        prompts, texts = [_parse_messages(body, tokenizer)], [""]
    else:
        prompts, texts = _parse_prompts(body, tokenizer, vocab_size)
    base = _parse_sampling(body, vocab_size)
    stream, include_usage = _parse_stream(body)
    logprobs = _parse_logprobs(body, chat)
    _get(body, "user", lambda v: isinstance(v, str), "a string", None)
    echo, best_of = _parse_echo_and_best_of(body, chat, base.n, stream, logprobs)
    engine_logprobs = logprobs if logprobs is not None else (0 if best_of > base.n else None)
    params = [replace(base, n=best_of, logprobs=engine_logprobs,
                      max_tokens=_max_tokens(body, chat, len(ids), max_model_len, capacity or max_model_len))
              for ids in prompts]
    return ParsedRequest(prompts, params, texts if echo else [""] * len(prompts), base.n, logprobs, stream,
                         include_usage, chat, model)


# ---------------------------------------------------------------------- responses
@dataclass
class ChoiceState:
    """One choice as it is generated: its text, token count, log-probabilities, ending."""

    index: int
    text: str = ""
    num_tokens: int = 0
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    finish_reason: str | None = None
    text_offset: int = 0          # characters before the next token (legacy completions' text_offset)

    @property
    def cumulative_logprob(self) -> float:
        return sum(e.logprob for e in self.logprobs)


def _lp(x: float) -> float:
    return max(x, LOGPROB_FLOOR)


def completion_logprobs(tokenizer, entries: list[TokenLogprobs], text_offset: int) -> dict:
    """Legacy completions' shape; each ``top_logprobs`` dict holds the top k and the chosen token."""
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for e in entries:
        token = tokenizer.decode([e.token_id])
        top = {tokenizer.decode([t]): _lp(lp) for t, lp in e.top}
        top.setdefault(token, _lp(e.logprob))
        out["tokens"].append(token)
        out["token_logprobs"].append(_lp(e.logprob))
        out["top_logprobs"].append(top)
        out["text_offset"].append(text_offset)
        text_offset += len(token)
    return out


def chat_logprobs(tokenizer, entries: list[TokenLogprobs]) -> dict:
    def one(token_id: int, lp: float) -> dict:
        text = tokenizer.decode([token_id])
        return {"token": text, "logprob": _lp(lp), "bytes": list(text.encode("utf-8"))}

    return {"content": [{**one(e.token_id, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]}
                        for e in entries], "refusal": None}


def _logprobs_json(req: ParsedRequest, tokenizer, entries: list[TokenLogprobs], text_offset: int):
    if req.logprobs is None:
        return None
    if req.chat:
        return chat_logprobs(tokenizer, entries)
    return completion_logprobs(tokenizer, entries, text_offset)


def choice_json(req: ParsedRequest, tokenizer, c: ChoiceState, index: int, echo: str) -> dict:
    """A finished choice in a non-streaming response (``echo``: the prompt text to put first)."""
    lp = _logprobs_json(req, tokenizer, c.logprobs, len(echo))
    if req.chat:
        return {"index": index, "message": {"role": "assistant", "content": c.text}, "logprobs": lp,
                "finish_reason": c.finish_reason}
    return {"index": index, "text": echo + c.text, "logprobs": lp, "finish_reason": c.finish_reason}


def chunk_choice_json(req: ParsedRequest, tokenizer, index: int, text: str, entries: list[TokenLogprobs],
                      text_offset: int, finish_reason: str | None) -> dict:
    """One streamed piece of a choice."""
    lp = _logprobs_json(req, tokenizer, entries, text_offset) if entries else None
    if req.chat:
        return {"index": index, "delta": {"content": text}, "logprobs": lp, "finish_reason": finish_reason}
    return {"index": index, "text": text, "logprobs": lp, "finish_reason": finish_reason}


def usage_json(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
