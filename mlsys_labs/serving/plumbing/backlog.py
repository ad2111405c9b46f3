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
import contextlib
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from ...common.procs import free_port, kill_group


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Server:
    """``mlsys-labs serve`` in its own process (the client's event loop must not share its GIL)."""

    proc: subprocess.Popen
    url: str

    def gauge(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=60).text
        return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(f"mlsys_serving_{name}{{")))

    def settle(self, timeout: float = 300.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.gauge("num_requests_running") == 0 and self.gauge("num_requests_waiting") == 0:
                return
            time.sleep(0.2)


@contextlib.contextmanager
def serving(max_queued: int):
    port = free_port()
    cmd = [sys.executable, "-m", "mlsys_labs.cli", "serve", "--port", str(port), "--max-num-seqs", "16",
           "--max-num-queued-reqs", str(max_queued)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    srv = Server(proc, f"http://127.0.0.1:{port}")
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            try:
                if httpx.get(srv.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        httpx.post(srv.url + "/v1/completions", json={"prompt": "warm up", "max_tokens": 2}, timeout=60)
        yield srv
    finally:
        kill_group(proc)


async def _flood(c: httpx.AsyncClient, n: int, max_tokens: int = 4) -> list[asyncio.Task]:
    body = {"prompt": "queued request", "max_tokens": max_tokens, "ignore_eos": True}
    return [asyncio.create_task(c.post("/v1/completions", json=body)) for _ in range(n)]


async def _waiting(c: httpx.AsyncClient) -> float:
    text = (await c.get("/metrics")).text
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines()
                      if line.startswith("mlsys_serving_num_requests_waiting{")))


async def _wait_for_backlog(c: httpx.AsyncClient, n: int, timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while (waiting := await _waiting(c)) < n and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.2)
    return waiting


_PROBE = """
import statistics, sys, time, httpx
url, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with httpx.Client(base_url=url, timeout=600) as c:
    if what == "metrics":
        times = []
        for _ in range(n):
            t0 = time.perf_counter(); c.get("/metrics"); times.append(time.perf_counter() - t0); time.sleep(0.05)
        print(1e3 * statistics.median(times), 1e3 * max(times))
    else:
        body = {"prompt": "a stream", "max_tokens": n, "ignore_eos": True, "stream": True}
        stamps = []
        with c.stream("POST", "/v1/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    stamps.append(time.perf_counter())
        print(1e3 * (stamps[-1] - stamps[1]) / (len(stamps) - 2))   # mean ITL: robust to chunks read in bursts
"""


async def _probe(url: str, what: str, n: int) -> list[float]:
    """Measured from another process, so the flooding client's event loop cannot delay it."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _PROBE, url, what, str(n),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return [float(x) for x in out.split()]


async def metrics_under_backlog(srv: Server, backlog: int, probes: int = 20) -> dict:
    limits = httpx.Limits(max_connections=backlog + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        tasks = await _flood(c, backlog)
        waiting = await _wait_for_backlog(c, backlog - 32)
        median, worst = await _probe(srv.url, "metrics", probes)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"waiting_at_probe": waiting, "metrics_ms_median": median, "metrics_ms_max": worst}


async def stream_beside_queued(srv: Server, queued: int, tokens: int = 64) -> dict:
    """Mean ITL of one stream alone, then of one running while ``queued`` requests wait."""
    alone, = await _probe(srv.url, "stream", tokens)
    limits = httpx.Limits(max_connections=queued + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        stream = asyncio.create_task(_probe(srv.url, "stream", 4 * tokens))
        await asyncio.sleep(1.0)                    # the stream runs first; the queue fills behind it
        tasks = await _flood(c, queued, max_tokens=4)
        beside, = await stream
        waiting = await _waiting(c)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"itl_ms_alone": alone, "itl_ms_beside_queued": beside, "queued": queued, "waiting_at_end": waiting}


async def burst(srv: Server, n: int) -> dict:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        t0 = time.perf_counter()

        async def one():
            sent = time.perf_counter()
            r = await c.post("/v1/completions", json={"prompt": "burst", "max_tokens": 8, "ignore_eos": True})
            return r.status_code, time.perf_counter() - sent

        results = await asyncio.gather(*(one() for _ in range(n)))
    busy = [t for code, t in results if code == 503]
    return {"requests": n, "ok": sum(code == 200 for code, _ in results), "503": len(busy),
            "503_seconds_median": statistics.median(busy) if busy else None,
            "all_answered_after_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backlog", type=int, default=2000)
    p.add_argument("--queued", type=int, default=1000)
    p.add_argument("--bound", type=int, default=256, help="the queue bound of the burst run")
    p.add_argument("--only", choices=["metrics", "stream", "burst"], default=None)
    args = p.parse_args(argv)
    with serving(args.backlog + 100) as srv:
        if args.only in (None, "metrics"):
            print("metrics under backlog:", asyncio.run(metrics_under_backlog(srv, args.backlog)), flush=True)
            srv.settle()
        if args.only in (None, "stream"):
            print("stream beside queued:", asyncio.run(stream_beside_queued(srv, args.queued)), flush=True)
    if args.only not in (None, "burst"):
        return 0
    with serving(args.bound) as srv:
        baseline = rss_mib(srv.proc.pid)
        print(f"burst against the bound {args.bound}:", asyncio.run(burst(srv, args.backlog)), flush=True)
        srv.settle()
        kv = srv.gauge("kv_cache_usage_ratio")
        print(f"server memory: {baseline:.0f} MiB before the burst, {rss_mib(srv.proc.pid):.0f} MiB after; "
              f"KV-cache usage after: {kv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
