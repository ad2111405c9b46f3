"""Partitioners: every sample in exactly one client, seeded, and α controls the skew.

README step 1 (``data.py``); each partitioner is its own test."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_labs.federated.data import (label_histograms, load_digits_split, make_partitions,
                                       partition_dirichlet, partition_iid, partition_pathological)

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
    sizes = [len(p) for p in parts]
    assert sum(sizes) == n, f"{scheme}: sizes {sizes} sum to {sum(sizes)}, not {n}"
    everything = np.concatenate(parts)
    assert len(np.unique(everything)) == n, f"{scheme}: some sample is in two clients"
    assert np.array_equal(np.sort(everything), np.arange(n))
    hist = label_histograms(labels, parts)
    assert np.array_equal(hist.sum(axis=0), np.bincount(labels, minlength=10))


@pytest.mark.points(1)
def test_iid_is_balanced(rng):
    labels = _labels(rng, 1437)
    parts = partition_iid(labels, 10, rng)
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() - sizes.min() <= 1, f"IID sizes {sizes} should differ by at most one"
    # every client sees (almost) every class
    assert (label_histograms(labels, parts) > 0).sum(axis=1).min() >= 8


def _skew(labels, parts):
    """Mean total-variation distance between a client's label distribution and the global one."""
    hist = label_histograms(labels, parts).astype(float)
    local = hist / hist.sum(axis=1, keepdims=True)
    glob = np.bincount(labels, minlength=10) / len(labels)
    return float(np.mean(0.5 * np.abs(local - glob).sum(axis=1)))


@pytest.mark.points(2)
def test_dirichlet_alpha_controls_the_skew(seed):
    _, y, _, _ = load_digits_split(0)
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
    _, y, _, _ = load_digits_split(0)
    parts = partition_pathological(y, num_partitions, k, np.random.default_rng(seed))
    classes_per_client = (label_histograms(y, parts) > 0).sum(axis=1)
    assert (classes_per_client == k).all(), f"classes per client {classes_per_client}, wanted {k}"
    assert sum(len(p) for p in parts) == len(y)


@pytest.mark.points(1)
@pytest.mark.hidden
@pytest.mark.parametrize("scheme", ["iid", "dirichlet:0.3", "classes:2"])
def test_partitioners_are_seeded(scheme, seed):
    _, y, _, _ = load_digits_split(0)
    a = make_partitions(scheme, y, 10, seed)
    b = make_partitions(scheme, y, 10, seed)
    c = make_partitions(scheme, y, 10, seed + 1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b)), f"{scheme}: same seed, different split"
    assert not all(np.array_equal(p, q) for p, q in zip(a, c)), f"{scheme}: seed ignored"
