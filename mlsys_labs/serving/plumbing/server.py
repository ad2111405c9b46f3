"""An OpenAI-compatible HTTP server: FastAPI on uvicorn, the engine loop on a thread beside it.

Flow: a request handler reads the body (at most ``max_request_bytes``, else 413), validates it
(:mod:`.api`), hands one engine request per prompt to :class:`AsyncEngine` and awaits the
outputs on an ``asyncio.Queue``; the engine thread drains new requests and aborts, admits a
request only while fewer than ``max_num_queued_reqs`` sequences wait (else 503 with
``Retry-After``, like vLLM's ``--max-num-queued-reqs``), runs ``engine.step()`` and posts each
output back to the event loop (``call_soon_threadsafe``).  The handler checks the same bound
first, counting the requests still in the engine's inbox, so a full queue is answered 503 at
once, without waiting for the engine thread to finish its step.  Nothing polls: a waiting handler
sleeps on its queue, and a client that goes away wakes it (a non-streaming handler listens for
``http.disconnect``; a streaming response is cancelled by Starlette) and aborts its request,
which frees its blocks whether it was waiting, running or preempted.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (``stream: true`` sends
server-sent events ending in ``data: [DONE]``; ``stream_options.include_usage`` adds a last
chunk carrying ``usage``), ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``,
``GET /metrics`` (Prometheus text format).  Every error, routing ones (404, 405) included, is
OpenAI's error object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ...common.cli_args import at_least, port
from ...common.procs import free_port
from ..engine import LLMEngine, RequestOutput, log_exception
from ..scheduler import RequestRejected
from .api import (APIError, ChoiceState, ParsedRequest, choice_json, chunk_choice_json, parse_json,
                  parse_request, usage_json)

MAX_REQUEST_BYTES = 4 << 20       # a request body larger than this is refused with 413
MAX_NUM_QUEUED_REQS = 1024        # sequences waiting for a slot; more are refused with 503
ACCEPTED = "accepted"             # posted once the engine queued a request
DISCONNECTED = "disconnected"     # posted by a handler's disconnect watcher


class ClientDisconnected(Exception):
    """The client of a non-streaming request went away: its engine requests are aborted."""


class AsyncEngine:
    """The engine on its own thread; handlers talk to it through queues only."""

    def __init__(self, engine: LLMEngine, max_num_queued_reqs: int = MAX_NUM_QUEUED_REQS):
        self.engine = engine
        self.max_num_queued_reqs = max_num_queued_reqs
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
        self.idle = threading.Event()
        self.in_inbox = 0                     # requests submitted and not yet drained by the engine thread
        self.count_lock = threading.Lock()

    def start(self) -> "AsyncEngine":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=10)

    def busy(self) -> APIError:
        return APIError(503, f"the server is busy: {self.max_num_queued_reqs} requests are already waiting; "
                             "retry later", type_="server_error", code="queue_full", headers={"Retry-After": "1"})

    # ---- called from the event loop
    def check_room(self, num_requests: int) -> None:
        """Raise the 503 at once if ``num_requests`` more would overfill the waiting queue.

        The engine thread checks again when it admits (it alone knows the queue exactly); this
        check answers a burst without waiting for the engine's current step to end."""
        if len(self.engine.scheduler.waiting) + self.in_inbox + num_requests > self.max_num_queued_reqs:
            raise self.busy()

    def submit(self, request_id: str, prompt_ids: list[int], params, q: asyncio.Queue) -> None:
        """Queue a request; ``ACCEPTED`` or an :class:`APIError`, then its outputs, arrive on ``q``."""
        with self.count_lock:
            self.in_inbox += 1
        self.inbox.put(("add", request_id, prompt_ids, params, asyncio.get_running_loop(), q))
        self.wake.set()

    def abort(self, request_id: str) -> None:
        self.inbox.put(("abort", request_id))
        self.wake.set()

    # ---- the engine thread
    def _post(self, request_id: str, item) -> None:
        entry = self.streams.get(request_id)
        if entry is not None:
            loop, q = entry
            try:
                loop.call_soon_threadsafe(q.put_nowait, item)
            except RuntimeError:        # the event loop is gone
                self.streams.pop(request_id, None)

    def _admit(self, rid: str, ids: list[int], params) -> None:
        if len(self.engine.scheduler.waiting) >= self.max_num_queued_reqs:
            raise self.busy()
        try:
            self.engine.add_request(ids, params, request_id=rid)
        except (RequestRejected, ValueError) as exc:
            raise APIError(400, str(exc)) from None

    def _drain_inbox(self) -> None:
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return
            if msg[0] == "abort":
                self.engine.abort(msg[1])
                self.streams.pop(msg[1], None)
                continue
            _, rid, ids, params, loop, q = msg
            with self.count_lock:
                self.in_inbox -= 1
            self.streams[rid] = (loop, q)
            try:
                self._admit(rid, ids, params)
                self._post(rid, ACCEPTED)
            except Exception as exc:  # noqa: BLE001 - the request fails, the engine goes on
                if not isinstance(exc, APIError):
                    log_exception(exc)
                    exc = APIError(500, f"{type(exc).__name__}: {exc}", type_="server_error")
                self._post(rid, exc)
                self.streams.pop(rid, None)

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception as exc:  # noqa: BLE001 - the engine must keep serving
            log_exception(exc)
            for rid in list(self.engine.seqs_by_request):
                self.engine.abort(rid)
                self._post(rid, APIError(500, f"engine error: {exc}", type_="server_error"))
                self.streams.pop(rid, None)
            return
        for out in outputs:
            self._post(out.request_id, out)
        for out in outputs:            # after posting them all: a request's choices may end together
            if out.finished and out.request_id not in self.engine.seqs_by_request:
                self.streams.pop(out.request_id, None)

    def _loop(self) -> None:
        while not self.stopping:
            self._drain_inbox()
            if not self.engine.has_unfinished():
                self.idle.set()
                self.wake.wait(0.05)
                self.wake.clear()
                continue
            self.idle.clear()
            self._step()


