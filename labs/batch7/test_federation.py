"""Learning dynamics of the federation, run by the in-process engine (the same ServerApp
loop and ClientApp as Flower's engines, without Ray's start-up cost).

README step 5 (the federation runs once local training is written), except the DP run
(step 6)."""
import numpy as np
import pytest

from mlsys_labs.common.rng import derive_seed
from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.federated import FedConfig, client_data, federation_digits, rounds_to_accuracy, train_centralized
from mlsys_labs.federated.plumbing import run_in_process


@pytest.mark.step(5)
@pytest.mark.points(3)
def test_fedavg_on_iid_clients_is_within_2_points_of_centralized(seed):
    seed = seed % 10_000
    central = train_centralized(epochs=20, seed=seed)["final_accuracy"]
    fed = run_in_process(FedConfig(num_clients=10, num_rounds=20, local_epochs=5, partitioning="iid",
                                   seed=seed))
    gap = central - fed["final_accuracy"]
    assert gap <= 0.02, (f"centralized {central:.3f} vs FedAvg IID {fed['final_accuracy']:.3f} "
                         f"(gap {gap:.3f}); per round {[round(r['accuracy'], 3) for r in fed['rounds']]}")
    assert fed["final_accuracy"] > 0.9


@pytest.mark.step(5)
@pytest.mark.points(2)
def test_stronger_label_skew_needs_more_rounds_to_90(seed):
    """Dirichlet α = 0.1 vs α = 1.0, 3 of 10 clients per round, mean over 3 seeds."""
    rounds = {0.1: [], 1.0: []}
    for i in range(3):
        s = derive_seed(seed, "alpha", i) % 10_000
        for alpha in rounds:
            h = run_in_process(FedConfig(num_clients=10, num_rounds=20, fraction=0.3, local_epochs=5,
                                         partitioning=f"dirichlet:{alpha}", seed=s))
            rounds[alpha].append(rounds_to_accuracy(h, 0.9) or 21)  # not reached: counted as 21
    assert np.mean(rounds[0.1]) > np.mean(rounds[1.0]), f"rounds to 90% by α: {rounds}"


@pytest.mark.step(5)
@pytest.mark.points(3)
def test_fedprox_with_stragglers_beats_fedavg_dropping_them(seed):
    """5 clients, 2 classes each (so every class has exactly one holder), 2 of them stragglers
    (each round they finish only part of their local work).  FedAvg drops the stragglers'
    replies, so the 4 classes only they hold never reach its model: it can at best get the
    other 6 classes right — a bound fixed by the construction, whatever the seed.  FedProx
    (μ = 0.1) averages the stragglers' partial work in and must beat that bound (and FedAvg)."""
    s = seed % 10_000
    common = dict(num_clients=5, num_rounds=10, local_epochs=2, partitioning="classes:2",
                  straggler_fraction=0.4, seed=s)
    avg = run_in_process(FedConfig(strategy="fedavg", **common))
    prox = run_in_process(FedConfig(strategy="fedprox", mu=0.1, **common))
    stragglers = avg["stragglers"]
    assert len(stragglers) == 2 and prox["stragglers"] == stragglers
    for r in avg["rounds"]:
        assert r["dropped_partial"] == stragglers, "FedAvg should drop the stragglers' partial work"
        assert not set(r["aggregated"]) & set(stragglers), r
    assert not any(r["dropped_partial"] for r in prox["rounds"]), "FedProx keeps partial work"
    assert all(r["aggregated"] == list(range(5)) for r in prox["rounds"])
    _, _, _, y_test = federation_digits(s)
    seen = {int(c) for p in range(5) if p not in stragglers
            for c in np.unique(client_data("classes:2", p, 5, s)[1])}
    assert len(seen) == 6, f"the non-stragglers should hold 6 classes, hold {sorted(seen)}"
    bound = float(np.isin(y_test, sorted(seen)).mean())   # FedAvg: every image of its 6 classes right
    assert prox["final_accuracy"] > bound + 0.1, \
        (f"FedProx {prox['final_accuracy']:.3f} vs the {bound:.3f} FedAvg could reach at best "
         f"(FedAvg: {avg['final_accuracy']:.3f}); FedProx per round {[round(r['accuracy'], 3) for r in prox['rounds']]}")
    assert prox["final_accuracy"] > avg["final_accuracy"]


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_a_fixed_seed_is_reproducible(seed):
    cfg = FedConfig(num_clients=5, num_rounds=3, fraction=0.6, partitioning="dirichlet:0.5",
                    straggler_fraction=0.4, strategy="fedprox", seed=seed % 10_000)
    a, b = run_in_process(cfg), run_in_process(cfg)
    assert a["weights_digest"] == b["weights_digest"]
    assert [r["accuracy"] for r in a["rounds"]] == [r["accuracy"] for r in b["rounds"]]
    assert [r["sampled"] for r in a["rounds"]] == [r["sampled"] for r in b["rounds"]]
    c = run_in_process(cfg.replace(seed=cfg.seed + 1))
    assert c["weights_digest"] != a["weights_digest"], "a different seed gave the same model"


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_client_sampling_fraction(seed):
    h = run_in_process(FedConfig(num_clients=10, num_rounds=4, fraction=0.3, seed=seed % 10_000))
    sampled = [r["sampled"] for r in h["rounds"]]
    assert all(len(s) == 3 and len(set(s)) == 3 for s in sampled), sampled
    assert all(r["aggregated"] == r["sampled"] for r in h["rounds"])
    assert len({tuple(s) for s in sampled}) > 1, f"the same clients every round: {sampled}"


