"""The LRU set-associative cache simulator (README step 8), and what it says about the loop
orders: against an independent pure-Python LRU on random and planted streams, and the
address streams against the loops written again here."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from mlsys_labs.matmul import CacheConfig, blocked_stream, ijk_stream, ikj_stream, miss_table, simulate

pytestmark = pytest.mark.step(8)


def reference_misses(addresses, cache: CacheConfig) -> int:
    """An independent LRU: one OrderedDict per set, most recently used at the end."""
    sets = [OrderedDict() for _ in range(cache.n_sets)]
    misses = 0
    for addr in addresses:
        line = int(addr) // cache.line_bytes
        s = sets[line % cache.n_sets]
        if line in s:
            s.move_to_end(line)
        else:
            misses += 1
            if len(s) == cache.ways:
                s.popitem(last=False)
            s[line] = True
    return misses


@pytest.mark.points(2)
@pytest.mark.parametrize("cache", [CacheConfig(1024, 1, 64), CacheConfig(2048, 4, 32), CacheConfig(512, 8, 64),
                                   CacheConfig(4096, 2, 128), CacheConfig(3 * 2 * 64, 2, 64),
                                   CacheConfig(5 * 4 * 16, 4, 16)], ids=str)
def test_simulator_matches_reference_lru(cache, rng):
    # a mix of streaming, reuse and conflicting addresses over a footprint a few times the cache
    addresses = np.concatenate([
        rng.integers(0, 4 * cache.size_bytes, 1500),
        np.arange(0, 3 * cache.size_bytes, 8),
        np.tile(np.arange(0, cache.size_bytes * 2, cache.size_bytes // cache.ways), 40),
    ])
    rng.shuffle(addresses[:1500])
    assert simulate(addresses, cache) == reference_misses(addresses, cache)


@pytest.mark.points(1)
@pytest.mark.parametrize("cache", [CacheConfig(2 * 64, 2, 64), CacheConfig(4 * 3 * 32, 4, 32),
                                   CacheConfig(6 * 2 * 64, 2, 64)], ids=str)
def test_simulator_planted_streams(cache):
    """Deterministic streams that separate LRU from FIFO and MRU, fill an empty way before
    evicting, cross line boundaries by one byte, and need set = line mod sets (not a power
    of two) and the tag above it."""
    L, S, W = cache.line_bytes, cache.n_sets, cache.ways
    way_apart = S * L                                      # same set, next tag
    lines = [w * way_apart for w in range(W + 1)]          # W + 1 lines of set 0
    streams = {
        # fill the set, touch the oldest again, then one more line: LRU evicts the second
        "lru-vs-fifo": lines[:W] + [lines[0], lines[W], lines[0], lines[1]],
        "cyclic": (lines * 4),                                 # W + 1 lines in turn: LRU misses every time
        "refill": [lines[0], lines[1 % len(lines)], lines[0], lines[2 % len(lines)], lines[0]],
        "line-edges": [0, L - 1, L, 2 * L - 1, 2 * L, 0, L - 1, L + 1, 3 * L - 1, 3 * L],
        "sets": [s * L + w * way_apart for w in range(W) for s in range(S)] * 3,
        "sets-and-one-more": [s * L + w * way_apart for w in range(W + 1) for s in range(S)] * 2
                             + [way_apart * W + 1, 5, way_apart + L * (S - 1) + L - 1],
    }
    for name, stream in streams.items():
        got = simulate(np.array(stream, dtype=np.int64), cache)
        assert got == reference_misses(stream, cache), (f"{name} in {cache}: simulate says {got} misses, "
                                                        f"LRU {reference_misses(stream, cache)}")


@pytest.mark.points(1)
def test_simulator_textbook_cases():
    direct = CacheConfig(1024, 1, 64)
    # two addresses one cache size apart map to the same set of a direct-mapped cache: thrash
    assert simulate(np.tile([0, 1024], 50), direct) == 100
    # in a 2-way cache of the same size they coexist: two cold misses only
    assert simulate(np.tile([0, 1024], 50), CacheConfig(1024, 2, 64)) == 2
    # a sequential sweep of 8-byte words misses once per 64-byte line
    assert simulate(np.arange(0, 4096, 8), direct) == 4096 // 64


def ikj_reference(n, s):
    a0, b0, c0 = 0, n * n * s, 2 * n * n * s
    out = []
    for i in range(n):
        for k in range(n):
            out.append(a0 + (i * n + k) * s)
            for j in range(n):
                out += [b0 + (k * n + j) * s, c0 + (i * n + j) * s]
    return out


def blocked_reference(n, s, tile):
    a0, b0, c0 = 0, n * n * s, 2 * n * n * s
    out = []
    for j0 in range(0, n, tile):
        for k0 in range(0, n, tile):
            for i0 in range(0, n, tile):
                for i in range(i0, min(i0 + tile, n)):
                    for k in range(k0, min(k0 + tile, n)):
                        out.append(a0 + (i * n + k) * s)
                        for j in range(j0, min(j0 + tile, n)):
                            out += [b0 + (k * n + j) * s, c0 + (i * n + j) * s]
    return out


@pytest.mark.points(1)
@pytest.mark.parametrize("n, s, tile", [(1, 8, 1), (5, 8, 2), (6, 4, 4), (7, 8, 3), (8, 8, 8), (9, 4, 16)])
def test_access_streams_are_the_kernels_accesses(n, s, tile):
    """Address for address, in order: the i-k-j and blocked loops written again here (edge
    tiles when n is not a multiple of the tile, a tile larger than n)."""
    got = ikj_stream(n, s)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ikj_reference(n, s), err_msg=f"ikj_stream({n}, {s})")
    np.testing.assert_array_equal(blocked_stream(n, s, tile), blocked_reference(n, s, tile),
                                  err_msg=f"blocked_stream({n}, {s}, tile={tile})")


@pytest.mark.points(1)
def test_access_streams_touch_every_element():
    n, s = 6, 8
    for stream in (ijk_stream(n, s), ikj_stream(n, s), blocked_stream(n, s, 4)):
        assert set(np.unique(stream)) == set(range(0, 3 * n * n * s, s))
    assert len(ijk_stream(n, s)) == 2 * n**3 + n * n
    assert len(ikj_stream(n, s)) == 2 * n**3 + n * n


@pytest.mark.points(3)
def test_loop_order_and_blocking_reduce_misses():
    """At n = 64 float64 with an 8 KiB 4-way cache (smaller than one 32 KiB matrix):
    i-k-j misses fewer than i-j-k, and 16 x 16 tiles fewer still."""
    table = miss_table(n=64, itemsize=8, cache=CacheConfig(8 * 1024, 4, 64), tile=16)
    ijk, ikj, blk = (table[v]["misses"] for v in ("ijk", "ikj", "blocked"))
    assert ikj < ijk / 4, table
    assert blk < ikj, table
    # the compulsory misses: every line of A, B and C at least once
    assert blk >= 3 * 64 * 64 * 8 // 64
