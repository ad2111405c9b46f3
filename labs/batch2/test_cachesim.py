"""The LRU set-associative cache simulator, and what it says about the loop orders."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from mlsys_labs.matmul import CacheConfig, blocked_stream, ijk_stream, ikj_stream, miss_table, simulate


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


@pytest.mark.points(3)
@pytest.mark.parametrize("cache", [CacheConfig(1024, 1, 64), CacheConfig(2048, 4, 32), CacheConfig(512, 8, 64),
                                   CacheConfig(4096, 2, 128)], ids=str)
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
def test_simulator_textbook_cases():
    direct = CacheConfig(1024, 1, 64)
    # two addresses one cache size apart map to the same set of a direct-mapped cache: thrash
    assert simulate(np.tile([0, 1024], 50), direct) == 100
    # in a 2-way cache of the same size they coexist: two cold misses only
    assert simulate(np.tile([0, 1024], 50), CacheConfig(1024, 2, 64)) == 2
    # a sequential sweep of 8-byte words misses once per 64-byte line
    assert simulate(np.arange(0, 4096, 8), direct) == 4096 // 64


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
