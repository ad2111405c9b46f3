"""Turning a row of logits into the next token: greedy, temperature, top-k, top-p (nucleus).

Temperature divides the logits (Ackley et al. 1985; the softmax's sharpness); top-k keeps
the k largest (Fan et al. 2018); top-p keeps the smallest set whose probability reaches p
(Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, §3.1).  A request
with a ``seed`` samples from its own ``torch.Generator``, so its output is reproducible
whatever else shares the batch.

Around the lesson (:func:`filter_logits`, :func:`sample_token`), the knobs of OpenAI's API in
vLLM's order (:func:`choose_token`): ``logit_bias`` and the repetition, frequency and presence
penalties change the logits first; ``min_p`` masks after them; log-probabilities are taken
from the logits after penalties and bias, before temperature and the top-k/top-p/min-p
filters (what vLLM V0 returned; V1 calls it ``processed_logprobs``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sequence import SamplingParams, Sequence


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set to −inf every logit outside the top-k and outside the top-p nucleus (1-D row)."""
    # BEGIN SOLUTION [step 5] hint: sort descending; drop ranks >= k; drop tokens whose preceding cumulative probability already reaches p
    logits = logits.clone()
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs          # probability mass ranked above each token
        remove = before >= top_p
        remove[0] = False                                    # always keep the most likely token
        logits[order[remove]] = float("-inf")
    return logits
    # END SOLUTION


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> int:
    """One token from one row of logits."""
    # BEGIN SOLUTION [step 5] hint: greedy is argmax; otherwise divide by temperature, filter, softmax, multinomial with the generator
    if params.temperature == 0:
        return int(torch.argmax(logits))
    filtered = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p)
    probs = torch.softmax(filtered, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
    # END SOLUTION


@dataclass
class TokenLogprobs:
    """The chosen token's log-probability and the ``k`` most likely tokens' (most likely first)."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


def apply_penalties(logits: torch.Tensor, params: SamplingParams, prompt_ids: list[int],
                    output_ids: list[int]) -> torch.Tensor:
    """``logit_bias``, then the repetition penalty (CTRL, Keskar et al. 2019 §4.1: a seen token's
    positive logit is divided by it, a negative one multiplied) over prompt and output, then
    OpenAI's frequency (× count) and presence (once) penalties over the output.  Returns the
    row itself when no knob is set, so greedy decoding is untouched."""
    p = params
    if not p.logit_bias and p.repetition_penalty == 1.0 and p.frequency_penalty == 0 and p.presence_penalty == 0:
        return logits
    # BEGIN SOLUTION [step 6] hint: on a float copy: add logit_bias at its token ids; divide seen tokens' positive logits by the repetition penalty and multiply their negative ones (seen = prompt + output); subtract frequency_penalty × count + presence_penalty × (count > 0) over the output; return the row
    logits = logits.float().clone()
    V = logits.shape[-1]
    if p.logit_bias:
        ids = torch.tensor(list(p.logit_bias), dtype=torch.long, device=logits.device)
        logits[ids] += torch.tensor(list(p.logit_bias.values()), dtype=logits.dtype, device=logits.device)
    if p.repetition_penalty != 1.0:
        seen = torch.zeros(V, dtype=torch.bool, device=logits.device)
        seen[torch.tensor(prompt_ids + output_ids, dtype=torch.long, device=logits.device)] = True
        r = p.repetition_penalty
        logits = torch.where(seen, torch.where(logits > 0, logits / r, logits * r), logits)
    if (p.frequency_penalty != 0 or p.presence_penalty != 0) and output_ids:
        counts = torch.bincount(torch.tensor(output_ids, dtype=torch.long, device=logits.device), minlength=V)[:V]
        logits -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
    return logits
    # END SOLUTION


def apply_min_p(logits: torch.Tensor, min_p: float, temperature: float) -> torch.Tensor:
    """Mask the tokens whose probability after temperature is below ``min_p`` × the top one's:
    p_i / p_max = exp((l_i − l_max) / T) ≥ min_p  ⇔  l_i ≥ l_max + T·ln(min_p)."""
    if min_p <= 0 or temperature == 0:
        return logits
    # BEGIN SOLUTION [step 6] hint: keep l_i >= max(l) + T·ln(min_p) (the docstring's inequality); mask the rest with -inf
    threshold = logits.max() + temperature * math.log(min_p)
    return logits.masked_fill(logits < threshold, float("-inf"))
    # END SOLUTION


def token_logprobs(logits: torch.Tensor, token: int, k: int) -> TokenLogprobs:
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top = torch.topk(logprobs, min(k, logprobs.shape[-1])) if k > 0 else None
    pairs = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else []
    return TokenLogprobs(token, float(logprobs[token]), pairs)


def choose_token(logits: torch.Tensor, seq: Sequence) -> tuple[int, TokenLogprobs | None]:
    """The next token of ``seq`` from its row of logits, with its log-probabilities if asked."""
    p = seq.params
    processed = apply_penalties(logits, p, seq.token_ids[:seq.num_prompt_tokens], seq.output_ids)
    token = sample_token(apply_min_p(processed, p.min_p, p.temperature), p, seq.generator)
    return token, (token_logprobs(processed, token, p.logprobs) if p.logprobs is not None else None)
