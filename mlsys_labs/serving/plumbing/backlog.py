"""The server under a backlog: ``python -m mlsys_labs.serving.plumbing.backlog``.

Three measurements on the default model (figures for lab 5's README, not a test):

1. ``/metrics`` latency while 2,000 non-streaming requests are queued (one slot, the bound raised
   to hold them);
2. a running stream's inter-token latency alone and while 1,000 non-streaming requests wait
   behind it, over the same token positions (with a handler that polled every 0.1 s, the
   stream slowed several-fold);
3. 2,000-request bursts against a queue bound of 256, from a lean raw-socket client: how many get
   503 and how fast (beside a burst of ``GET /health`` for scale), whether every block is free
   afterwards, and the server's resident memory after a full batch and after each burst.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from ...common.cli_args import at_least
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
def serving(max_queued: int, max_num_seqs: int = 16):
    port = free_port()
    cmd = [sys.executable, "-m", "mlsys_labs.cli", "serve", "--port", str(port), "--max-num-seqs", str(max_num_seqs),
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
        with c.stream("POST", "/v1/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    print(time.time(), flush=True)    # wall clock: compared with the flooding process's
"""


async def _probe(url: str, what: str, n: int) -> list[float]:
    """Measured from another process, so the flooding client's event loop cannot delay it."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _PROBE, url, what, str(n),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return [float(x) for x in out.split()]


async def metrics_under_backlog(srv: Server, backlog: int, probes: int = 20) -> dict:
    """On a server with one slot, ``backlog`` requests of 64 tokens wait for minutes: probe meanwhile."""
    limits = httpx.Limits(max_connections=backlog + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        tasks = await _flood(c, backlog, max_tokens=64)
        waiting = await _wait_for_backlog(c, backlog - 32)
        median, worst = await _probe(srv.url, "metrics", probes)
        waiting_after = await _waiting(c)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"waiting_at_first_probe": waiting, "waiting_after_last": waiting_after,
            "metrics_ms_median": median, "metrics_ms_max": worst}


def _mean_gap_ms(stamps: list[float]) -> float | None:
    return 1e3 * (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 10 else None


async def stream_beside_queued(srv: Server, queued: int, tokens: int = 1900) -> dict:
    """On a server with one slot, one long stream runs twice: alone, then with ``queued``
    non-streaming requests arriving after ~2 s and waiting behind it.  The mean inter-token
    latency over the same token positions (those after the queue was full) is compared, since
    attention over a longer context makes later tokens slower anyway.  With a handler that
    polled every 0.1 s, the stream slowed several-fold."""
    alone = await _probe(srv.url, "stream", tokens)
    limits = httpx.Limits(max_connections=queued + 10)
    async with httpx.AsyncClient(base_url=srv.url, timeout=600, limits=limits) as c:
        stream = asyncio.create_task(_probe(srv.url, "stream", tokens))
        await asyncio.sleep(2.0)
        tasks = await _flood(c, queued, max_tokens=4)
        waiting = await _wait_for_backlog(c, queued - 8, timeout=60.0)
        full_at = time.time()
        beside = await stream
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next((i for i, t in enumerate(beside) if t >= full_at), len(beside))
    return {"itl_ms_alone": _mean_gap_ms(alone[first:]), "itl_ms_beside_queued": _mean_gap_ms(beside[first:]),
            "tokens_compared": len(beside) - first, "from_token": first, "waiting_when_full": waiting}


async def _raw_request(port: int, request: bytes, t0: float) -> tuple[int, float, float]:
    """One HTTP/1.1 request on its own connection: (status, when it was sent, seconds to the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = time.perf_counter()
    writer.write(request)
    await writer.drain()
    answer = await reader.read()                  # ``Connection: close``: read to the end
    writer.close()
    return int(answer.split(b" ", 2)[1]), sent - t0, time.perf_counter() - sent


async def raw_burst(port: int, n: int, request: bytes) -> list[tuple[int, float, float]]:
    """``n`` requests at once over raw sockets.  A lean client: httpx's own event loop needs
    several milliseconds a request, so with it a 2,000-request burst measured the client (the
    answers all arrived together ~13 s later); here every request is sent within ~0.05 s."""
    t0 = time.perf_counter()
    return await asyncio.gather(*(_raw_request(port, request, t0) for _ in range(n)))


def _post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


def _seconds(results, code: int) -> dict:
    t = sorted(s for c, _, s in results if c == code)
    return {"median": round(statistics.median(t), 3), "p90": round(t[int(0.9 * (len(t) - 1))], 3),
            "max": round(t[-1], 3)} if t else {}


async def burst(srv: Server, n: int) -> dict:
    """``n`` completions at once against the queue bound, and, for scale, ``n`` ``GET /health``
    at once: the 503s should come back about as fast as the server answers anything."""
    port = int(srv.url.rsplit(":", 1)[1])
    results = await raw_burst(port, n, _post("/v1/completions", {"prompt": "burst", "max_tokens": 8,
                                                                  "ignore_eos": True}))
    health = await raw_burst(port, n, b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    return {"requests": n, "ok": sum(c == 200 for c, _, _ in results), "503": sum(c == 503 for c, _, _ in results),
            "sent_within_s": round(max(s for _, s, _ in results), 3), "503_seconds": _seconds(results, 503),
            "200_seconds": _seconds(results, 200), "health_burst_seconds": _seconds(health, 200)}


def _warm_full_batch(srv: Server, n: int = 64) -> None:
    """Run a full batch once, so the baseline includes what the first full step allocates."""
    async def go():
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as c:
            await asyncio.gather(*(c.post("/v1/completions", json={"prompt": "warm", "max_tokens": 8, "ignore_eos": True})
                                   for _ in range(n)))
    asyncio.run(go())
    srv.settle()
    time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backlog", type=at_least(1), default=2000)
    p.add_argument("--queued", type=at_least(1), default=1000)
    p.add_argument("--bound", type=at_least(1), default=256, help="the queue bound of the burst run")
    p.add_argument("--bursts", type=at_least(1), default=3, help="bursts in a row (memory must not climb)")
    p.add_argument("--only", choices=["metrics", "stream", "burst"], default=None)
    args = p.parse_args(argv)
    raise_open_files_limit(3 * args.backlog)      # the servers started below inherit it
    with serving(args.backlog + 100, max_num_seqs=1) as srv:
        if args.only in (None, "metrics"):
            print("metrics under backlog:", asyncio.run(metrics_under_backlog(srv, args.backlog)), flush=True)
            srv.settle()
        if args.only in (None, "stream"):
            print("stream beside queued:", asyncio.run(stream_beside_queued(srv, args.queued)), flush=True)
    if args.only not in (None, "burst"):
        return 0
    with serving(args.bound) as srv:
        _warm_full_batch(srv)
        baseline = rss_mib(srv.proc.pid)
        after = []
        for i in range(args.bursts):
            print(f"burst {i + 1} against the bound {args.bound}:", asyncio.run(burst(srv, args.backlog)), flush=True)
            srv.settle()
            time.sleep(1.0)
            after.append(f"{rss_mib(srv.proc.pid):.0f}")
        kv = srv.gauge("kv_cache_usage_ratio")
        print(f"server memory: {baseline:.0f} MiB after a full batch, {', '.join(after)} MiB after each burst; "
              f"KV-cache usage after: {kv}")
    return 0


def raise_open_files_limit(wanted: int) -> None:
    """A burst holds one socket per request on each side; the default soft limit is often 1,024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


if __name__ == "__main__":
    raise SystemExit(main())
