"""Engine metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Gauges (running, waiting, KV-cache usage, prefix-cache hit rate), counters (tokens,
requests, preemptions) and histograms (time to first token, time per output token) with
cumulative ``_bucket{le=...}``, ``_sum`` and ``_count`` lines, as Prometheus expects.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self):
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, cum = [], 0
        for le, c in zip(list(self.buckets) + ["+Inf"], self.counts):
            cum += c
            out.append(f'{name}_bucket{{le="{le}"}} {cum}')
        return out + [f"{name}_sum {self.total}", f"{name}_count {self.count}"]


@dataclass
class EngineMetrics:
    prompt_tokens: int = 0          # prompt tokens received
    prefill_tokens_computed: int = 0  # prompt (and recomputed) tokens run through the model
    generation_tokens: int = 0
    requests_finished: int = 0
    requests_aborted: int = 0
    requests_failed: int = 0
    steps: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(TPOT_BUCKETS))

    def render(self, *, running: int, waiting: int, kv_usage: float, prefix_hit_rate: float,
               preemptions: int, model: str, spec=None) -> str:
        """``spec``: the engine's ``SpeculativeStats`` (vLLM's ``spec_decode_*`` metrics), if any."""
        p = "mlsys_serving"
        rows = [
            ("gauge", "num_requests_running", "Sequences running on the engine", running),
            ("gauge", "num_requests_waiting", "Sequences waiting to be scheduled", waiting),
            ("gauge", "kv_cache_usage_ratio", "Fraction of KV-cache blocks in use", kv_usage),
            ("gauge", "prefix_cache_hit_rate", "Prefix-cache hits over full prompt blocks looked up", prefix_hit_rate),
            ("counter", "prompt_tokens_total", "Prompt tokens received", self.prompt_tokens),
            ("counter", "prefill_tokens_computed_total", "Prompt tokens run through the model", self.prefill_tokens_computed),
            ("counter", "generation_tokens_total", "Tokens generated", self.generation_tokens),
            ("counter", "request_success_total", "Requests finished", self.requests_finished),
            ("counter", "request_aborted_total", "Requests aborted (client gone)", self.requests_aborted),
            ("counter", "request_failed_total", "Requests failed by an error", self.requests_failed),
            ("counter", "num_preemptions_total", "Sequences preempted (recomputation)", preemptions),
        ]
        if spec is not None:
            rows += [
                ("counter", "spec_decode_num_drafts_total", "Verification passes with a guess", spec.num_drafts),
                ("counter", "spec_decode_num_draft_tokens_total", "Guessed tokens verified", spec.num_draft_tokens),
                ("counter", "spec_decode_num_accepted_tokens_total", "Guessed tokens accepted",
                 spec.num_accepted_tokens),
                ("gauge", "spec_decode_acceptance_rate", "Accepted over verified guesses", spec.acceptance_rate),
                ("gauge", "spec_decode_tokens_per_step", "Tokens per verification pass", spec.tokens_per_step),
            ]
        out = []
        for kind, name, help_, value in rows:
            out += [f"# HELP {p}_{name} {help_}", f"# TYPE {p}_{name} {kind}", f'{p}_{name}{{model="{model}"}} {value}']
        for name, help_, h in [("time_to_first_token_seconds", "Time to first token", self.ttft),
                               ("time_per_output_token_seconds", "Time per output token after the first", self.tpot)]:
            out += [f"# HELP {p}_{name} {help_}", f"# TYPE {p}_{name} histogram"] + h.lines(f"{p}_{name}")
        return "\n".join(out) + "\n"