# ---------------------------------------------------------------------- one HTTP request
@dataclass
class Generation:
    """One completion or chat request in flight: its engine requests (one per prompt) and choices."""

    aengine: AsyncEngine
    req: ParsedRequest
    model_name: str
    rid: str = ""
    created: int = 0
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    prompt_of: dict[str, int] = field(default_factory=dict)     # engine request id → prompt index
    choices: dict[tuple[int, int], ChoiceState] = field(default_factory=dict)
    completion_tokens: int = 0
    open: bool = False         # engine requests may still run (abort them if we leave)

    def __post_init__(self):
        self.rid = f"{'chatcmpl' if self.req.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    async def start(self) -> None:
        """Submit every prompt; raises the first :class:`APIError` (after aborting the rest)."""
        for i, (ids, params) in enumerate(zip(self.req.prompts, self.req.params)):
            sub = f"{self.rid}-{i}"
            self.prompt_of[sub] = i
            self.aengine.submit(sub, ids, params, self.queue)
        self.open = True
        pending = len(self.prompt_of)
        while pending:
            item = await self.queue.get()
            if isinstance(item, APIError):
                self.abort()
                raise item
            if item == DISCONNECTED:
                self.abort()
                raise ClientDisconnected
            pending -= item == ACCEPTED

    def abort(self) -> None:
        if self.open:
            self.open = False
            for sub in self.prompt_of:
                self.aengine.abort(sub)

    def choice(self, out: RequestOutput) -> ChoiceState:
        key = (self.prompt_of[out.request_id], out.index)
        if key not in self.choices:
            self.choices[key] = ChoiceState(key[0] * self.req.n + out.index,
                                            text_offset=len(self.req.echo_texts[key[0]]))
        return self.choices[key]

    async def next_output(self) -> RequestOutput:
        """The next engine output; raises :class:`APIError` for a failure."""
        item = await self.queue.get()
        if item == DISCONNECTED:
            raise ClientDisconnected
        if isinstance(item, APIError):
            raise item
        if item.error:
            raise APIError(500, item.error, type_="server_error")
        self.completion_tokens += len(item.new_token_ids)
        return item

    @property
    def num_choices(self) -> int:
        return len(self.req.prompts) * self.req.params[0].n

    def envelope(self, choices: list, usage=None, chunk: bool = False) -> dict:
        kind = "chat.completion" if self.req.chat else "text_completion"
        d = {"id": self.rid, "object": kind + (".chunk" if chunk and self.req.chat else ""),
             "created": self.created, "model": self.model_name, "choices": choices}
        if usage is not None:
            d["usage"] = usage
        return d

    def usage(self) -> dict:
        return usage_json(sum(len(p) for p in self.req.prompts), self.completion_tokens)


