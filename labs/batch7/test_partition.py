"""Partitioners: every sample in exactly one client, seeded, and α controls the skew.

README step 1 (``data.py``); each partitioner is its own test."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.federated import (federation_digits, label_histograms, make_partitions, partition_dirichlet,
                                  partition_iid, partition_pathological)

pytestmark = pytest.mark.step(1)

SCHEMES = {"iid": st.just("iid"),
           "dirichlet": st.sampled_from(["dirichlet:0.1", "dirichlet:0.5", "dirichlet:5.0"]),
           "pathological": st.sampled_from(["classes:1", "classes:2", "classes:3"])}


def _labels(rng, n, num_classes=10):
    """Random labels in which every class occurs (so every split is possible)."""
    return rng.permutation(np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, n - num_classes)]))


@pytest.mark.points(1)
@pytest.mark.parametrize("partitioner", list(SCHEMES))
@settings(max_examples=25, deadline=None)
@given(data=st.data(), num_partitions=st.integers(10, 20), n=st.integers(400, 1500),
       seed=st.integers(0, 2**31 - 1))
def test_partitions_cover_the_data_exactly_once(partitioner, data, num_partitions, n, seed):
    scheme = data.draw(SCHEMES[partitioner], label="scheme")
    labels = _labels(np.random.default_rng(seed), n)
    name, _, arg = scheme.partition(":")
    rng = np.random.default_rng(seed)
    if name == "dirichlet":  # small data, many clients: allow tiny (non-empty) clients
        parts = partition_dirichlet(labels, num_partitions, float(arg), rng, min_partition_size=1)
    else:
        parts = make_partitions(scheme, labels, num_partitions, seed)
    assert len(parts) == num_partitions
    for p in parts:
        assert np.issubdtype(np.asarray(p).dtype, np.integer) and np.all(np.diff(p) > 0), \
            f"{scheme}: a client's indices are not sorted: {p[:10]}"
    sizes = [len(p) for p in parts]
    assert sum(sizes) == n, f"{scheme}: sizes {sizes} sum to {sum(sizes)}, not {n}"
    everything = np.concatenate(parts)
    assert len(np.unique(everything)) == n, f"{scheme}: some sample is in two clients"
    assert np.array_equal(np.sort(everything), np.arange(n))
    hist = label_histograms(labels, parts)
    assert np.array_equal(hist.sum(axis=0), np.bincount(labels, minlength=10))


@pytest.mark.points(1)
def test_iid_is_balanced(rng):
    # labels sorted by class (as files often are): a split that does not shuffle gives each
    # client one or two classes
    labels = np.sort(_labels(rng, 1437))
    state = int(rng.integers(1 << 30))
    parts = partition_iid(labels, 10, np.random.default_rng(state))
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() - sizes.min() <= 1, f"IID sizes {sizes} should differ by at most one"
    # every client sees (almost) every class
    hist = label_histograms(labels, parts)
    assert (hist > 0).sum(axis=1).min() >= 8, f"IID clients' label histograms:\n{hist}"
    again = partition_iid(labels, 10, np.random.default_rng(state))
    assert all(np.array_equal(p, q) for p, q in zip(parts, again)), "the same rng state gave another split"
    other = partition_iid(labels, 10, np.random.default_rng(state + 1))
    assert not all(np.array_equal(p, q) for p, q in zip(parts, other)), "the split ignores rng"


def _skew(labels, parts):
    """Mean total-variation distance between a client's label distribution and the global one."""
    hist = label_histograms(labels, parts).astype(float)
    local = hist / hist.sum(axis=1, keepdims=True)
    glob = np.bincount(labels, minlength=10) / len(labels)
    return float(np.mean(0.5 * np.abs(local - glob).sum(axis=1)))


@pytest.mark.points(2)
def test_dirichlet_alpha_controls_the_skew(seed):
    _, y, _, _ = federation_digits(0)
    skew = {}
    for alpha in (0.1, 1.0, 100.0):
        skew[alpha] = np.mean([_skew(y, partition_dirichlet(y, 10, alpha, np.random.default_rng(seed + i)))
                               for i in range(5)])
    assert skew[0.1] > skew[1.0] > skew[100.0], f"label skew by α: {skew}"
    assert skew[0.1] > 0.5 and skew[100.0] < 0.1, f"label skew by α: {skew}"


