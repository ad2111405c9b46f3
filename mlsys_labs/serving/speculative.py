"""Speculative decoding with a small draft model (Leviathan et al. 2023; Chen et al. 2023;
SpecInfer, Miao et al. 2024, verifies a token *tree* — here the tree is one chain).

Greedy form: the draft proposes ``k`` tokens one at a time; the target scores all of them
in **one** forward pass (``k + 1`` query tokens over its paged cache) and keeps the longest
prefix where the draft agreed with the target's own argmax, plus the target's token at the
first disagreement (or a bonus token when all ``k`` agree).  Every emitted token is the
target's greedy choice, so the output is identical to decoding without a draft; the speed-up
comes from emitting ``accepted + 1`` tokens per target pass.  Rejected positions need no
undo in a paged cache: ``num_computed_tokens`` moves back and the slots are overwritten.

In the engine (``EngineConfig.speculative``), the draft is the sequence itself: prompt-lookup
decoding (Saxena 2023; vLLM's n-gram proposer) finds the last few tokens earlier in the
sequence and guesses that what followed them then follows them now (:func:`ngram_propose`).
The guesses ride in the continuous batch as a short "prompt chunk" of the sequence, over
the same paged cache and prefix cache; :class:`SpeculativeStats` counts what was accepted.
"""
from __future__ import annotations

from dataclasses import dataclass

from .block_manager import BlockManager
from .model import LlamaForCausalLM
from .model_runner import ModelRunner
from .sequence import SamplingParams, Sequence


@dataclass
class SpeculativeStats:
    """The engine's speculative-decoding counters (vLLM's ``spec_decode_num_*`` metrics)."""

    num_drafts: int = 0              # verification passes of one sequence with at least one guess
    num_draft_tokens: int = 0        # guesses verified
    num_accepted_tokens: int = 0     # of which the target agreed with
    num_emitted_tokens: int = 0      # tokens those passes produced (accepted + one each)

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0

    @property
    def tokens_per_step(self) -> float:
        """Mean tokens a sequence gains per verification pass (1 without speculation)."""
        return self.num_emitted_tokens / self.num_drafts if self.num_drafts else 0.0


def can_speculate(params: SamplingParams) -> bool:
    """Greedy requests whose next token is the raw logits' argmax (no penalty, bias, processor,
    log-probabilities or n > 1): there, accepting a guess equal to the argmax changes nothing."""
    p = params
    return (p.temperature == 0 and p.n == 1 and p.logits_processor is None and p.logprobs is None
            and not p.logit_bias and p.repetition_penalty == 1.0 and p.frequency_penalty == 0
            and p.presence_penalty == 0)


def ngram_propose(token_ids: list[int], k: int, n_min: int, n_max: int) -> list[int]:
    """Prompt lookup: for n from ``n_max`` down to ``n_min``, find the most recent earlier
    occurrence of the last n tokens and return up to ``k`` tokens that followed it ([] if none)."""
    # BEGIN SOLUTION [step 9] hint: pattern = the last n tokens; scan start positions backwards from len-n-1; on a match return token_ids[start+n : start+n+k]
    L = len(token_ids)
    for n in range(min(n_max, L - 1), n_min - 1, -1):
        pattern = token_ids[L - n:]
        for start in range(L - n - 1, -1, -1):
            if token_ids[start:start + n] == pattern:
                return token_ids[start + n:start + n + k]
    return []
    # END SOLUTION


@dataclass
class SpeculativeResult:
    token_ids: list[int]
    proposed: int          # draft tokens proposed
    accepted: int          # of which the target accepted
    target_passes: int     # target forward passes

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


class _Stream:
    """One sequence on one model, with its own small paged cache."""

    def __init__(self, model: LlamaForCausalLM, prompt: list[int], max_len: int, block_size: int = 16):
        nb = -(-max_len // block_size) + 1
        self.runner = ModelRunner(model, nb, block_size)
        self.bm = BlockManager(nb, block_size, enable_prefix_caching=False)
        self.seq = Sequence("spec", prompt, SamplingParams(temperature=0, max_tokens=max_len))

    def forward_new(self, all_logits: bool = False):
        """Run every token not yet in the cache; logits at the last one (or at all of them)."""
        n = len(self.seq) - self.seq.num_computed_tokens
        self.bm.allocate_slots(self.seq, n)
        if all_logits:
            logits = self.runner.run_all_logits([self.seq], [n])
        else:
            logits = self.runner.run([self.seq], [n])
        self.seq.num_computed_tokens += n
        return logits

    def truncate(self, length: int) -> None:
        """Forget tokens from ``length`` on (their slots will simply be overwritten)."""
        del self.seq.token_ids[length:]
        self.seq.num_computed_tokens = min(self.seq.num_computed_tokens, length)


def speculative_generate(target: LlamaForCausalLM, draft: LlamaForCausalLM, prompt: list[int],
                         max_tokens: int, k: int = 4) -> SpeculativeResult:
    """Greedy speculative decoding of ``max_tokens`` tokens (no EOS stop: fixed length)."""
    max_len = len(prompt) + max_tokens + k + 1
    tgt, drf = _Stream(target, prompt, max_len), _Stream(draft, prompt, max_len)
    # BEGIN SOLUTION [step 9] hint: prefill both; loop: draft k greedy tokens; target scores them in one pass; accept the agreeing prefix + one target token; truncate both streams
    out: list[int] = []
    proposed = accepted = passes = 0
    next_token = int(tgt.forward_new()[0].argmax())           # the target's first token
    passes += 1
    drf.forward_new()
    out.append(next_token)
    while len(out) < max_tokens:
        base = len(prompt) + len(out)                          # tokens so far, next_token included
        tgt.seq.token_ids.append(next_token)
        drf.seq.token_ids.append(next_token)
        guesses = []
        for _ in range(min(k, max_tokens - len(out))):
            g = int(drf.forward_new()[0].argmax())
            guesses.append(g)
            drf.seq.token_ids.append(g)
        tgt.seq.token_ids.extend(guesses)
        logits = tgt.forward_new(all_logits=True)              # rows: next_token, guesses...
        passes += 1
        choice = logits.argmax(-1).tolist()
        n_ok = 0
        while n_ok < len(guesses) and guesses[n_ok] == choice[n_ok]:
            n_ok += 1
        proposed += len(guesses)
        accepted += n_ok
        out.extend(guesses[:n_ok])
        next_token = choice[n_ok]                              # correction, or the bonus token
        keep = base + n_ok
        tgt.truncate(keep)
        drf.truncate(keep)
        if len(out) < max_tokens:
            out.append(next_token)
    return SpeculativeResult(out[:max_tokens], proposed, accepted, passes)
    # END SOLUTION


def greedy_generate(model: LlamaForCausalLM, prompt: list[int], max_tokens: int) -> list[int]:
    """Plain greedy decoding, one token per pass (the reference speculative decoding must equal)."""
    s = _Stream(model, prompt, len(prompt) + max_tokens + 1)
    out = []
    for _ in range(max_tokens):
        tok = int(s.forward_new()[0].argmax())
        out.append(tok)
        s.seq.token_ids.append(tok)
    return out