def _sse(d: dict) -> str:
    return f"data: {json.dumps(d)}\n\n"


async def _collect(gen: Generation, tokenizer) -> dict:
    """Non-streaming: gather every choice, keep the ``n`` best of ``best_of`` per prompt."""
    done = 0
    while done < gen.num_choices:
        out = await gen.next_output()
        c = gen.choice(out)
        c.text += out.new_text
        c.num_tokens += len(out.new_token_ids)
        if out.logprobs is not None:
            c.logprobs.append(out.logprobs)
        if out.finished:
            c.finish_reason = out.finish_reason
            done += 1
    gen.open = False
    choices = []
    for p in range(len(gen.req.prompts)):
        mine = [c for (i, _), c in sorted(gen.choices.items()) if i == p]
        if len(mine) > gen.req.n:          # best_of: the n of highest cumulative log-probability
            mine = sorted(mine, key=lambda c: -c.cumulative_logprob)[:gen.req.n]
        choices += [choice_json(gen.req, tokenizer, c, p * gen.req.n + j, gen.req.echo_texts[p])
                    for j, c in enumerate(mine)]
    return gen.envelope(choices, gen.usage())


def _first_chunks(gen: Generation, tokenizer) -> list[str]:
    """Chat: the assistant role for every choice; completions with echo: the prompt text."""
    req, n = gen.req, gen.req.n
    if req.chat:
        return [_sse(gen.envelope([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                    "finish_reason": None} for i in range(gen.num_choices)], chunk=True))]
    return [_sse(gen.envelope([chunk_choice_json(req, tokenizer, p * n + j, text, [], 0, None)], chunk=True))
            for p, text in enumerate(req.echo_texts) if text for j in range(n)]