@pytest.mark.points(1)
@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 4), num_partitions=st.integers(10, 16), seed=st.integers(0, 2**31 - 1))
def test_pathological_gives_k_classes_each(k, num_partitions, seed):
    _, y, _, _ = federation_digits(0)
    parts = partition_pathological(y, num_partitions, k, np.random.default_rng(seed))
    classes_per_client = (label_histograms(y, parts) > 0).sum(axis=1)
    assert (classes_per_client == k).all(), f"classes per client {classes_per_client}, wanted {k}"
    assert sum(len(p) for p in parts) == len(y)


@pytest.mark.points(1)
def test_pathological_with_fewer_clients_than_classes(rng):
    """K clients × k classes ≥ 10 classes with K < 10: the deal wraps around the class order,
    every class still has a holder, every client exactly k classes, and which client holds
    which classes is drawn from the rng."""
    _, y, _, _ = federation_digits(0)
    for num_partitions, k in [(5, 2), (4, 3), (3, 4), (2, 5), (7, 2), (4, 4)]:
        assignments = set()
        for _ in range(4):
            parts = partition_pathological(y, num_partitions, k, np.random.default_rng(int(rng.integers(1 << 30))))
            assert len(parts) == num_partitions
            everything = np.concatenate(parts)
            assert len(everything) == len(y) and np.array_equal(np.sort(everything), np.arange(len(y))), \
                f"{num_partitions} clients × {k} classes: samples lost or duplicated"
            hist = label_histograms(y, parts)
            assert ((hist > 0).sum(axis=1) == k).all(), \
                f"{num_partitions} clients × {k} classes: classes per client {(hist > 0).sum(axis=1)}"
            assignments.add(tuple(tuple(np.flatnonzero(row)) for row in hist))
        assert len(assignments) > 1, f"{num_partitions} × {k}: the same classes for every rng: {assignments}"


def _contiguous_share(labels, parts, lo=3):
    """Among the (client, class) chunks with lo ≤ size ≤ n_c − lo, the share that are a run of
    consecutive samples of that class (as listed in the data): ~0 if a class's samples are
    shuffled before being cut, 1 if they are not."""
    runs, total = 0, 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank = {int(i): r for r, i in enumerate(members)}
        for p in parts:
            mine = np.sort([rank[int(i)] for i in p if labels[i] == c])
            if lo <= len(mine) <= len(members) - lo:
                total += 1
                runs += int(mine[-1] - mine[0] == len(mine) - 1)
    return runs / max(total, 1), total


@pytest.mark.points(1)
@pytest.mark.parametrize("scheme", ["iid", "dirichlet:1.0", "classes:3"])
def test_samples_of_a_class_are_shuffled_before_the_split(scheme, seed):
    """The data set lists samples in file order (by writer, for the digits): a client must get
    a random subset of a class, not the next run of it."""
    _, y, _, _ = federation_digits(0)
    parts = make_partitions(scheme, y, 7, seed)
    share, total = _contiguous_share(y, parts)
    assert total >= 5, f"{scheme}: too few mid-size chunks to judge ({total})"
    assert share < 0.5, f"{scheme}: {share:.0%} of the clients' class chunks are runs of consecutive samples"


@pytest.mark.points(1)
def test_dirichlet_respects_the_minimum_partition_size(rng):
    """α = 0.1 over 10 clients often leaves a client nearly empty: such draws are redrawn,
    and an impossible minimum raises ValueError."""
    _, y, _, _ = federation_digits(0)
    for _ in range(3):
        parts = partition_dirichlet(y, 10, 0.1, np.random.default_rng(int(rng.integers(1 << 30))),
                                    min_partition_size=40)
        assert min(len(p) for p in parts) >= 40, f"sizes {[len(p) for p in parts]} (minimum 40)"
        assert sum(len(p) for p in parts) == len(y)
    with pytest.raises(ValueError):
        partition_dirichlet(y, 10, 0.1, np.random.default_rng(int(rng.integers(1 << 30))),
                            min_partition_size=len(y) // 10 + 1, max_tries=5)


@pytest.mark.points(1)
@pytest.mark.hidden
@pytest.mark.parametrize("scheme", ["iid", "dirichlet:0.3", "classes:2"])
def test_partitioners_are_seeded(scheme, seed):
    _, y, _, _ = federation_digits(0)
    a = make_partitions(scheme, y, 10, seed)
    b = make_partitions(scheme, y, 10, seed)
    c = make_partitions(scheme, y, 10, seed + 1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b)), f"{scheme}: same seed, different split"
    assert not all(np.array_equal(p, q) for p, q in zip(a, c)), f"{scheme}: seed ignored"
