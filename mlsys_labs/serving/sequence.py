"""A sequence (one generation stream) and the sampling parameters a request carries."""
from __future__ import annotations

import enum
import itertools
import math
import time
from dataclasses import InitVar, dataclass, field
from typing import Protocol

import torch

from .tokenizer import IncrementalDecoder


@dataclass
class SamplingParams:
    """OpenAI-style sampling knobs.  ``temperature == 0`` means greedy.

    Penalties and ``logit_bias`` change the logits before anything else (and so greedy
    choices too); ``min_p`` (Nguyen et al. 2024, "min-p sampling") keeps the tokens whose
    probability after temperature is at least ``min_p`` times the most likely one's.
    ``logprobs``: None for none, k ≥ 0 for the chosen token's log-probability and the top k."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                 # 0: off
    min_p: float = 0.0             # 0: off
    max_tokens: int = 16
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    presence_penalty: float = 0.0      # OpenAI: minus this once for every token already in the output
    frequency_penalty: float = 0.0     # OpenAI: minus this times the token's count in the output
    repetition_penalty: float = 1.0    # CTRL (Keskar et al. 2019 §4.1): prompt and output tokens, ÷ or × by it
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: int | None = None
    logits_processor: object = None   # optional f(token_ids, logits) -> logits (vLLM's logits_processors)

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be None or >= 0, got {self.logprobs}")


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class TextDecoder(Protocol):
    """What a tokenizer's ``incremental_decoder()`` returns: text deltas that never split a character."""

    def add(self, token: int) -> str: ...

    def flush(self) -> str: ...


_ids = itertools.count()


@dataclass(eq=False, repr=False, slots=True)
class Sequence:
    """Token ids (prompt then output), how many of them have K/V in the cache, and the block table.

    Every piece of state is a declared field (``slots``: none can be created on the fly);
    equality is identity, as the scheduler's lists need."""

    request_id: str
    prompt_ids: InitVar[list[int]]
    params: SamplingParams
    index: int = 0                          # choice index within the request (n > 1)
    arrival_time: float | None = None       # default: now
    decoder: TextDecoder = field(default_factory=IncrementalDecoder)   # the tokenizer's incremental decoder
    seq_id: int = field(init=False)
    token_ids: list[int] = field(init=False)
    num_prompt_tokens: int = field(init=False)
    status: SequenceStatus = field(init=False, default=SequenceStatus.WAITING)
    num_computed_tokens: int = field(init=False, default=0)       # tokens whose K/V are in the cache
    block_table: list[int] = field(init=False, default_factory=list)   # physical block ids, in order
    num_dropped_tokens: int = field(init=False, default=0)        # StreamingLLM: tokens evicted from the middle
    num_cached_tokens: int = field(init=False, default=0)         # prefix-cache hit at the last admission
    num_preemptions: int = field(init=False, default=0)
    finish_reason: str | None = field(init=False, default=None)
    first_token_time: float | None = field(init=False, default=None)
    generator: torch.Generator | None = field(init=False, default=None)
    output_text: str = field(init=False, default="")
    text_sent: int = field(init=False, default=0)    # characters of output_text already handed out
    pending_fork: bool = field(init=False, default=False)   # the parent forks after its prefill

    def __post_init__(self, prompt_ids: list[int]) -> None:
        self.seq_id = next(_ids)
        self.token_ids = list(prompt_ids)
        self.num_prompt_tokens = len(self.token_ids)
        if self.arrival_time is None:
            self.arrival_time = time.monotonic()
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed + self.index)
        self.pending_fork = self.params.n > 1 and self.index == 0

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return (f"Sequence({self.request_id}#{self.index}, len={len(self)}, computed={self.num_computed_tokens}, "
                f"blocks={self.block_table}, {self.status.value})")

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == SequenceStatus.FINISHED

    @property
    def context_len(self) -> int:
        """Keys this sequence attends to: computed tokens minus those StreamingLLM evicted."""
        return self.num_computed_tokens - self.num_dropped_tokens

    def fork(self, index: int, decoder: TextDecoder | None = None) -> "Sequence":
        """A child sharing this sequence's tokens (the block table is shared by the block manager);
        ``decoder``: a fresh incremental decoder of the engine's tokenizer (default: bytes)."""
        child = Sequence(self.request_id, self.token_ids[: self.num_prompt_tokens], self.params, index,
                         self.arrival_time, decoder or IncrementalDecoder())
        child.token_ids = list(self.token_ids)
        child.num_computed_tokens = self.num_computed_tokens
        child.num_dropped_tokens = self.num_dropped_tokens
        child.status = self.status
        return child
