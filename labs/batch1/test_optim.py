"""Optimizers and the schedule against torch.optim on the same parameters and the same
sequence of random gradients, and the initializers' statistics against torch.nn.init."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.nn import SGD, Adam, AdamW, Tensor, WarmupCosine
from mlsys_labs.nn import init

OPTIMIZERS = {
    "sgd": (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_weight_decay": (lambda p: SGD(p, lr=0.1, weight_decay=0.05),
                         lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    "sgd_momentum": (lambda p: SGD(p, lr=0.05, momentum=0.8), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8)),
    "sgd_momentum_weight_decay": (lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                                  lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "adam": (lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam_large_eps": (lambda p: Adam(p, lr=0.01, betas=(0.7, 0.9), eps=0.1),
                       lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.7, 0.9), eps=0.1)),
    "adam_l2": (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
                lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}


@pytest.mark.points(1)
@pytest.mark.step(9)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch(name, rng):
    """Six steps on the same parameters and gradients as torch.optim; the last parameter
    never gets a gradient (grad None: it must not move, nor disturb the others)."""
    make_ours, make_theirs = OPTIMIZERS[name]
    shapes = [(3, 4), (4,), (2, 3, 2), (3,)]
    start = [rng.standard_normal(s) for s in shapes]
    ours = [Tensor(a.copy(), requires_grad=True) for a in start]
    theirs = [torch.tensor(a, requires_grad=True) for a in start]
    opt, t_opt = make_ours(ours), make_theirs(theirs)
    for step in range(6):
        for p, tp in zip(ours[:-1], theirs[:-1]):
            g = rng.standard_normal(p.shape) * (1.0 + step)     # growing: a stale moment shows
            p.grad, tp.grad = g.copy(), torch.tensor(g)
        opt.step()
        t_opt.step()
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            assert_close(p.data, tp, dtype="float64", scale=100, what=f"{name} step {step + 1} parameter {i}")
    assert np.array_equal(ours[-1].data, start[-1]), f"{name}: a parameter without gradient moved"
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


@pytest.mark.points(1)
def _assert_lr_follows_torch(opt, schedule, t_opt, t_sched, steps: int) -> None:
    """Step our schedule and torch's side by side; the learning rates agree at every step."""
    for step in range(steps):
        assert math.isclose(opt.lr, t_opt.param_groups[0]["lr"], rel_tol=1e-9, abs_tol=1e-12), \
            f"step {step}: lr {opt.lr} vs torch {t_opt.param_groups[0]['lr']}"
        t_opt.step()
        t_sched.step()
        schedule.step()


@pytest.mark.step(9)
def test_warmup_cosine_schedule_matches_torch(rng):
    total, warmup = int(rng.integers(20, 60)), int(rng.integers(2, 10))
    base, floor = float(rng.uniform(0.01, 1.0)), float(rng.uniform(0.0, 0.005))
    opt = SGD([Tensor(np.zeros(1), requires_grad=True)], lr=base)
    schedule = WarmupCosine(opt, total, warmup_steps=warmup, min_lr=floor)
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    t_sched = torch.optim.lr_scheduler.SequentialLR(t_opt, [
        torch.optim.lr_scheduler.LinearLR(t_opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=total - warmup, eta_min=floor)],
        milestones=[warmup])
    _assert_lr_follows_torch(opt, schedule, t_opt, t_sched, total + 1)
    for step in range(total + 1, total + 6):        # after T: held at min_lr (torch's cosine would rise)
        assert math.isclose(opt.lr, floor, rel_tol=1e-9, abs_tol=1e-12), f"step {step}: lr {opt.lr} != min {floor}"
        schedule.step()


@pytest.mark.points(0.5)
@pytest.mark.step(9)
def test_cosine_schedule_without_warmup_matches_torch(rng):
    total, base, floor = int(rng.integers(10, 40)), float(rng.uniform(0.01, 1.0)), float(rng.uniform(0.0, 0.005))
    opt = SGD([Tensor(np.zeros(1), requires_grad=True)], lr=base)
    schedule = WarmupCosine(opt, total, warmup_steps=0, min_lr=floor)
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    t_sched = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=total, eta_min=floor)
    _assert_lr_follows_torch(opt, schedule, t_opt, t_sched, total + 1)


