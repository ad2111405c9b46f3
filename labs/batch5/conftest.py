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


@pytest.fixture
def make_engine(model):
    """``make_engine(num_blocks=..., **EngineConfig fields)`` on the shared fp32 model."""
    from mlsys_labs.serving.config import EngineConfig
    from mlsys_labs.serving.engine import LLMEngine

    def make(**kw):
        return LLMEngine(model, EngineConfig(**kw))

    return make
