"""The autotuner returns a valid configuration from its space, picks the fastest, and caches it."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from mlsys_labs.matmul import BlockConfig, autotune, matmul_packed, tuned_config

from matmul_checks import assert_matmul_close, random_matrix

# the module, not the function of the same name that the package exports
autotune_module = importlib.import_module("mlsys_labs.matmul.autotune")

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


@pytest.mark.points(2)
def test_autotune_picks_the_fastest_and_reuses_the_cache(tmp_path, monkeypatch):
    """With made-up timings the choice is the minimum; a second call does not time at all."""
    fake = {BlockConfig(16, 16, 32, 2, 8): 1.0, BlockConfig(8, 16, 32, 4, 4): 3.0}
    calls = []

    def fake_time(config, a, b, out, repeats):
        calls.append(config)
        return fake.get(config, 2.0)

    monkeypatch.setattr(autotune_module, "time_config", fake_time)
    path = tmp_path / "autotune.json"
    cfg = autotune(np.float64, space=TINY, n=32, repeats=1, cache_path=path)
    assert cfg == BlockConfig(16, 16, 32, 2, 8)
    assert len(calls) == 4
    calls.clear()
    assert autotune(np.float64, space=TINY, n=32, repeats=1, cache_path=path) == cfg
    assert calls == [], "a cached choice was timed again"
    assert autotune(np.float64, space=TINY, n=32, repeats=1, cache_path=path, refresh=True) == cfg
    assert len(calls) == 4


@pytest.mark.points(1)
def test_time_config_times_the_packed_kernel(rng):
    a, b = random_matrix(rng, (40, 40), np.float64), random_matrix(rng, (40, 40), np.float64)
    out = np.full((40, 40), np.nan)
    t = autotune_module.time_config(BlockConfig(8, 16, 32, 4, 4), a, b, out, 2)
    assert 0 < t < 10
    assert_matmul_close(out, a, b, what="time_config's output")