INITS = {
    "kaiming_normal": (lambda s, r: init.kaiming_normal(s, r), lambda t: torch.nn.init.kaiming_normal_(t, nonlinearity="relu")),
    "kaiming_uniform": (lambda s, r: init.kaiming_uniform(s, r), lambda t: torch.nn.init.kaiming_uniform_(t, nonlinearity="relu")),
    "xavier_normal": (lambda s, r: init.xavier_normal(s, r), torch.nn.init.xavier_normal_),
    "xavier_uniform": (lambda s, r: init.xavier_uniform(s, r), torch.nn.init.xavier_uniform_),
}


def _check_statistics(name, ours, theirs, uniform):
    """Same std (and, uniform, the same range) as torch's sample, mean ~0: every bound is
    more than 6 standard errors wide (n ≥ 18k: the std is known to ~1%)."""
    assert abs(ours.mean()) < 6 * theirs.std() / math.sqrt(ours.size), f"{name}: mean {ours.mean()} is not ~0"
    assert abs(ours.std() / theirs.std() - 1) < 0.05, f"{name}: std {ours.std():.5f} vs torch {theirs.std():.5f}"
    if uniform:
        assert abs(np.abs(ours).max() / np.abs(theirs).max() - 1) < 0.02, f"{name}: range differs from torch's"


@pytest.mark.points(0.5)
@pytest.mark.step(7)
@pytest.mark.parametrize("name", list(INITS))
def test_initializer_statistics_match_torch(name, rng):
    """Same shape (out, in, kh, kw), same std and range as torch.nn.init, within sampling
    error; the dtype asked for."""
    ours_fn, theirs_fn = INITS[name]
    shape = (int(rng.integers(128, 256)), int(rng.integers(16, 32)), 3, 3)   # ≥ 18k samples: std within ~1%
    ours = ours_fn(shape, rng)
    theirs = theirs_fn(torch.empty(shape, dtype=torch.float64)).numpy()
    assert ours.shape == shape and ours.dtype == np.float64
    _check_statistics(name, ours, theirs, "uniform" in name)
    fn = getattr(init, name)
    small = fn((4, 3), np.random.default_rng(0), dtype=np.float32)
    assert small.dtype == np.float32 and small.shape == (4, 3), f"{name}: dtype float32 asked, {small.dtype} returned"


@pytest.mark.points(0.5)
@pytest.mark.step(7)
@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform"])
def test_xavier_with_gain(name, rng):
    """std = gain·√(2/(fan_in + fan_out)) (uniform: bound √3·std) for a gain other than 1."""
    shape = (int(rng.integers(100, 150)), int(rng.integers(100, 150)))   # ≥ 10k samples
    gain = float(rng.uniform(2.0, 3.0))
    ours = getattr(init, name)(shape, rng, gain=gain)
    std = gain * math.sqrt(2.0 / (shape[0] + shape[1]))
    assert abs(ours.mean()) < 6 * std / math.sqrt(ours.size), f"{name}: mean {ours.mean()} is not ~0"
    assert abs(ours.std() / std - 1) < 0.05, f"{name}: std {ours.std():.5f}, expected {std:.5f}"
    if name == "xavier_uniform":
        bound = math.sqrt(3.0) * std
        assert 0.98 * bound < np.abs(ours).max() <= bound * (1 + 1e-12), f"{name}: range vs bound {bound:.5f}"


@pytest.mark.points(0.5)
@pytest.mark.step(7)
@pytest.mark.parametrize("name", ["kaiming_normal", "kaiming_uniform"])
def test_kaiming_with_explicit_fan_in_and_gain(name, rng):
    """Linear keeps W as (in, out) and passes fan_in=in explicitly: the explicit fan_in
    and gain win over the shape's — std = gain/√fan_in (uniform: bound √3·std)."""
    n_in, n_out = int(rng.integers(16, 32)), int(rng.integers(1000, 1500))   # ≥ 16k samples
    gain = float(rng.uniform(0.5, 1.5))
    ours = getattr(init, name)((n_in, n_out), rng, gain=gain, fan_in=n_in)
    assert ours.shape == (n_in, n_out)
    std = gain / math.sqrt(n_in)
    assert abs(ours.mean()) < 6 * std / math.sqrt(ours.size), f"{name}: mean {ours.mean()} is not ~0"
    assert abs(ours.std() / std - 1) < 0.05, f"{name}: std {ours.std():.5f}, expected gain/sqrt(fan_in) = {std:.5f}"
    if name == "kaiming_uniform":
        bound = math.sqrt(3.0) * std
        assert 0.98 * bound < np.abs(ours).max() <= bound, f"{name}: range {np.abs(ours).max():.5f} vs bound {bound:.5f}"