async def _events(gen: Generation, tokenizer):
    """Streaming: one chunk per token (its text may be "" while a character or stop string is held)."""
    try:
        for line in _first_chunks(gen, tokenizer):
            yield line
        done = 0
        while done < gen.num_choices:
            out = await gen.next_output()
            c = gen.choice(out)
            done += out.finished
            entries = [out.logprobs] if out.logprobs is not None else []
            piece = chunk_choice_json(gen.req, tokenizer, c.index, out.new_text, entries, c.text_offset,
                                      out.finish_reason)
            c.text_offset += sum(len(tokenizer.decode([e.token_id])) for e in entries)
            yield _sse(gen.envelope([piece], chunk=True))
        gen.open = False
        if gen.req.include_usage:
            yield _sse(gen.envelope([], gen.usage(), chunk=True))
    except APIError as exc:
        yield _sse(exc.body())
    except Exception as exc:  # noqa: BLE001 - report in the stream, never to uvicorn
        log_exception(exc)
        yield _sse(APIError(500, f"{type(exc).__name__}: {exc}", type_="server_error").body())
    finally:
        gen.abort()
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------------- the app
def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (announced or actually sent)."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise APIError(413, f"the request body ({announced} bytes) is larger than the limit of {limit} bytes",
                       code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is larger than the limit of {limit} bytes",
                           code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _watch_disconnect(request: Request, q: asyncio.Queue) -> None:
    """Wake the handler with ``DISCONNECTED`` when the client goes away (no polling)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    q.put_nowait(DISCONNECTED)


async def _generate(request: Request, aengine: AsyncEngine, model_name: str, chat: bool, limit: int):
    engine = aengine.engine
    body = parse_json(await read_body(request, limit))
    req = parse_request(body, chat=chat, tokenizer=engine.tokenizer, served_model=model_name,
                        max_model_len=engine.max_model_len, vocab_size=engine.model.config.vocab_size,
                        capacity=engine.scheduler.token_capacity)
    try:
        for ids, params in zip(req.prompts, req.params):
            engine.scheduler.check_fits(len(ids), params.max_tokens)
    except RequestRejected as exc:
        raise APIError(400, str(exc)) from None
    aengine.check_room(len(req.prompts))
    gen = Generation(aengine, req, model_name)
    watcher = asyncio.create_task(_watch_disconnect(request, gen.queue)) if not req.stream else None
    try:
        await gen.start()
        if req.stream:
            return StreamingResponse(_events(gen, engine.tokenizer), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await _collect(gen, engine.tokenizer)
    except BaseException:
        gen.abort()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()


def _add_generation_routes(app: FastAPI, aengine: AsyncEngine, model_name: str, limit: int) -> None:
    async def handle(request: Request, chat: bool):
        try:
            return await _generate(request, aengine, model_name, chat, limit)
        except APIError as exc:
            return error_response(exc)
        except ClientDisconnected:        # nobody reads this; 499 is nginx's "client closed request"
            return error_response(APIError(499, "client disconnected", code="client_disconnected"))
        except Exception as exc:  # noqa: BLE001 - a bug in a handler: 500, its traceback on stdout
            log_exception(exc)
            return error_response(APIError(500, f"{type(exc).__name__}: {exc}", type_="server_error"))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, chat=True)


def _add_info_routes(app: FastAPI, engine: LLMEngine, model_name: str) -> None:
    card = {"id": model_name, "object": "model", "created": 0, "owned_by": "mlsys-labs",
            "max_model_len": engine.max_model_len}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != model_name:
            return error_response(APIError(404, f"the model '{model_id}' does not exist", "model",
                                           code="model_not_found"))
        return card

    @app.get("/metrics")
    async def metrics():
        s = engine.scheduler
        text = engine.metrics.render(running=len(s.running), waiting=len(s.waiting),
                                     kv_usage=engine.block_manager.usage(),
                                     prefix_hit_rate=engine.block_manager.stats.hit_rate,
                                     preemptions=s.num_preemptions, model=model_name, spec=engine.spec_stats)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _add_error_handlers(app: FastAPI) -> None:
    """Routing errors (no such path 404, wrong method 405) and validation (422) in OpenAI's shape."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        reason = {404: "Invalid URL", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
        err = APIError(exc.status_code, f"{reason} ({request.method} {request.url.path})",
                       code={404: "not_found", 405: "method_not_allowed"}.get(exc.status_code),
                       headers=dict(exc.headers or {}))
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(APIError(422, f"invalid request: {exc.errors()}"))


def create_app(aengine: AsyncEngine, model_name: str, max_request_bytes: int = MAX_REQUEST_BYTES) -> FastAPI:
    app = FastAPI(title="mlsys-labs serving (lab 5)")
    _add_error_handlers(app)
    _add_info_routes(app, aengine.engine, model_name)
    _add_generation_routes(app, aengine, model_name, max_request_bytes)
    return app


