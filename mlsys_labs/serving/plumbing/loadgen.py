"""``mlsys-labs bench-serve``: an online load generator for the HTTP server, after the
methodology of vLLM's ``benchmarks/benchmark_serving.py`` (Poisson arrivals; TTFT, TPOT, ITL, E2E).

Requests with seeded random prompts arrive as a Poisson process at each rate (exponential
gaps, mean 1/rate; ``inf`` sends them all at once); every request streams, and per request
we record

    TTFT  time to the first streamed token,
    ITL   the gaps between successive streamed tokens,
    TPOT  (latency − TTFT) / (output tokens − 1),
    E2E   the whole request's latency,

then report mean, median and p99 of each, request and output-token throughput.  Without
``--url`` it starts the server itself (in this process, on a free port) on the default model.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ...common.cli_args import at_least


@dataclass
class RequestResult:
    ok: bool
    ttft: float = math.nan
    e2e: float = math.nan
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str = ""

    @property
    def tpot(self) -> float:
        return (self.e2e - self.ttft) / (self.output_tokens - 1) if self.output_tokens > 1 else math.nan


def make_workload(n: int, seed: int, input_len=(16, 128), output_len=(16, 64)) -> list[tuple[str, int]]:
    """Seeded random prompts (printable ASCII) and output lengths, both uniform in the ranges."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(input_len[0], input_len[1] + 1))
        text = "".join(chr(c) for c in rng.integers(32, 127, k))
        out.append((text, int(rng.integers(output_len[0], output_len[1] + 1))))
    return out


async def _one(client, url: str, model: str | None, prompt: str, max_tokens: int,
               ignore_eos: bool = True) -> RequestResult:
    body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 0,
            "stream_options": {"include_usage": True}}
    if ignore_eos:               # vLLM's extension; servers that refuse unknown fields get none
        body["ignore_eos"] = True
    if model:
        body["model"] = model
    t0 = time.perf_counter()
    last = None
    res = RequestResult(ok=False)
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    res.error = chunk["error"].get("message", "error")
                    return res
                now = time.perf_counter()
                if chunk.get("choices"):
                    if last is None:
                        res.ttft = now - t0
                    else:
                        res.itl.append(now - last)
                    last = now
                if chunk.get("usage"):
                    res.output_tokens = chunk["usage"]["completion_tokens"]
                    res.prompt_tokens = chunk["usage"]["prompt_tokens"]
        res.e2e = time.perf_counter() - t0
        res.ok = res.output_tokens > 0
    except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
        res.error = f"{type(exc).__name__}: {exc}"
    return res


async def run_rate(url: str, workload, rate: float, seed: int, model: str | None = None,
                   ignore_eos: bool = True) -> dict:
    """Send the workload at ``rate`` requests/s (Poisson; ``inf``: all at once); summarise."""
    import httpx

    rng = np.random.default_rng(seed)
    gaps = np.zeros(len(workload)) if math.isinf(rate) else rng.exponential(1.0 / rate, len(workload))
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=1000)) as client:
        tasks = []
        t0 = time.perf_counter()
        for (prompt, max_tokens), gap in zip(workload, gaps):
            if gap > 0:
                await asyncio.sleep(gap)
            tasks.append(asyncio.create_task(_one(client, url, model, prompt, max_tokens, ignore_eos)))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
    return summarise(results, duration, rate)


def _stats(values) -> dict:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"mean": math.nan, "median": math.nan, "p99": math.nan}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p99": float(np.percentile(v, 99))}


def summarise(results: list[RequestResult], duration: float, rate: float) -> dict:
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    return {
        "rate": rate, "requests": len(results), "completed": len(ok), "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if not r.ok})[:3],
        "duration_s": duration, "request_throughput": len(ok) / duration,
        "output_throughput": out_tokens / duration, "output_tokens": out_tokens,
        "ttft_s": _stats(r.ttft for r in ok), "tpot_s": _stats(r.tpot for r in ok),
        "itl_s": _stats(x for r in ok for x in r.itl), "e2e_s": _stats(r.e2e for r in ok),
    }


