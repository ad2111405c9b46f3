"""The server under a backlog: ``python -m mlsys_labs.serving.plumbing.backlog``.

Three measurements on the default model (figures for lab 5's README, not a test):

1. ``/metrics`` latency while 2,000 non-streaming requests are queued (the bound raised to hold them);
2. a running stream's inter-token latency alone and beside 1,000 queued non-streaming requests
   (with a handler that polled every 0.1 s, the stream slowed several-fold);
3. a 2,000-request burst against the default queue bound: how many get 503, how fast, and whether
   every block is free and the process's memory back near its baseline afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time

import httpx

from ..config import EngineConfig
from ..engine import LLMEngine
from .server import MAX_NUM_QUEUED_REQS, ServerThread


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _flood(c: httpx.AsyncClient, n: int, max_tokens: int = 4) -> list[asyncio.Task]:
    body = {"prompt": "queued request", "max_tokens": max_tokens, "ignore_eos": True}
    return [asyncio.create_task(c.post("/v1/completions", json=body)) for _ in range(n)]


async def _wait_for_backlog(engine: LLMEngine, n: int, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while len(engine.scheduler.waiting) < n and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.05)


async def metrics_under_backlog(srv: ServerThread, backlog: int, probes: int = 20) -> dict:
    limits = httpx.Limits(max_connections=backlog + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        tasks = await _flood(c, backlog)
        await _wait_for_backlog(srv.engine, backlog - 2 * srv.engine.cfg.max_num_seqs)
        waiting = len(srv.engine.scheduler.waiting)
        times = []
        for _ in range(probes):
            t0 = time.perf_counter()
            r = await c.get("/metrics")
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"waiting_at_probe": waiting, "metrics_ms_median": 1e3 * statistics.median(times),
            "metrics_ms_max": 1e3 * max(times)}


async def _stream_itl(c: httpx.AsyncClient, tokens: int) -> float:
    body = {"prompt": "a stream", "max_tokens": tokens, "ignore_eos": True, "stream": True}
    stamps = []
    async with c.stream("POST", "/v1/completions", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.median(gaps)


async def stream_beside_queued(srv: ServerThread, queued: int, tokens: int = 64) -> dict:
    """ITL of one stream alone, then with ``queued`` requests waiting behind a full batch."""
    limits = httpx.Limits(max_connections=queued + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        alone = await _stream_itl(c, tokens)
        tasks = await _flood(c, queued, max_tokens=2000 // max(1, queued))
        await _wait_for_backlog(srv.engine, queued // 2)
        beside = await _stream_itl(c, tokens)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"itl_ms_alone": 1e3 * alone, "itl_ms_beside_queued": 1e3 * beside, "queued": queued}


async def burst(srv: ServerThread, n: int) -> dict:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        t0 = time.perf_counter()

        async def one():
            r = await c.post("/v1/completions", json={"prompt": "burst", "max_tokens": 8, "ignore_eos": True})
            return r.status_code, time.perf_counter() - t0

        results = await asyncio.gather(*(one() for _ in range(n)))
    busy = [t for code, t in results if code == 503]
    return {"requests": n, "ok": sum(code == 200 for code, _ in results), "503": len(busy),
            "503_seconds_median": statistics.median(busy) if busy else None}


def _settle(srv: ServerThread, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while (srv.engine.has_unfinished() or srv.aengine.streams) and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    srv.engine.block_manager.assert_all_free()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backlog", type=int, default=2000)
    p.add_argument("--queued", type=int, default=1000)
    args = p.parse_args(argv)
    cfg = EngineConfig(num_blocks=1024, max_num_seqs=16)
    engine = LLMEngine.from_pretrained(None, cfg)
    with ServerThread(engine, max_num_queued_reqs=args.backlog + 100) as srv:
        baseline = rss_mib()
        print("metrics under backlog:", asyncio.run(metrics_under_backlog(srv, args.backlog)))
        _settle(srv)
        print("stream beside queued:", asyncio.run(stream_beside_queued(srv, args.queued)))
        _settle(srv)
        srv.aengine.max_num_queued_reqs = MAX_NUM_QUEUED_REQS // 4
        print("burst against the bound", srv.aengine.max_num_queued_reqs, ":", asyncio.run(burst(srv, args.backlog)))
        _settle(srv)
        print(f"memory: {baseline:.0f} MiB before, {rss_mib():.0f} MiB after; every block free")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
