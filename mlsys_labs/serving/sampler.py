"""Turning a row of logits into the next token: greedy, temperature, top-k, top-p (nucleus).

Temperature divides the logits (Ackley et al. 1985; the softmax's sharpness); top-k keeps
the k largest (Fan et al. 2018); top-p keeps the smallest set whose probability reaches p
(Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, §3.1).  A request
with a ``seed`` samples from its own ``torch.Generator``, so its output is reproducible
whatever else shares the batch.
"""
from __future__ import annotations

import torch

from .sequence import SamplingParams


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


def sample(logits: torch.Tensor, params: list[SamplingParams], generators: list) -> list[int]:
    """A batch of rows: greedy rows in one argmax, the others one by one."""
    greedy = torch.argmax(logits, dim=-1).tolist()
    return [greedy[i] if p.temperature == 0 else sample_token(logits[i], p, g)
            for i, (p, g) in enumerate(zip(params, generators))]
