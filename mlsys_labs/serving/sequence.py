"""A sequence (one generation stream) and the sampling parameters a request carries."""
from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field

import torch

from .tokenizer import IncrementalDecoder


@dataclass
class SamplingParams:
    """OpenAI-style sampling knobs.  ``temperature == 0`` means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                 # 0: off
    max_tokens: int = 16
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
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
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


_ids = itertools.count()


class Sequence:
    """Token ids (prompt then output), how many of them have K/V in the cache, and the block table."""

    def __init__(self, request_id: str, prompt_ids: list[int], params: SamplingParams, index: int = 0,
                 arrival_time: float | None = None):
        self.seq_id = next(_ids)
        self.request_id = request_id
        self.index = index                      # choice index within the request (n > 1)
        self.token_ids: list[int] = list(prompt_ids)
        self.num_prompt_tokens = len(prompt_ids)
        self.params = params
        self.status = SequenceStatus.WAITING
        self.num_computed_tokens = 0            # tokens whose K/V are in the cache
        self.block_table: list[int] = []        # physical block ids, in order
        self.num_dropped_tokens = 0             # StreamingLLM: tokens evicted from the middle
        self.num_cached_tokens = 0              # prefix-cache hit at the last admission
        self.num_preemptions = 0
        self.finish_reason: str | None = None
        self.arrival_time = arrival_time if arrival_time is not None else time.monotonic()
        self.first_token_time: float | None = None
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed + index)
        self.decoder = IncrementalDecoder()
        self.output_text = ""
        self.pending_fork = params.n > 1 and index == 0   # the parent forks after its prefill

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

    def fork(self, index: int) -> "Sequence":
        """A child sharing this sequence's tokens (the block table is shared by the block manager)."""
        child = Sequence(self.request_id, self.token_ids[: self.num_prompt_tokens], self.params, index,
                         self.arrival_time)
        child.token_ids = list(self.token_ids)
        child.num_computed_tokens = self.num_computed_tokens
        child.num_dropped_tokens = self.num_dropped_tokens
        child.status = self.status
        child.pending_fork = False
        return child