@pytest.mark.step(5)
@pytest.mark.points(1)
def test_a_raising_client_does_not_stop_the_run(seed):
    h = run_in_process(FedConfig(num_clients=5, num_rounds=3, fail_partitions="1,3", fail_round=2,
                                 seed=seed % 10_000))
    r1, r2, r3 = h["rounds"]
    assert r2["failed"] == 2 and r2["aggregated"] == [0, 2, 4], r2
    assert "injected fault" in r2["errors"][0]
    assert r1["aggregated"] == r3["aggregated"] == [0, 1, 2, 3, 4]
    assert r3["accuracy"] > 0.5


def _recording_grid(monkeypatch):
    """Make run_in_process use an InProcessGrid that keeps every (messages, replies) pair."""
    from mlsys_labs.federated.plumbing import simulation

    calls = []

    class Recording(simulation.InProcessGrid):
        def send_and_receive(self, messages, *, timeout=None):
            messages = list(messages)
            replies = super().send_and_receive(messages, timeout=timeout)
            calls.append((messages, replies))
            return replies

    monkeypatch.setattr(simulation, "InProcessGrid", Recording)
    return calls


@pytest.mark.step(5)
@pytest.mark.points(2)
@pytest.mark.parametrize("strategy", ["fedavg", "fedprox"])
def test_the_server_averages_the_accepted_replies_by_examples(strategy, seed, monkeypatch):
    """Recomputed from the messages themselves: the weights the server sends in round t+1 are
    Σ n_k w_k / Σ n_k over the replies of round t it may accept — weighted by each reply's
    example count (Dirichlet clients differ in size), without the clients that raised, and,
    for FedAvg, without the stragglers' partial work (FedProx keeps it)."""
    from mlsys_labs.federated import from_record

    calls = _recording_grid(monkeypatch)
    cfg = FedConfig(num_clients=5, num_rounds=3, partitioning="dirichlet:0.5", strategy=strategy,
                    straggler_fraction=0.2, fail_partitions="1,3", fail_round=2, seed=seed % 10_000)
    h = run_in_process(cfg)
    (_, query_replies), *rounds = calls
    full = {int(r.content["metrics"]["partition-id"]): int(r.content["metrics"]["full-steps"]) for r in query_replies}
    sizes = {int(r.content["metrics"]["partition-id"]): int(r.content["metrics"]["num-examples"]) for r in query_replies}
    assert len(set(sizes.values())) > 1, f"the clients should differ in size: {sizes}"
    assert len(rounds) == cfg.num_rounds
    assert h["rounds"][1]["failed"] == 2
    for t in range(cfg.num_rounds - 1):
        _, replies = rounds[t]
        accepted = []
        for r in replies:
            if r.has_error():
                continue
            m = r.content["metrics"]
            if strategy == "fedavg" and int(m["steps"]) < full[int(m["partition-id"])]:
                continue
            accepted.append((from_record(r.content["arrays"]), int(m["num-examples"])))
        assert accepted, f"round {t + 1}: nothing to aggregate"
        n = np.array([c for _, c in accepted], dtype=np.float64)
        next_messages, _ = rounds[t + 1]
        sent = from_record(next_messages[0].content["arrays"])
        for k in sent:
            ref = np.tensordot(n / n.sum(), np.stack([w[k] for w, _ in accepted]), axes=1)
            assert_close(sent[k], ref, dtype="float64", scale=100,
                         what=f"{strategy}: round {t + 2}'s global {k} vs the example-weighted average of round {t + 1}")


@pytest.mark.step(6)
@pytest.mark.points(2)
def test_differential_privacy_still_converges_at_a_cost(seed):
    s = seed % 10_000
    base = FedConfig(num_clients=10, num_rounds=15, local_epochs=2, seed=s)
    plain = run_in_process(base)
    private = run_in_process(base.replace(clip_norm=1.0, noise_multiplier=0.1))
    assert private["final_accuracy"] > 0.8, [r["accuracy"] for r in private["rounds"]]
    assert private["weights_digest"] != plain["weights_digest"], "clipping/noise had no effect"
    heavy = run_in_process(base.replace(num_rounds=5, clip_norm=0.5, noise_multiplier=2.0))
    assert heavy["final_accuracy"] < plain["final_accuracy"], "heavy noise should cost accuracy"


@pytest.mark.step(5)
@pytest.mark.points(1)
@pytest.mark.hidden
@pytest.mark.parametrize("strategy", ["fedavgm", "fedadam"])
def test_server_optimizers_converge(strategy, seed):
    h = run_in_process(FedConfig(num_clients=10, num_rounds=15, local_epochs=2, strategy=strategy,
                                 partitioning="dirichlet:1.0", seed=seed % 10_000))
    assert h["final_accuracy"] > 0.85, f"{strategy}: {[round(r['accuracy'], 3) for r in h['rounds']]}"