def format_summary(s: dict) -> str:
    rate = "all at once" if math.isinf(s["rate"]) else f"{s['rate']:g} req/s (Poisson)"
    lines = [f"rate {rate}: {s['completed']}/{s['requests']} ok in {s['duration_s']:.2f} s; "
             f"{s['request_throughput']:.2f} req/s, {s['output_throughput']:.1f} output tok/s"]
    for key, name in [("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL"), ("e2e_s", "E2E")]:
        st = s[key]
        lines.append(f"  {name:5s} ms  mean {st['mean'] * 1e3:8.1f}   median {st['median'] * 1e3:8.1f}   p99 {st['p99'] * 1e3:8.1f}")
    if s["errors"]:
        lines.append(f"  errors: {s['errors']}")
    return "\n".join(lines)


def run_bench(url: str, rates: list[float], num_prompts: int, seed: int, input_len, output_len,
              model: str | None = None) -> list[dict]:
    workload = make_workload(num_prompts, seed, input_len, output_len)
    return [asyncio.run(run_rate(url, workload, rate, seed + i, model)) for i, rate in enumerate(rates)]


def _range(text: str) -> tuple[int, int]:
    """``lo:hi`` with 1 <= lo <= hi."""
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected lo:hi (two integers), got {text!r}") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 1 <= lo <= hi, got {text!r}")
    return lo, hi


def _rates(text: str) -> list[float]:
    """Comma-separated requests/s, each positive; ``inf`` (or ``all``) sends every request at once."""
    rates = []
    for r in text.split(","):
        r = r.strip()
        if r in ("inf", "all"):
            rates.append(math.inf)
            continue
        try:
            rates.append(float(r))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{r!r} is not a rate (a number of requests/s, or inf)") from None
        if not rates[-1] > 0:
            raise argparse.ArgumentTypeError(f"a rate must be positive, got {r}")
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlsys-labs bench-serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="a running server (default: start one here on the default model)")
    p.add_argument("--model", default=None, help="model name to send (default: the server's)")
    p.add_argument("--rates", type=_rates, default=[2.0, 8.0, math.inf],
                   help="comma-separated requests/s; inf = all at once (default 2,8,inf)")
    p.add_argument("--num-prompts", type=at_least(1), default=32)
    p.add_argument("--input-len", type=_range, default=(16, 128), help="lo:hi prompt characters")
    p.add_argument("--output-len", type=_range, default=(16, 64), help="lo:hi output tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true", help="do not write the figures to benchmarks/results")
    return p


def bench_serve_main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rates = args.rates
    server = None
    url = args.url
    if url is not None:
        import httpx

        try:
            httpx.get(url.rstrip("/") + "/v1/models", timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            parser.error(f"--url {url}: no OpenAI-compatible server answers there ({type(exc).__name__}: {exc})")
    if url is None:
        import torch

        from ..config import EngineConfig
        from ..engine import LLMEngine
        from .server import ServerThread

        torch.set_num_threads(1)          # the client and the server share 2 cores here
        engine = LLMEngine.from_pretrained(cfg=EngineConfig(num_blocks=1024, max_num_seqs=64))
        server = ServerThread(engine).start()
        url = server.url
        print(f"started a server on {url} ({engine.model_name})")
    try:
        summaries = run_bench(url.rstrip("/"), rates, args.num_prompts, args.seed, args.input_len,
                              args.output_len, args.model)
    finally:
        if server is not None:
            server.stop()
    from ...common.bench import machine_name, record_figure

    print(f"bench-serve: {args.num_prompts} prompts, input {args.input_len}, output {args.output_len} tokens; "
          f"machine: {machine_name()}")
    for s in summaries:
        print(format_summary(s))
        if not args.no_record:
            tag = "all at once" if math.isinf(s["rate"]) else f"{s['rate']:g} req/s"
            record_figure(5, f"bench-serve output throughput ({tag})", s["output_throughput"], unit="tok/s",
                          detail=s)
            record_figure(5, f"bench-serve median TTFT ({tag})", s["ttft_s"]["median"] * 1e3, unit="ms", detail=s)
            record_figure(5, f"bench-serve median TPOT ({tag})", s["tpot_s"]["median"] * 1e3, unit="ms", detail=s)
    return 0 if all(s["failed"] == 0 for s in summaries) else 1
