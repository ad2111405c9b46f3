"""The autotuner (README step 6): how a config is timed (a fake clock and a fake kernel: no
timing asserts), that the search keeps the fastest wherever it sits and the first of a tie,
and that the choice is cached."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from mlsys_labs.matmul import BlockConfig, autotune, matmul_packed, tuned_config

from matmul_checks import FakeClock, assert_matmul_close, random_matrix

# the module, not the function of the same name that the package exports
autotune_module = importlib.import_module("mlsys_labs.matmul.autotune")

pytestmark = pytest.mark.step(6)

TINY = {"mc": (8, 16), "kc": (16,), "nc": (32,), "mr_nr": ((4, 4), (2, 8))}


@pytest.mark.points(2)
def test_autotune_returns_a_valid_cached_config(tmp_path, rng):
    path = tmp_path / "autotune.json"
    cfg = autotune(np.float32, space=TINY, n=48, repeats=1, cache_path=path)
    assert isinstance(cfg, BlockConfig)
    assert cfg.mc in TINY["mc"] and cfg.kc in TINY["kc"] and cfg.nc in TINY["nc"]
    assert (cfg.mr, cfg.nr) in TINY["mr_nr"]
    assert path.exists(), "the choice was not cached"
    saved = json.loads(path.read_text())
    assert any(entry["config"] == cfg.__dict__ for entry in saved.values())
    assert tuned_config(np.float32, cache_path=path) == cfg
    a, b = random_matrix(rng, (21, 35), np.float32), random_matrix(rng, (35, 19), np.float32)
    assert_matmul_close(matmul_packed(a, b, config=cfg), a, b, what=f"packed with tuned {cfg}")


CONFIGS = [BlockConfig(8, 16, 32, 4, 4), BlockConfig(8, 16, 32, 2, 8), BlockConfig(16, 16, 32, 4, 4),
           BlockConfig(16, 16, 32, 2, 8), BlockConfig(48, 16, 32, 4, 4)]


@pytest.mark.points(2)
@pytest.mark.parametrize("costs", [
    (3.0, 2.0, 1.0, 2.5, 4.0),      # the fastest in the middle, the slowest last
    (0.5, 2.0, 3.0, 9.0, 1.0),      # the fastest first
    (2.0, 1.0, 3.0, 1.0, 1.5),      # a tie for the fastest: the first of the two wins
    (7.0, 7.0, 7.0, 7.0, 7.0),      # all equal: the first
], ids=["middle", "first", "tie", "all-equal"])
def test_search_keeps_the_fastest(costs):
    """Made-up timings: the minimum wins wherever it sits, the first of equals on a tie; each
    config is timed once, with the given repeats; the configs may come as a one-pass iterator."""
    cost = dict(zip(CONFIGS, costs))
    calls = []

    def fake_time(config, a, b, out, repeats):
        calls.append((config, repeats))
        return cost[config]

    sentinel = np.zeros((2, 2))
    original = autotune_module.time_config
    autotune_module.time_config = fake_time
    try:
        seconds, best = autotune_module.search(iter(CONFIGS), sentinel, sentinel, sentinel, 7)
    finally:
        autotune_module.time_config = original
    expected = CONFIGS[costs.index(min(costs))]
    assert (seconds, best) == (min(costs), expected), f"search chose {best} ({seconds} s), expected {expected}"
    assert calls == [(c, 7) for c in CONFIGS], f"time_config calls: {calls}"


@pytest.mark.points(2)
def test_autotune_picks_the_fastest_and_reuses_the_cache(tmp_path, monkeypatch):
    """With made-up timings (the fastest neither first nor last) the choice is the minimum;
    a second call does not time at all."""
    fastest = BlockConfig(8, 16, 32, 2, 8)            # second of the four candidates
    fake = {fastest: 1.0, BlockConfig(16, 16, 32, 2, 8): 3.0, BlockConfig(8, 16, 32, 4, 4): 2.0}
    calls = []

    def fake_time(config, a, b, out, repeats):
        calls.append(config)
        return fake.get(config, 2.5)

    monkeypatch.setattr(autotune_module, "time_config", fake_time)
    path = tmp_path / "autotune.json"
    cfg = autotune(np.float64, space=TINY, n=32, repeats=1, cache_path=path)
    assert cfg == fastest
    assert len(calls) == 4
    calls.clear()
    assert autotune(np.float64, space=TINY, n=32, repeats=1, cache_path=path) == cfg
    assert calls == [], "a cached choice was timed again"
    assert autotune(np.float64, space=TINY, n=32, repeats=1, cache_path=path, refresh=True) == cfg
    assert len(calls) == 4


@pytest.mark.points(2)
@pytest.mark.parametrize("repeats", [1, 3, 5])
def test_time_config_measures_best_of_repeats_after_warmup(monkeypatch, repeats):
    """A fake matmul_packed advances a fake clock: the warm-up (the fastest call of all here)
    is not counted, each timed call is timed on its own, the least wins, in seconds."""
    clock = FakeClock()
    durations = [0.01, 0.9, 0.4, 0.6, 0.3, 0.8][:repeats + 1]     # the warm-up first
    calls = []
    cfg = BlockConfig(8, 16, 32, 4, 4)
    a, b, out = np.ones((3, 4)), np.ones((4, 2)), np.zeros((3, 2))

    def fake_packed(a_, b_, out=None, config=None):
        assert a_ is a and b_ is b and out is not None and config == cfg
        calls.append(out)
        clock.now += durations[len(calls) - 1] if len(calls) <= len(durations) else 100.0
        return out

    monkeypatch.setattr(autotune_module, "matmul_packed", fake_packed)
    monkeypatch.setattr(autotune_module.time, "perf_counter", clock)
    t = autotune_module.time_config(cfg, a, b, out, repeats)
    assert len(calls) == repeats + 1, f"{len(calls)} calls for {repeats} repeats (expected 1 warm-up + {repeats})"
    assert all(o is out for o in calls), "time_config did not pass out= through"
    assert t == pytest.approx(min(durations[1:]), rel=1e-9), (t, durations)


@pytest.mark.points(1)
def test_time_config_runs_the_packed_kernel(rng):
    a, b = random_matrix(rng, (40, 37), np.float64), random_matrix(rng, (37, 41), np.float64)
    out = np.full((40, 41), np.nan)
    t = autotune_module.time_config(BlockConfig(8, 16, 32, 4, 4), a, b, out, 2)
    assert isinstance(t, float) and t > 0
    assert_matmul_close(out, a, b, what="time_config's output")
