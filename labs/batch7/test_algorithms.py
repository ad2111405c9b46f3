"""The math without any engine: aggregation (README step 2), server optimizers (step 3),
FedProx's term (step 4), local training (step 5), DP (step 6)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.federated import (DigitsMLP, FedAdam, FedAvg, FedAvgM, FedProx, add_gaussian_noise, clip_update,
                                  get_weights, global_norm, new_model, privatize, proximal_term, set_weights,
                                  train_local, weighted_average)


def _random_weights(rng, scale=1.0):
    return {"fc1.weight": rng.standard_normal((64, 64)) * scale, "fc1.bias": rng.standard_normal(64) * scale,
            "fc2.weight": rng.standard_normal((10, 64)) * scale, "fc2.bias": rng.standard_normal(10) * scale}


@pytest.mark.step(2)
@pytest.mark.points(2)
def test_weighted_average_matches_flower(rng):
    from flwr.app import ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    from mlsys_labs.federated import to_record

    results = [(_random_weights(rng), int(rng.integers(5, 300))) for _ in range(int(rng.integers(2, 7)))]
    copies = [{k: a.copy() for k, a in w.items()} for w, _ in results]
    ours = weighted_average(results)
    for (w, _), c in zip(results, copies):  # a new dict of new arrays: the replies are left as they were
        assert all(np.array_equal(w[k], c[k]) for k in c), "weighted_average modified a client's weights"
    assert all(a.dtype == np.float64 for a in ours.values())
    # reference 1: Flower's own FedAvg aggregation over Message contents
    contents = [RecordDict({"arrays": to_record(w), "metrics": MetricRecord({"num-examples": n})})
                for w, n in results]
    flower: ArrayRecord = aggregate_arrayrecords(contents, "num-examples")
    for k in ours:
        assert_close(ours[k], flower[k].numpy(), dtype="float64", scale=100, what=f"FedAvg {k} vs Flower")
    # reference 2: numpy, float64
    n = np.array([c for _, c in results], dtype=np.float64)
    for k in ours:
        ref = np.tensordot(n / n.sum(), np.stack([w[k] for w, _ in results]), axes=1)
        assert_close(ours[k], ref, dtype="float64", scale=100, what=f"FedAvg {k}")
    assert_close(FedAvg().aggregate(_random_weights(rng), results)["fc2.bias"], ours["fc2.bias"], dtype="float64")
    assert_close(FedProx().aggregate(_random_weights(rng), results)["fc2.bias"], ours["fc2.bias"], dtype="float64")


@pytest.mark.step(3)
@pytest.mark.points(2)
def test_fedavgm_is_sgd_momentum_on_the_pseudo_gradient(rng):
    """FedAvgM = torch.optim.SGD(momentum=β) stepping on Δ = w_t − avg (Hsu et al. 2019)."""
    strategy = FedAvgM(server_lr=0.7, momentum=0.9)
    w = _random_weights(rng)
    ref = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    opt = torch.optim.SGD(ref.values(), lr=0.7, momentum=0.9)
    for _ in range(4):
        results = [(_random_weights(rng, 0.5), int(rng.integers(1, 50))) for _ in range(3)]
        avg = weighted_average(results)
        for k, p in ref.items():
            p.grad = p.detach() - torch.as_tensor(avg[k])
        opt.step()
        w = strategy.aggregate(w, results)
    for k in w:
        assert_close(w[k], ref[k], dtype="float64", scale=100, what=f"FedAvgM {k}")


@pytest.mark.step(3)
@pytest.mark.points(2)
def test_fedadam_follows_reddi_et_al(rng):
    lr, b1, b2, tau = 0.05, 0.9, 0.99, 1e-3
    strategy = FedAdam(server_lr=lr, beta1=b1, beta2=b2, tau=tau)
    w = _random_weights(rng)
    ref = {k: v.copy() for k, v in w.items()}
    m = {k: 0.0 for k in w}
    v = {k: 0.0 for k in w}
    for _ in range(4):
        results = [(_random_weights(rng, 0.5), int(rng.integers(1, 50))) for _ in range(3)]
        n = np.array([c for _, c in results], dtype=np.float64)
        for k in ref:
            avg = sum(c * r[k] for r, c in zip([r for r, _ in results], n)) / n.sum()
            delta = avg - ref[k]
            m[k] = b1 * m[k] + (1 - b1) * delta
            v[k] = b2 * v[k] + (1 - b2) * delta * delta
            ref[k] = ref[k] + lr * m[k] / (np.sqrt(v[k]) + tau)
        w = strategy.aggregate(w, results)
    for k in w:
        assert_close(w[k], ref[k], dtype="float64", scale=1000, what=f"FedAdam {k}")


@pytest.mark.step(4)
@pytest.mark.points(2)
def test_proximal_term_value_and_gradient(rng):
    model = new_model(int(rng.integers(1 << 30)))
    anchor = [p.detach() + torch.as_tensor(rng.standard_normal(p.shape), dtype=torch.float32) for p in model.parameters()]
    mu = float(rng.uniform(0.05, 2.0))
    term = proximal_term(model, anchor, mu)
    ref = 0.5 * mu * sum(float(((p.detach().double() - a.double()) ** 2).sum()) for p, a in zip(model.parameters(), anchor))
    assert_close(term.detach(), torch.tensor(ref), dtype="float32", what="μ/2‖w − w_t‖²")
    term.backward()
    for p, a in zip(model.parameters(), anchor):
        assert_close(p.grad, mu * (p.detach().double() - a.double()), dtype="float32", what="∇ = μ(w − w_t)")


@pytest.mark.step(5)
@pytest.mark.points(2)
def test_local_training_matches_a_plain_torch_loop(rng, seed):
    """train_local = minibatch SGD on reshuffled epochs (torch.randperm with the seed),
    loss = cross-entropy + μ/2‖w − w_t‖², for exactly ``steps`` steps (crossing an epoch)."""
    x = rng.standard_normal((70, 64)).astype(np.float32)
    y = rng.integers(0, 10, 70)
    mu, lr, bs, steps = float(rng.uniform(0.1, 1.0)), 0.1, 16, 7   # 5 batches per epoch
    ours = new_model(seed)
    ref = new_model(seed)
    w0 = [p.detach().clone() for p in ref.parameters()]
    returned = train_local(ours, x, y, steps=steps, batch_size=bs, lr=lr, mu=mu, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    batches = []
    while len(batches) < steps:
        order = torch.randperm(len(ys), generator=gen)
        batches += [order[i:i + bs] for i in range(0, len(ys), bs)]
    losses = []
    for b in batches[:steps]:
        loss = torch.nn.functional.cross_entropy(ref(xs[b]), ys[b])
        loss = loss + 0.5 * mu * sum(((p - a) ** 2).sum() for p, a in zip(ref.parameters(), w0))
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, list(ref.parameters()))
        with torch.no_grad():
            for p, g in zip(ref.parameters(), grads):
                p -= lr * g
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert_close(a, b, dtype="float32", scale=10, what=f"{name} after {steps} steps")
    assert_close(returned, np.mean(losses), dtype="float32", scale=10, what="the mean of the step losses")


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_proximal_term_keeps_clients_near_the_global_model(rng, seed):
    x = rng.standard_normal((200, 64)).astype(np.float32)
    y = rng.integers(0, 10, 200)
    w0 = get_weights(new_model(seed))
    drift = {}
    for mu in (0.0, 1.0):
        model = DigitsMLP()
        set_weights(model, w0)
        train_local(model, x, y, steps=40, batch_size=16, lr=0.1, mu=mu, seed=seed)
        drift[mu] = global_norm({k: get_weights(model)[k] - w0[k] for k in w0})
    assert drift[1.0] < 0.9 * drift[0.0], f"‖w − w_t‖ with μ=1 vs μ=0: {drift}"


@pytest.mark.step(6)
@pytest.mark.points(1)
@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-3, 1e3), clip=st.floats(0.01, 10.0), seed=st.integers(0, 2**31 - 1))
def test_clipping_bounds_the_norm_and_keeps_the_direction(scale, clip, seed):
    update = _random_weights(np.random.default_rng(seed), scale)
    clipped = clip_update(update, clip)
    norm, new_norm = global_norm(update), global_norm(clipped)
    assert new_norm <= clip * (1 + 1e-9)
    expected_scale = min(1.0, clip / norm)
    for k in update:
        assert_close(clipped[k], update[k] * expected_scale, dtype="float64", what=f"clipped {k}")
    inside = {k: a * (0.5 * clip / norm) for k, a in update.items()}      # norm C/2: left as it is
    for k, a in clip_update(inside, clip).items():
        assert_close(a, inside[k], dtype="float64", what=f"an update inside the ball, {k}")
    zero = clip_update({k: np.zeros_like(a) for k, a in update.items()}, clip)  # a client that did not move
    assert all(np.array_equal(a, np.zeros_like(a)) for a in zero.values()), "a zero update must stay zero"


@pytest.mark.step(6)
@pytest.mark.points(1)
def test_gaussian_noise_has_the_stated_std(rng):
    """std z·C on every element of every array, around the update, independent draws, from rng.

    C in [3, 5] and z in [0.4, 0.8]: z·C (≥ 1.2), z, C and (z·C)² are all ≥ 20% apart, so
    noise scaled by z alone, by C alone, or with variance z·C cannot pass whatever is drawn."""
    update = {"a": rng.standard_normal((300, 300)) * 3.0, "b": rng.standard_normal(20000) * 3.0}
    before = {k: a.copy() for k, a in update.items()}
    clip, z = float(rng.uniform(3.0, 5.0)), float(rng.uniform(0.4, 0.8))
    state = int(rng.integers(1 << 30))
    noisy = add_gaussian_noise(update, clip, z, np.random.default_rng(state))
    assert all(np.array_equal(update[k], before[k]) for k in update), "add_gaussian_noise modified its input"
    for k in update:
        noise = noisy[k] - update[k]
        assert noisy[k].shape == update[k].shape and noisy[k].dtype == np.float64
        assert abs(noise.std() / (z * clip) - 1) < 0.05, f"{k}: noise std {noise.std()} vs z·C = {z * clip}"
        assert abs(noise.mean()) < 0.05 * z * clip, f"{k}: noise mean {noise.mean()}"
    flat = np.concatenate([(noisy[k] - update[k]).ravel() for k in update])
    assert abs(flat.std() / (z * clip) - 1) < 0.02, f"std {flat.std()} vs z·C = {z * clip}"
    # independent elements: neighbouring draws uncorrelated (a shared draw would give correlation 1)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.05
    again = add_gaussian_noise(update, clip, z, np.random.default_rng(state))
    assert all(np.array_equal(noisy[k], again[k]) for k in update), "noise not reproducible from the rng"
    other = add_gaussian_noise(update, clip, z, np.random.default_rng(state + 1))
    assert not np.array_equal(noisy["b"], other["b"]), "the noise does not come from the rng passed in"


@pytest.mark.step(6)
@pytest.mark.points(1)
def test_privatize_without_noise_is_pure_clipping(rng):
    """z = 0: privatize is pure clipping of the update around the global weights."""
    g, local = _random_weights(rng), _random_weights(rng)
    out = privatize(local, g, 1.0, 0.0, rng)
    delta = {k: out[k] - g[k] for k in g}
    assert abs(global_norm(delta) - 1.0) < 1e-9
    norm = np.sqrt(sum(np.sum((local[k] - g[k]) ** 2) for k in g))
    for k in g:  # the update w_local − w_t is clipped, not the weights
        assert_close(delta[k], (local[k] - g[k]) / norm, dtype="float64", scale=100, what=f"clipped update {k}")


@pytest.mark.step(6)
@pytest.mark.points(1)
def test_privatize_clips_then_adds_noise_of_scale_z_times_c(rng):
    """The sent update is clip(Δ) + N(0, (zC)²): clipping first bounds the update's norm by C
    *before* the noise, whose scale is relative to C.  Noise first and clipping after would
    send a vector of norm ≤ C — the noise all but clipped away.  Checked twice: against the
    replayed noise of the same seed, and statistically (independently of how the noise is drawn)."""
    g = _random_weights(rng)
    local = {k: g[k] + 0.05 * rng.standard_normal(g[k].shape) for k in g}   # ‖Δ‖ ≈ 3.5 > C
    clip, z = float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.3, 1.0))
    state = int(rng.integers(1 << 30))
    out = privatize(local, g, clip, z, np.random.default_rng(state))
    delta = {k: local[k] - g[k] for k in g}
    norm = np.sqrt(sum(np.sum(d ** 2) for d in delta.values()))
    assert norm > clip
    clipped = {k: d * (clip / norm) for k, d in delta.items()}   # the reference clip, float64
    noise = add_gaussian_noise({k: np.zeros_like(a) for k, a in g.items()}, clip, z,
                               np.random.default_rng(state))     # the same draws, replayed
    for k in g:
        assert_close(out[k] - g[k] - noise[k], clipped[k], dtype="float64", scale=1e3,
                     what=f"sent update − replayed noise = clipped update ({k})")
    residual = np.concatenate([(out[k] - g[k] - clipped[k]).ravel() for k in g])
    assert abs(residual.std() / (z * clip) - 1) < 0.1, f"noise std {residual.std()} vs z·C = {z * clip}"
    sent = np.sqrt(np.sum(np.concatenate([(out[k] - g[k]).ravel() for k in g]) ** 2))
    assert sent > 10 * clip, f"the sent update's norm {sent:.3f} ≤ 10·C: was the noise clipped away?"
