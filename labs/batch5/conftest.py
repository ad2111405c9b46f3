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


@pytest.fixture(scope="session")
def model_path():
    from mlsys_labs.serving.model import default_model_path

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
    from mlsys_labs.serving.model import load_pretrained

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
    from mlsys_labs.serving.config import EngineConfig
    from mlsys_labs.serving.engine import LLMEngine

    def make(**kw):
        return bound_steps(LLMEngine(model, EngineConfig(**kw)))

    return make


@pytest.fixture
def make_engine(new_engine):
    """``make_engine(num_blocks=..., **EngineConfig fields)`` on the shared fp32 model."""
    return new_engine
