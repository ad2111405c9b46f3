"""The engine's step loop (nano-vllm's ``LLMEngine``; vLLM's ``EngineCore``).

``add_request`` validates and queues; each ``step`` asks the scheduler for a batch, runs it
through the model runner, samples a token for every sequence whose new tokens reached its
end, applies the stopping rules and frees finished sequences' blocks.  ``generate`` is the
offline loop over ``step``.  Everything runs on one thread: the HTTP server calls ``step``
from its engine thread and hands ``abort`` in through the same thread.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .block_manager import BlockManager
from .config import EngineConfig
from .metrics import EngineMetrics
from .model import LlamaForCausalLM, default_model_path, load_pretrained
from .model_runner import ModelRunner
from .sampler import TokenLogprobs, choose_token
from .scheduler import RequestRejected, Scheduler
from .sequence import SamplingParams, Sequence, SequenceStatus
from .speculative import SpeculativeStats, can_speculate, ngram_propose
from .tokenizer import ByteTokenizer, load_tokenizer


def log_exception(exc: BaseException) -> None:
    """Print an exception and its frames to stdout (where test logs collect it) without
    Python 3.11's caret anchors: those call ``ast.parse``, which is not thread-safe in 3.11 and
    can crash a pytest process formatting its own failure at the same moment."""
    import sys
    import traceback

    frames = "".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in traceback.extract_tb(exc.__traceback__))
    sys.stdout.write(f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {exc}\n")
    sys.stdout.flush()


@dataclass
class RequestOutput:
    """What one step produced for one sequence (a choice of a request)."""

    request_id: str
    index: int
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: str | None = None
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = 0
    error: str | None = None
    logprobs: TokenLogprobs | None = None    # the new token's, when the request asked for them


@dataclass
class Completion:
    """A finished choice, as ``generate`` returns it."""

    request_id: str
    index: int
    token_ids: list[int]
    text: str
    finish_reason: str
    num_prompt_tokens: int


class LLMEngine:
    def __init__(self, model: LlamaForCausalLM, cfg: EngineConfig | None = None, tokenizer=None,
                 model_name: str = "tiny-llama"):
        self.cfg = cfg or EngineConfig()
        self.model = model
        self.model_name = model_name
        self.tokenizer = tokenizer or ByteTokenizer()
        self.max_model_len = self.cfg.max_model_len or model.config.max_position_embeddings
        self.block_manager = BlockManager(self.cfg.num_blocks, self.cfg.block_size, self.cfg.enable_prefix_caching)
        self.scheduler = Scheduler(self.cfg, self.block_manager, self.max_model_len)
        self.runner = ModelRunner(model, self.cfg.num_blocks, self.cfg.block_size, self.cfg.attention_backend)
        self.metrics = EngineMetrics()
        self.spec_stats = SpeculativeStats()    # speculative decoding's counters (cfg.speculative)
        if self.cfg.speculative is not None and self.cfg.streaming:
            raise ValueError("speculative decoding and StreamingLLM eviction cannot be combined")
        self.eos_token_id = model.config.eos_token_id
        self.stop_token_ids = self.tokenizer.stop_token_ids    # EOS and the checkpoint's other end tokens
        self._ids = itertools.count()
        self.seqs_by_request: dict[str, list[Sequence]] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, cfg: EngineConfig | None = None,
                        **kwargs) -> "LLMEngine":
        cfg = cfg or EngineConfig()
        dtype = getattr(torch, cfg.dtype)
        path = Path(path) if path else default_model_path()
        model = load_pretrained(path, dtype=dtype, device=cfg.device)
        tokenizer = kwargs.pop("tokenizer", None) or load_tokenizer(path)   # tokenizer.json → the checkpoint's own
        return cls(model, cfg, tokenizer, model_name=kwargs.pop("model_name", path.name), **kwargs)

    # ------------------------------------------------------------------ requests
    def add_request(self, prompt: str | list[int], params: SamplingParams | None = None,
                    request_id: str | None = None, arrival_time: float | None = None) -> str:
        """Queue a request; raises :class:`RequestRejected` if it could never be served."""
        params = params or SamplingParams()
        request_id = request_id or f"req-{next(self._ids)}"
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if request_id in self.seqs_by_request:
            raise ValueError(f"duplicate request id {request_id}")
        if any(not 0 <= t < self.model.config.vocab_size for t in ids):
            raise RequestRejected("prompt token id outside the vocabulary")
        seq = Sequence(request_id, ids, params, 0, arrival_time, self.tokenizer.incremental_decoder())
        self.scheduler.add(seq)
        self.seqs_by_request[request_id] = [seq]
        self.metrics.prompt_tokens += len(ids)
        return request_id

    def abort(self, request_id: str) -> bool:
        """Stop a request wherever it is (waiting, running, preempted) and free its blocks."""
        seqs = self.scheduler.abort(request_id)
        for s in seqs:                       # the text so far is complete, held-back tail included
            s.output_text += s.decoder.flush()
        if self.seqs_by_request.pop(request_id, None) is not None:
            self.metrics.requests_aborted += 1
            return True
        return bool(seqs)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work()

    # ------------------------------------------------------------------ one step
    def step(self) -> list[RequestOutput]:
        drafts = self._propose_drafts()                  # speculative decoding: guesses appended
        batch = self.scheduler.schedule()
        drafts = self._keep_scheduled_drafts(batch, drafts)
        if not batch:
            return []
        self.metrics.steps += 1
        need = [i for i, (s, n) in enumerate(zip(batch.seqs, batch.num_new_tokens))
                if s.num_computed_tokens + n == len(s)]
        for s, n in zip(batch.seqs, batch.num_new_tokens):   # every new token but a plain decode is prefill
            decode = s.num_computed_tokens + n == len(s) and len(s) > s.num_prompt_tokens
            self.metrics.prefill_tokens_computed += n - int(decode) - len(drafts.get(s, ()))
        try:
            num_logits = [1 + len(drafts.get(batch.seqs[i], ())) for i in need] if drafts else None
            logits = self.runner.run(batch.seqs, batch.num_new_tokens, batch.copies, need, num_logits)
        except Exception as exc:   # a failed batch: retry each sequence alone, fail only the culprits
            self._verify_drafts(batch, need, None, drafts)
            return self._run_one_by_one(batch, exc)
        logits, accepted = self._verify_drafts(batch, need, logits, drafts)
        return self._emit_accepted(self._postprocess(batch, need, logits), accepted)

    # ------------------------------------------------------------------ speculative decoding
    def _propose_drafts(self) -> dict[Sequence, list[int]]:
        """Append prompt-lookup guesses to every decoding greedy sequence (``cfg.speculative``)."""
        spec = self.cfg.speculative
        if spec is None:
            return {}
        drafts = {}
        for seq in self.scheduler.running:
            if (seq.status != SequenceStatus.RUNNING or seq.num_output_tokens == 0
                    or seq.num_computed_tokens != len(seq) - 1 or not can_speculate(seq.params)):
                continue
            room = min(spec.num_speculative_tokens, seq.params.max_tokens - seq.num_output_tokens - 1,
                       self.max_model_len - len(seq))
            guess = ngram_propose(seq.token_ids, room, spec.prompt_lookup_min, spec.prompt_lookup_max) if room > 0 else []
            if guess:
                seq.token_ids.extend(guess)
                drafts[seq] = guess
        return drafts

    @staticmethod
    def _keep_scheduled_drafts(batch, drafts: dict[Sequence, list[int]]) -> dict[Sequence, list[int]]:
        """Guesses of a sequence left out of the batch (or preempted) are taken back; a sequence
        scheduled for fewer tokens than it holds (the token budget) keeps the guesses that fit."""
        if not drafts:
            return drafts
        scheduled = {id(s): n for s, n in zip(batch.seqs, batch.num_new_tokens)}
        kept = {}
        for seq, guess in drafts.items():
            fit = scheduled.get(id(seq), 1) - 1 if seq.status == SequenceStatus.RUNNING else 0
            if fit < len(guess):
                del seq.token_ids[len(seq) - len(guess) + fit:]
            if fit > 0:
                kept[seq] = guess[:fit]
        return kept

    def _verify_drafts(self, batch, need: list[int], logits: torch.Tensor | None, drafts):
        """Take the guesses back out of the sequences (so the step commits and samples as a plain
        decode) and count the agreeing prefix of each against the target's greedy choices.
        Returns one logits row per ``need`` entry and, per sequence, the tokens accepted beyond
        the first: the agreeing guesses' successors (the correction or the bonus token last)."""
        if not drafts:
            return logits, {}
        rows, accepted, at = [], {}, 0
        for i in need:
            seq = batch.seqs[i]
            guess = drafts.get(seq, [])
            if guess:
                del seq.token_ids[len(seq) - len(guess):]
                batch.num_new_tokens[i] -= len(guess)
            if logits is None:
                continue
            choice = logits[at:at + 1 + len(guess)].argmax(-1).tolist()
            rows.append(at)
            at += 1 + len(guess)
            if guess:
                n_ok = next((j for j, g in enumerate(guess) if g != choice[j]), len(guess))
                accepted[seq] = choice[1:n_ok + 1]
                st = self.spec_stats
                st.num_drafts += 1
                st.num_draft_tokens += len(guess)
                st.num_accepted_tokens += n_ok
                st.num_emitted_tokens += n_ok + 1
        return (logits[rows] if logits is not None else None), accepted

    def _emit_accepted(self, outputs: list[RequestOutput], accepted: dict[Sequence, list[int]]) -> list[RequestOutput]:
        """Append each sequence's accepted tokens after the one the step sampled: their keys and
        values are already in the cache, so each one only moves ``num_computed_tokens`` on."""
        if not accepted:
            return outputs
        by_seq = {(o.request_id, o.index): o for o in outputs}
        now = time.monotonic()
        for seq, tokens in accepted.items():
            out = by_seq.get((seq.request_id, seq.index))
            for token in tokens:
                if seq.status != SequenceStatus.RUNNING or out is None:
                    break
                seq.num_computed_tokens += 1
                self.block_manager.commit(seq)
                more = self._append_token(seq, token, now)
                out.new_token_ids += more.new_token_ids
                out.new_text += more.new_text
                out.finished, out.finish_reason = more.finished, more.finish_reason
                out.num_output_tokens = more.num_output_tokens
            if seq.status == SequenceStatus.RUNNING:
                self.block_manager.free_tail(seq)
        return outputs

    def _run_one_by_one(self, batch, exc) -> list[RequestOutput]:
        outputs = []
        self.runner.copy_blocks(batch.copies)
        for s, n in zip(batch.seqs, batch.num_new_tokens):
            one = type(batch)(seqs=[s], num_new_tokens=[n])
            need = [0] if s.num_computed_tokens + n == len(s) else []
            try:
                logits = self.runner.run([s], [n], (), need)
            except Exception as e:  # noqa: BLE001 - the request fails, the engine goes on
                outputs += self._fail(s, e)
                continue
            outputs += self._postprocess(one, need, logits)
        return outputs

    def _fail(self, seq: Sequence, exc: Exception) -> list[RequestOutput]:
        log_exception(exc)                                  # the request fails; its cause goes to the log
        self.metrics.requests_failed += 1
        outs = []
        for s in self.seqs_by_request.pop(seq.request_id, [seq]):
            self.scheduler.finish(s, "error")
            outs.append(RequestOutput(s.request_id, s.index, [], "", True, "error", s.num_prompt_tokens,
                                      s.num_output_tokens, error=f"{type(exc).__name__}: {exc}"))
        return outs

    def _postprocess(self, batch, need: list[int], logits: torch.Tensor) -> list[RequestOutput]:
        outputs: list[RequestOutput] = []
        for seq, n in zip(batch.seqs, batch.num_new_tokens):
            seq.num_computed_tokens += n
            self.block_manager.commit(seq)
        now = time.monotonic()
        for row, i in enumerate(need):
            seq = batch.seqs[i]
            if seq.status != SequenceStatus.RUNNING:
                continue
            try:
                family = [seq]
                if seq.pending_fork:
                    family += self._fork(seq)
                for s in family:
                    lg = logits[row]
                    if s.params.logits_processor is not None:
                        lg = s.params.logits_processor(s.token_ids, lg)
                    token, logprobs = choose_token(lg, s)
                    out = self._append_token(s, token, now)
                    out.logprobs = logprobs
                    outputs.append(out)
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                outputs += self._fail(seq, exc)
        return outputs

    def _fork(self, parent: Sequence) -> list[Sequence]:
        """n > 1: the prompt was prefilled once; n − 1 children share its blocks (copy-on-write)."""
        parent.pending_fork = False
        children = []
        at = self.scheduler.running.index(parent) + 1
        for idx in range(1, parent.params.n):
            child = parent.fork(idx, self.tokenizer.incremental_decoder())
            self.block_manager.fork(parent, child)
            self.scheduler.running.insert(at, child)
            at += 1
            children.append(child)
        self.seqs_by_request[parent.request_id] += children
        return children

    def _append_token(self, seq: Sequence, token: int, now: float) -> RequestOutput:
        """Append a sampled token, apply the stop rules, emit the new text (holding back a
        possible stop-string prefix), and free the sequence if it finished."""
        # BEGIN SOLUTION [step 6] hint: EOS / stop tokens → 'stop'; a stop string in the text → cut the text there, 'stop'; max_tokens or the context end → 'length'; flush the decoder on every ending
        p = seq.params
        seq.token_ids.append(token)
        self.metrics.generation_tokens += 1
        if seq.first_token_time is None:
            seq.first_token_time = now
            self.metrics.ttft.observe(now - seq.arrival_time)
        reason = None
        if (token in self.stop_token_ids and not p.ignore_eos) or token in p.stop_token_ids:
            reason = "stop"
            piece = ""                # a stop token's own text is not part of the output
        else:
            piece = seq.decoder.add(token)
        if reason is None and (seq.num_output_tokens >= p.max_tokens
                               or (not self.cfg.streaming and len(seq) >= self.max_model_len)):
            reason = "length"
        if reason:
            piece += seq.decoder.flush()     # the held-back tail: nothing may stay in the decoder
        seq.output_text += piece
        for stop in p.stop:       # only a match overlapping the new piece can be new
            cut = seq.output_text.find(stop, max(0, len(seq.output_text) - len(piece) - len(stop) + 1))
            if cut >= 0:
                seq.output_text = seq.output_text[:cut]
                reason = "stop"
                break
        hold = 0 if reason else max((len(s) - 1 for s in p.stop), default=0)
        upto = max(seq.text_sent, len(seq.output_text) - hold)
        delta = seq.output_text[seq.text_sent:upto]
        seq.text_sent = upto
        if reason:
            self._finish(seq, reason, now)
        return RequestOutput(seq.request_id, seq.index, [token], delta, reason is not None, reason,
                             seq.num_prompt_tokens, seq.num_output_tokens, seq.num_cached_tokens)
        # END SOLUTION

    def _finish(self, seq: Sequence, reason: str, now: float) -> None:
        self.scheduler.finish(seq, reason)
        if seq.num_output_tokens > 1 and seq.first_token_time is not None:
            self.metrics.tpot.observe((now - seq.first_token_time) / (seq.num_output_tokens - 1))
        family = self.seqs_by_request.get(seq.request_id, [])
        if all(s.is_finished for s in family):
            self.seqs_by_request.pop(seq.request_id, None)
            self.metrics.requests_finished += 1

    # ------------------------------------------------------------------ offline
    def generate(self, prompts: list, params: SamplingParams | list[SamplingParams] | None = None,
                 progress: bool = False) -> list[list[Completion]]:
        """Run prompts to completion; returns, per prompt, its ``n`` choices."""
        params_list = params if isinstance(params, list) else [params or SamplingParams()] * len(prompts)
        rids = [self.add_request(p, sp) for p, sp in zip(prompts, params_list)]
        tokens: dict[tuple[str, int], list[int]] = {}
        texts: dict[tuple[str, int], str] = {}
        reasons: dict[tuple[str, int], str] = {}
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(prompts), desc="generate", leave=False)
        while self.has_unfinished():
            for out in self.step():
                key = (out.request_id, out.index)
                tokens.setdefault(key, []).extend(out.new_token_ids)
                texts[key] = texts.get(key, "") + out.new_text
                if out.finished:
                    reasons[key] = out.finish_reason
                    if bar is not None and out.index == 0:
                        bar.update(1)
        if bar is not None:
            bar.close()
        result = []
        for rid, p, sp in zip(rids, prompts, params_list):
            n = sp.n if sp else 1
            plen = len(self.tokenizer.encode(p)) if isinstance(p, str) else len(p)
            result.append([Completion(rid, i, tokens.get((rid, i), []), texts.get((rid, i), ""),
                                      reasons.get((rid, i), "error"), plen) for i in range(n)])
        return result
