"""Lab 5 fixtures: the default model (created on first use), a transformers copy of it,
engines on small caches, and one torch thread (a loaded 2-core machine slows to a crawl
when OpenMP threads oversubscribe it)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def forcing():
    """``forcing(script, prompt_len)``: a logits processor that makes output token i be
    ``script[i]`` (by a wide margin) — an engine whose output the test chooses."""
    def make(script, prompt_len):
        def force(ids, logits):
            out = torch.full_like(logits, -1e4)
            out[script[len(ids) - prompt_len]] = 0.0
            return out
        return force
    return make


@pytest.fixture(scope="session")
def model_path():
    from mlsys_labs.serving import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def hf_model(model_path):
    """transformers' own LlamaForCausalLM on the same weights, in float64 (the reference)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return LlamaForCausalLM.from_pretrained(model_path, dtype=torch.float64).eval()


@pytest.fixture(scope="session")
def model(model_path):
    from mlsys_labs.serving import load_pretrained

    return load_pretrained(model_path)


MAX_ENGINE_STEPS = 3000   # the longest test needs a few hundred steps; a stuck scheduler hits this


def bound_steps(engine, max_steps: int = MAX_ENGINE_STEPS):
    """Make ``engine.step`` (and so ``generate``) fail with a clear message after
    ``max_steps`` steps instead of looping forever: a scheduler that never preempts (or
    never admits) would otherwise hang the run."""
    step, count = engine.step, [0]

    def bounded_step():
        count[0] += 1
        if count[0] > max_steps:
            s = engine.scheduler
            raise AssertionError(
                f"the engine did not finish within {max_steps} steps (a scheduler that never preempts, "
                f"never admits or never finishes?): running {s.running[:4]}, waiting {list(s.waiting)[:4]}, "
                f"{engine.block_manager.num_free_blocks} of {engine.block_manager.num_blocks} blocks free")
        return step()

    engine.step = bounded_step
    return engine


@pytest.fixture(scope="session")
def new_engine(model):
    """``new_engine(**EngineConfig fields)``: an engine on the shared fp32 model whose step
    loop is bounded (:func:`bound_steps`); usable from fixtures of any scope."""
    from mlsys_labs.serving import EngineConfig, LLMEngine

    def make(**kw):
        return bound_steps(LLMEngine(model, EngineConfig(**kw)))

    return make


@pytest.fixture
def make_engine(new_engine):
    """``make_engine(num_blocks=..., **EngineConfig fields)`` on the shared fp32 model."""
    return new_engine


API_MAX_LEN = 96          # the API server's context: chat's default max_tokens runs to its end quickly
API_MAX_QUEUED = 8        # its waiting-queue bound (503 beyond)
API_MAX_BYTES = 64 << 10  # its request-size limit (413 beyond)


def _wait_until_idle(server, timeout=30.0):
    """Until the engine has no work; then every block must be free with count 0 and no
    request may be left in the engine's or the server's tables."""
    import time

    t0 = time.monotonic()
    settled = 0
    while time.monotonic() - t0 < timeout:
        if server.aengine.idle.is_set() and not server.engine.has_unfinished() and server.aengine.inbox.empty():
            settled += 1
            if settled >= 3:
                server.engine.block_manager.assert_all_free()
                assert not server.engine.seqs_by_request and not server.aengine.streams, "requests left behind"
                return
        else:
            settled = 0
        time.sleep(0.05)
    raise AssertionError(f"engine still busy after {timeout}s: running {server.engine.scheduler.running}, "
                         f"waiting {list(server.engine.scheduler.waiting)}")


def _running_server(engine, warm_up, **server_kw):
    """A real uvicorn server (``ServerThread``) on a free localhost port: started, warmed up by
    ``warm_up(client)`` (lazy imports happen then, not mid-test), yielded, stopped — and nothing
    of it may outlive the fixture: the HTTP thread, the engine thread, the listening socket."""
    import httpx

    from mlsys_labs.serving.plumbing.server import ServerThread, port_is_free

    srv = ServerThread(engine, **server_kw)
    try:
        srv.start()
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            warm_up(c)
        yield srv
    finally:
        srv.stop()
    assert not srv.thread.is_alive() and not srv.aengine.thread.is_alive(), "the server did not stop"
    assert port_is_free(srv.host, srv.port), f"port {srv.port} is still bound after the server stopped"


@pytest.fixture(scope="session")
def running_server():
    """``yield from running_server(engine, warm_up, **ServerThread options)`` in a module fixture."""
    return _running_server


@pytest.fixture(scope="module")
def api_server(model):
    """A real server on a short context, a small waiting queue and a small body limit."""
    from mlsys_labs.serving import EngineConfig, LLMEngine

    engine = LLMEngine(model, EngineConfig(num_blocks=48, block_size=16, max_num_seqs=6,
                                           max_num_batched_tokens=128, max_model_len=API_MAX_LEN),
                       model_name="tiny-llama")
    yield from _running_server(engine, lambda c: c.post("/v1/completions", json={"prompt": "warm up", "max_tokens": 2}),
                               max_num_queued_reqs=API_MAX_QUEUED, max_request_bytes=API_MAX_BYTES)


@pytest.fixture
def wait_until_idle():
    """``wait_until_idle(server, timeout=30)``: until the engine has no work, then no block,
    request or stream may be left."""
    return _wait_until_idle
