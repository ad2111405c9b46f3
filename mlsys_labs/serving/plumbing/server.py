"""An OpenAI-compatible HTTP server: FastAPI on uvicorn, the engine loop on a thread beside it.

Flow: a request handler validates the body (:mod:`.api`), hands the request to
:class:`AsyncEngine` and awaits its outputs on an ``asyncio.Queue``; the engine thread
drains new requests and aborts, runs ``engine.step()`` and posts each output back to the
event loop (``call_soon_threadsafe``).  A client that goes away — the streaming generator
is cancelled, or a non-streaming handler sees ``http.disconnect`` — aborts its request,
which frees its blocks whether it was waiting, running or preempted.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (``stream: true`` sends
server-sent events ending in ``data: [DONE]``, the last chunk carrying ``usage``),
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text format).
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

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from ...common.procs import free_port
from .api import APIError, parse_json, parse_request
from ..engine import LLMEngine, log_exception
from ..scheduler import RequestRejected


class AsyncEngine:
    """The engine on its own thread; handlers talk to it through queues only."""

    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
        self.idle = threading.Event()

    def start(self) -> "AsyncEngine":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=10)

    # ---- called from the event loop
    def submit(self, request_id: str, prompt_ids: list[int], params) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        self.inbox.put(("add", request_id, prompt_ids, params, loop, q))
        self.wake.set()
        return q

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

    def _drain_inbox(self) -> None:
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return
            if msg[0] == "add":
                _, rid, ids, params, loop, q = msg
                self.streams[rid] = (loop, q)
                try:
                    self.engine.add_request(ids, params, request_id=rid)
                except (RequestRejected, ValueError) as exc:
                    self._post(rid, APIError(400, str(exc)))
                    self.streams.pop(rid, None)
                except Exception as exc:  # noqa: BLE001
                    log_exception(exc)
                    self._post(rid, APIError(500, f"{type(exc).__name__}: {exc}", type_="server_error"))
                    self.streams.pop(rid, None)
            else:
                self.engine.abort(msg[1])
                self.streams.pop(msg[1], None)

    def _loop(self) -> None:
        while not self.stopping:
            self._drain_inbox()
            if not self.engine.has_unfinished():
                self.idle.set()
                self.wake.wait(0.05)
                self.wake.clear()
                continue
            self.idle.clear()
            try:
                outputs = self.engine.step()
            except Exception as exc:  # noqa: BLE001 - the engine must keep serving
                log_exception(exc)
                for rid in list(self.engine.seqs_by_request):
                    self.engine.abort(rid)
                    self._post(rid, APIError(500, f"engine error: {exc}", type_="server_error"))
                    self.streams.pop(rid, None)
                continue
            for out in outputs:
                self._post(out.request_id, out)
            for rid in [r for r in self.streams if r not in self.engine.seqs_by_request]:
                self.streams.pop(rid, None)      # finished: every choice was posted


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def create_app(aengine: AsyncEngine, model_name: str):
    engine = aengine.engine
    app = FastAPI(title="mlsys-labs serving (lab 5)")

    def error_response(exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    def internal_error(exc: Exception) -> JSONResponse:
        """A bug in a handler: 500 with the error named, its traceback on stdout (test logs).
        Caught here rather than by a Starlette exception handler, which would re-raise it for
        uvicorn to log from its own thread."""
        log_exception(exc)
        return error_response(APIError(500, f"{type(exc).__name__}: {exc}", type_="server_error"))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "mlsys-labs", "max_model_len": engine.max_model_len}]}

    @app.get("/metrics")
    async def metrics():
        s = engine.scheduler
        text = engine.metrics.render(running=len(s.running), waiting=len(s.waiting),
                                     kv_usage=engine.block_manager.usage(),
                                     prefix_hit_rate=engine.block_manager.stats.hit_rate,
                                     preemptions=s.num_preemptions, model=model_name)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def handle(request: Request, chat: bool):
        try:
            return await handle_checked(request, chat)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            return internal_error(exc)

    async def handle_checked(request: Request, chat: bool):
        try:
            body = parse_json(await request.body())
            req = parse_request(body, chat=chat, tokenizer=engine.tokenizer, served_model=model_name,
                                max_model_len=engine.max_model_len, vocab_size=engine.model.config.vocab_size)
            engine.scheduler.check_fits(len(req.prompt_ids), req.params.max_tokens)
        except APIError as exc:
            return error_response(exc)
        except RequestRejected as exc:
            return error_response(APIError(400, str(exc)))
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        q = aengine.submit(rid, req.prompt_ids, req.params)
        n = req.params.n
        kind = "chat.completion" if chat else "text_completion"

        def chunk(choices, usage=None):
            d = {"id": rid, "object": kind + (".chunk" if chat else ""), "created": created,
                 "model": model_name, "choices": choices}
            if usage is not None:
                d["usage"] = usage
            return f"data: {json.dumps(d)}\n\n"

        if req.stream:
            async def events():
                done, completion_tokens, finished = 0, 0, False
                try:
                    if chat:
                        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                                      "finish_reason": None} for i in range(n)])
                    while done < n:
                        out = await q.get()
                        if isinstance(out, APIError):
                            yield f"data: {json.dumps(out.body())}\n\n"
                            break
                        completion_tokens += len(out.new_token_ids)
                        done += out.finished
                        if out.error:
                            yield f"data: {json.dumps(APIError(500, out.error, type_='server_error').body())}\n\n"
                            break
                        if out.new_token_ids or out.finished:     # one chunk per token (ITL), text may be ""
                            piece = {"delta": {"content": out.new_text}} if chat else {"text": out.new_text}
                            yield chunk([{"index": out.index, **piece, "finish_reason": out.finish_reason}])
                    else:
                        if req.include_usage:
                            yield chunk([], _usage(len(req.prompt_ids), completion_tokens))
                    finished = True
                    yield "data: [DONE]\n\n"
                except Exception as exc:  # noqa: BLE001 - report in the stream, never to uvicorn
                    log_exception(exc)
                    yield f"data: {json.dumps(APIError(500, f'{type(exc).__name__}: {exc}', type_='server_error').body())}\n\n"
                finally:
                    if not finished:
                        aengine.abort(rid)
            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})

        texts, reasons, completion_tokens, done = [""] * n, [None] * n, 0, 0
        try:
            last_check = time.monotonic()
            while done < n:
                try:
                    out = await asyncio.wait_for(q.get(), timeout=0.1)
                except asyncio.TimeoutError:
                    out = None
                if time.monotonic() - last_check >= 0.1:      # outputs may arrive every step: poll on a clock
                    last_check = time.monotonic()
                    if await request.is_disconnected():
                        aengine.abort(rid)
                        return JSONResponse({"error": {"message": "client disconnected"}}, status_code=499)
                if out is None:
                    continue
                if isinstance(out, APIError):
                    return error_response(out)
                if out.error:
                    return error_response(APIError(500, out.error, type_="server_error"))
                texts[out.index] += out.new_text
                completion_tokens += len(out.new_token_ids)
                if out.finished:
                    reasons[out.index] = out.finish_reason
                    done += 1
        except asyncio.CancelledError:
            aengine.abort(rid)
            raise
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": r}
                       for i, (t, r) in enumerate(zip(texts, reasons))]
        else:
            choices = [{"index": i, "text": t, "finish_reason": r, "logprobs": None}
                       for i, (t, r) in enumerate(zip(texts, reasons))]
        return {"id": rid, "object": kind, "created": created, "model": model_name, "choices": choices,
                "usage": _usage(len(req.prompt_ids), completion_tokens)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, chat=True)

    return app


# ---------------------------------------------------------------------- running it
def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class ServerThread:
    """uvicorn in a background thread (tests, bench-serve); ``with ServerThread(engine) as srv:``."""

    def __init__(self, engine: LLMEngine, host: str = "127.0.0.1", port: int | None = None,
                 model_name: str | None = None):
        import uvicorn

        self.engine = engine
        self.aengine = AsyncEngine(engine)
        self.host, self.port = host, port or free_port(host)
        self.model_name = model_name or engine.model_name
        app = create_app(self.aengine, self.model_name)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    lifespan="off"))
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
    p.add_argument("--port", type=int, default=8000, help="default 8000; a free port is used if it is busy")
    p.add_argument("--model", default=None, help="a Hugging Face-format Llama folder (default: the lab's tiny model)")
    p.add_argument("--num-blocks", type=int, default=1024)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--max-num-seqs", type=int, default=64)
    p.add_argument("--max-num-batched-tokens", type=int, default=512)
    p.add_argument("--no-prefix-caching", action="store_true")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--attention-backend", choices=["torch", "triton"], default="torch",
                   help="decode attention: PyTorch gather, or the Triton paged-decode kernel (meant for CUDA)")
    return p


def engine_from_args(args) -> LLMEngine:
    from ...common.device import has_cuda
    from ..config import EngineConfig

    device = args.device or ("cuda" if has_cuda() else "cpu")
    cfg = EngineConfig(block_size=args.block_size, num_blocks=args.num_blocks, max_num_seqs=args.max_num_seqs,
                       max_num_batched_tokens=args.max_num_batched_tokens,
                       enable_prefix_caching=not args.no_prefix_caching, device=device,
                       attention_backend=args.attention_backend)
    return LLMEngine.from_pretrained(args.model, cfg)


def serve_main(argv: list[str]) -> int:
    """``mlsys-labs serve``: start the server on the default model and say where it listens."""
    import uvicorn

    args = build_parser().parse_args(argv)
    engine = engine_from_args(args)
    port = args.port
    if not port_is_free(args.host, port):
        port = free_port(args.host)
        print(f"port {args.port} is busy; using {port} instead")
    aengine = AsyncEngine(engine).start()
    app = create_app(aengine, engine.model_name)
    url = f"http://{args.host}:{port}"
    print(f"serving {engine.model_name} on {url}  (OpenAI API at {url}/v1; Ctrl-C stops)")
    print(f"try: curl {url}/v1/completions -H 'Content-Type: application/json' "
          f"-d '{{\"model\": \"{engine.model_name}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'")
    try:
        uvicorn.run(app, host=args.host, port=port, log_level="info")
    finally:
        aengine.stop()
    return 0
