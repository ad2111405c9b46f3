"""Lab 5 options from the readings, measured: int8 weight-only quantisation's quality change
(KL divergence and greedy agreement against fp32 on random prompts, weight memory) and
speculative decoding's acceptance rate and time against plain greedy decoding, for two drafts
(an early-exit draft — the model's first layer — and an int8 copy of the model)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from mlsys_labs.common.bench import compare, record_figure
from mlsys_labs.serving.model import default_draft_path, default_model_path, load_pretrained
from mlsys_labs.serving.model_runner import ModelRunner
from mlsys_labs.serving.quant import linear_weight_bytes, quantize_model_int8
from mlsys_labs.serving.sequence import SamplingParams, Sequence
from mlsys_labs.serving.speculative import greedy_generate, speculative_generate


def all_logits(model, ids):
    s = Sequence("q", ids, SamplingParams())
    s.block_table = list(range(-(-len(ids) // 16)))
    return ModelRunner(model, len(s.block_table), 16).run_all_logits([s], [len(ids)]).double()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_int8_quality_and_speculative_acceptance(benchmark):
    rng = np.random.default_rng(5)
    model = load_pretrained(default_model_path())
    qmodel = quantize_model_int8(copy.deepcopy(model))
    kls, agree, n = [], 0, 0
    for _ in range(8):
        ids = [256] + rng.integers(0, 256, 120).tolist()
        lp, lq = all_logits(model, ids).log_softmax(-1), all_logits(qmodel, ids).log_softmax(-1)
        kls.append(float((lp.exp() * (lp - lq)).sum(-1).mean()))
        agree += int((lp.argmax(-1) == lq.argmax(-1)).sum())
        n += len(ids)
    bytes_ratio = linear_weight_bytes(qmodel) / linear_weight_bytes(model)
    record_figure(lab=5, name="int8 weight-only: KL(fp32 || int8) per token", value=float(np.mean(kls)),
                  unit="nats", peer="fp32 weights", detail={"per_prompt": kls})
    record_figure(lab=5, name="int8 weight-only: greedy agreement with fp32", value=agree / n, unit="",
                  peer="fp32 weights", detail={"positions": n})
    record_figure(lab=5, name="int8 weight-only: linear weight memory / fp32", value=bytes_ratio, unit="x")

    prompt = [256] + rng.integers(0, 256, 40).tolist()
    drafts = {"early-exit draft": load_pretrained(default_draft_path()), "int8 draft": qmodel}
    ref = greedy_generate(model, prompt, 64)
    for name, draft in drafts.items():
        res = speculative_generate(model, draft, prompt, 64, k=4)
        assert res.token_ids == ref
        cmp = compare(lambda: speculative_generate(model, draft, prompt, 64, k=4),
                      lambda: greedy_generate(model, prompt, 64), repeats=3)
        record_figure(lab=5, name=f"speculative decoding ({name}, k=4): acceptance rate", value=res.acceptance_rate,
                      unit="", detail={"tokens_per_target_pass": 64 / res.target_passes})
        record_figure(lab=5, name=f"speculative decoding ({name}, k=4): time / plain greedy", value=cmp.ratio,
                      unit="x", peer="greedy decoding without a draft", detail=cmp.as_dict())
    benchmark.pedantic(lambda: speculative_generate(model, qmodel, prompt, 64, k=4), rounds=1, iterations=1)