# ---------------------------------------------------------------------- running it
def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` now: bound as uvicorn binds (``SO_REUSEADDR``), so
    connections the server closed (TIME_WAIT, e.g. after a 413) do not count; a listener does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class ServerThread:
    """uvicorn in a background thread (tests, bench-serve); ``with ServerThread(engine) as srv:``."""

    def __init__(self, engine: LLMEngine, host: str = "127.0.0.1", port: int | None = None,
                 model_name: str | None = None, max_num_queued_reqs: int = MAX_NUM_QUEUED_REQS,
                 max_request_bytes: int = MAX_REQUEST_BYTES):
        import uvicorn

        self.engine = engine
        self.aengine = AsyncEngine(engine, max_num_queued_reqs)
        self.host, self.port = host, port or free_port(host)
        self.model_name = model_name or engine.model_name
        self.max_request_bytes = max_request_bytes
        app = create_app(self.aengine, self.model_name, max_request_bytes)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    lifespan="off", backlog=4096))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self.aengine.start()
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if time.monotonic() - t0 > timeout or not self.thread.is_alive():
                self.stop()
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.aengine.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlsys-labs serve", description="OpenAI-compatible server on the default model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8000, help="default 8000; a free port is used if it is busy")
    p.add_argument("--model", default=None, help="a Hugging Face-format Llama folder (default: the lab's tiny model)")
    p.add_argument("--num-blocks", type=at_least(1), default=1024)
    p.add_argument("--block-size", type=at_least(1), default=16)
    p.add_argument("--max-num-seqs", type=at_least(1), default=64)
    p.add_argument("--max-num-batched-tokens", type=at_least(1), default=512)
    p.add_argument("--max-num-queued-reqs", type=at_least(1), default=MAX_NUM_QUEUED_REQS,
                   help="sequences allowed to wait for a slot; further requests get 503 with Retry-After")
    p.add_argument("--max-request-bytes", type=at_least(1), default=MAX_REQUEST_BYTES,
                   help="largest request body accepted; larger ones get 413")
    p.add_argument("--no-prefix-caching", action="store_true")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--attention-backend", choices=["torch", "triton"], default="torch",
                   help="decode attention: PyTorch gather, or the Triton paged-decode kernel (meant for CUDA)")
    p.add_argument("--num-speculative-tokens", type=at_least(0), default=0,
                   help="speculative decoding by prompt lookup (n-gram), up to this many guesses a step (0: off)")
    return p


def engine_from_args(args) -> LLMEngine:
    from ...common.device import has_cuda
    from ..config import EngineConfig, SpeculativeConfig

    device = args.device or ("cuda" if has_cuda() else "cpu")
    if device == "cuda" and not has_cuda():
        raise ValueError("--device cuda: no CUDA device is available to this PyTorch")
    if args.model is not None and not (Path(args.model) / "config.json").is_file():
        raise ValueError(f"--model {args.model}: not a Hugging Face model folder (no config.json there)")
    spec = SpeculativeConfig(num_speculative_tokens=args.num_speculative_tokens) if args.num_speculative_tokens else None
    cfg = EngineConfig(block_size=args.block_size, num_blocks=args.num_blocks, max_num_seqs=args.max_num_seqs,
                       max_num_batched_tokens=args.max_num_batched_tokens,
                       enable_prefix_caching=not args.no_prefix_caching, device=device,
                       attention_backend=args.attention_backend, speculative=spec)
    return LLMEngine.from_pretrained(args.model, cfg)


def serve_main(argv: list[str]) -> int:
    """``mlsys-labs serve``: start the server on the default model and say where it listens."""
    import uvicorn

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        engine = engine_from_args(args)
    except ValueError as exc:         # a bad flag, or a checkpoint this engine refuses by name
        parser.error(str(exc))
    port = args.port
    if not port_is_free(args.host, port):
        port = free_port(args.host)
        print(f"port {args.port} is busy; using {port} instead")
    aengine = AsyncEngine(engine, args.max_num_queued_reqs).start()
    app = create_app(aengine, engine.model_name, args.max_request_bytes)
    url = f"http://{args.host}:{port}"
    print(f"serving {engine.model_name} on {url}  (OpenAI API at {url}/v1; Ctrl-C stops)")
    print(f"try: curl {url}/v1/completions -H 'Content-Type: application/json' "
          f"-d '{{\"model\": \"{engine.model_name}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'")
    try:
        uvicorn.run(app, host=args.host, port=port, log_level="info", backlog=4096)
    finally:
        aengine.stop()
    return 0
