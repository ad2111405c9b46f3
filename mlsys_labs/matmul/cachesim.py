"""A cache-miss model that explains the steps: an LRU, set-associative cache simulator fed
with the exact address streams of the i-j-k, i-k-j and blocked loops.

A cache of S = size / (ways * line) sets; byte address x lives in line x // line, which
maps to set (line mod S) and is tagged line // S (CS:APP §6.4.1–6.4.3, "Generic Cache
Memory Organization", "Set Associative Caches").  On a miss the least recently used
line of the set is evicted.  Counting misses for each loop order at small n shows the
argument of CS:APP §6.6.2 (Figure 6.46: ijk misses ~1.25 times per inner iteration,
ikj ~0.5) and of blocking (§6.6.3) without timing noise.

Where ``perf stat`` can read hardware counters (not on the lab's VM: KVM exposes none,
``perf stat -e cache-misses`` reports ``<not supported>``), :func:`perf_counters` puts the
real L1 misses beside the model.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class CacheConfig:
    """size_bytes = sets * ways * line_bytes (all powers of two are typical, not required)."""

    size_bytes: int = 8 * 1024
    ways: int = 4
    line_bytes: int = 64

    @property
    def n_sets(self) -> int:
        sets = self.size_bytes // (self.ways * self.line_bytes)
        if sets < 1 or sets * self.ways * self.line_bytes != self.size_bytes:
            raise ValueError(f"cache of {self.size_bytes} B is not sets x {self.ways} ways x {self.line_bytes} B")
        return sets


@njit(cache=True)
def simulate_lru(addresses, n_sets, ways, line_bytes):
    """Misses of the byte-address stream ``addresses`` in an LRU set-associative cache.

    Address x is in line x // line_bytes, which maps to set (line mod n_sets) — n_sets need
    not be a power of two — with tag line // n_sets.  A hit makes its line the set's most
    recently used; a miss fills an empty way of the set if there is one, else evicts the
    set's least recently used line.  The cache starts empty and is not written back
    (reads and writes count alike).  Returns the number of misses (cold, capacity and
    conflict together).
    """
    # BEGIN SOLUTION [step 8] hint: tags[set, way] (-1 = empty) and last_use[set, way]; a hit refreshes last_use, a miss replaces the way with the oldest last_use
    tags = np.full((n_sets, ways), -1, dtype=np.int64)
    last_use = np.zeros((n_sets, ways), dtype=np.int64)
    misses = 0
    for t in range(addresses.shape[0]):
        line = addresses[t] // line_bytes
        s = line % n_sets
        tag = line // n_sets
        hit = False
        for w in range(ways):
            if tags[s, w] == tag:
                last_use[s, w] = t + 1
                hit = True
                break
        if not hit:
            misses += 1
            victim = 0
            for w in range(1, ways):
                if last_use[s, w] < last_use[s, victim]:
                    victim = w
            tags[s, victim] = tag
            last_use[s, victim] = t + 1
    return misses
    # END SOLUTION


def simulate(addresses: np.ndarray, cache: CacheConfig) -> int:
    """Misses of an address stream in ``cache``."""
    return int(simulate_lru(np.asarray(addresses, dtype=np.int64), cache.n_sets, cache.ways, cache.line_bytes))


# ------------------------------------------------------------------ the loops' address streams
# A, B, C are n x n row-major matrices of `itemsize`-byte elements laid out one after the
# other (A at 0, B at n*n*itemsize, C after B).  Each stream lists the memory accesses the
# kernel of that step makes, in order; scalars kept in registers (the i-j-k sum, the
# hoisted A[i, k]) are not memory accesses.

@njit(cache=True)
def ijk_stream(n, itemsize):
    """naive_kernel: A[i, k], B[k, j] per inner step; C[i, j] stored once per (i, j)."""
    a0, b0, c0 = 0, n * n * itemsize, 2 * n * n * itemsize
    out = np.empty(2 * n * n * n + n * n, dtype=np.int64)
    t = 0
    for i in range(n):
        for j in range(n):
            for k in range(n):
                out[t] = a0 + (i * n + k) * itemsize
                out[t + 1] = b0 + (k * n + j) * itemsize
                t += 2
            out[t] = c0 + (i * n + j) * itemsize
            t += 1
    return out


@njit(cache=True)
def ikj_stream(n, itemsize):
    """ikj_kernel: A[i, k] once per (i, k); then B[k, j] and C[i, j] per inner step
    (B's address first), 2 n^3 + n^2 addresses in all."""
    # BEGIN SOLUTION [step 8] hint: as ijk_stream with the loops i, k, j: A[i, k] before the j loop, then B[k, j] and C[i, j] per step
    a0, b0, c0 = 0, n * n * itemsize, 2 * n * n * itemsize
    out = np.empty(2 * n * n * n + n * n, dtype=np.int64)
    t = 0
    for i in range(n):
        for k in range(n):
            out[t] = a0 + (i * n + k) * itemsize
            t += 1
            for j in range(n):
                out[t] = b0 + (k * n + j) * itemsize
                out[t + 1] = c0 + (i * n + j) * itemsize
                t += 2
    return out
    # END SOLUTION


@njit(cache=True)
def blocked_stream(n, itemsize, tile):
    """blocked_kernel with square tiles: loops j0, k0, i0 over tile origins (edge tiles
    clipped to n), then ii, kk, jj inside: A[i, k] once per (ii, kk), then B[k, j] and
    C[i, j] per jj (B's address first); 2 n^3 + n^2 ceil(n/tile) addresses in all."""
    # BEGIN SOLUTION [step 8] hint: the loops of blocked_kernel with TB_M = TB_K = TB_N = tile; A[i, k] once per (ii, kk), B and C per jj
    a0, b0, c0 = 0, n * n * itemsize, 2 * n * n * itemsize
    n_tiles = (n + tile - 1) // tile
    out = np.empty(2 * n * n * n + n * n * n_tiles, dtype=np.int64)   # A[i, k] once per (i, k, j0)
    t = 0
    for j0 in range(0, n, tile):
        nb = min(tile, n - j0)
        for k0 in range(0, n, tile):
            kb = min(tile, n - k0)
            for i0 in range(0, n, tile):
                mb = min(tile, n - i0)
                for ii in range(mb):
                    for kk in range(kb):
                        out[t] = a0 + ((i0 + ii) * n + k0 + kk) * itemsize
                        t += 1
                        for jj in range(nb):
                            out[t] = b0 + ((k0 + kk) * n + j0 + jj) * itemsize
                            out[t + 1] = c0 + ((i0 + ii) * n + j0 + jj) * itemsize
                            t += 2
    return out
    # END SOLUTION


def miss_table(n: int = 64, itemsize: int = 8, cache: CacheConfig | None = None, tile: int = 16) -> dict:
    """Misses of each loop order at size n: {'ijk': .., 'ikj': .., 'blocked': ..} and per inner step."""
    cache = cache or CacheConfig()
    streams = {"ijk": ijk_stream(n, itemsize), "ikj": ikj_stream(n, itemsize),
               "blocked": blocked_stream(n, itemsize, tile)}
    table = {}
    for name, stream in streams.items():
        misses = simulate(stream, cache)
        table[name] = {"misses": misses, "accesses": int(stream.shape[0]), "misses_per_inner_step": misses / n**3}
    return table


def perf_available() -> bool:
    """True when ``perf stat`` can read a hardware cache counter on this machine."""
    if shutil.which("perf") is None:
        return False
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", "L1-dcache-load-misses", "true"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "not supported" not in r.stderr and "not counted" not in r.stderr


def perf_counters(argv: list[str], events: str = "L1-dcache-load-misses,LLC-load-misses,instructions") -> dict | None:
    """Run ``argv`` under ``perf stat`` and return {event: count}; None where perf cannot count."""
    if not perf_available():
        return None
    r = subprocess.run(["perf", "stat", "-x,", "-e", events, "--", *argv], capture_output=True, text=True)
    counts = {}
    for line in r.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            counts[parts[2]] = int(parts[0])
    return counts
