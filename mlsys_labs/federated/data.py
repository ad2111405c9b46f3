"""The federated data: scikit-learn's bundled digits, split across clients.

How the split is made decides how hard federated learning is (Federated Learning
Systems ch. 5; Kairouz et al. 2021 §3.1 "non-IID data"):

- **IID**: a uniform random split — every client sees every class in proportion.
- **Dirichlet(α) label skew** (Hsu, Qi & Brown 2019): for each class, the share of
  each client is drawn from Dir(α·1); α → ∞ is IID, α = 0.1 gives each client a few
  dominant classes.
- **Pathological k classes per client** (McMahan et al. 2017 §3): each client holds
  samples of exactly k classes.

Every partitioner returns a list of index arrays, disjoint, covering the data set,
and is a pure function of its seed — a SuperNode can rebuild its own partition from
``(scheme, num_partitions, seed)`` without any data leaving the machine.
"""
from __future__ import annotations

import functools

import numpy as np

from mlsys_labs.common.datasets import NUM_CLASSES, load_digits_split, split_per_class



def federation_digits(seed: int = 0):
    """(x_train, y_train, x_test, y_test): the digits as every party of the federation sees them —
    standardized float32 features, and a stratified held-out test set (split per class with numpy,
    ``common.datasets.split_per_class``) that the server's centralized evaluation uses."""
    return load_digits_split(seed, standardize=True, dtype=np.float32, split=split_per_class)


def partition_iid(labels: np.ndarray, num_partitions: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniform random split into ``num_partitions`` near-equal parts (sizes differ by ≤ 1).

    Returns ``num_partitions`` sorted integer arrays of indices into ``labels``, disjoint and
    together covering ``range(len(labels))``; every random draw comes from ``rng``."""
    # BEGIN SOLUTION [step 1] hint: shuffle all indices (rng.permutation(len(labels))), np.array_split into num_partitions parts, np.sort each; returns a list of index arrays covering every sample once
    order = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_partitions)]
    # END SOLUTION


def partition_dirichlet(labels: np.ndarray, num_partitions: int, alpha: float,
                        rng: np.random.Generator, min_partition_size: int = 10,
                        max_tries: int = 100) -> list[np.ndarray]:
    """Label skew by Dir(α) (Hsu et al. 2019): for every class c, draw client shares
    p_c ~ Dir(α·1_K) and cut the (shuffled) samples of class c at the cumulative shares.

    Draws again (up to ``max_tries``) while some client has fewer than
    ``min_partition_size`` samples, as flwr-datasets' ``DirichletPartitioner`` does, and
    raises ``ValueError`` if no draw qualifies.  Returns ``num_partitions`` sorted integer
    arrays of indices into ``labels``, disjoint and covering every sample; draws from ``rng``.
    """
    # BEGIN SOLUTION [step 1] hint: per class c, shuffle its indices (rng.permutation), shares = rng.dirichlet([alpha]*K), cut points = (np.cumsum(shares)*n_c).astype(int)[:-1], np.split; client k gets chunk k of every class (sorted); redraw all while a client has < min_partition_size, ValueError after max_tries
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(num_partitions, alpha))
            cuts = (np.cumsum(shares) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        result = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in result) >= min_partition_size:
            return result
    raise ValueError(f"no Dirichlet(α={alpha}) split with every client ≥ {min_partition_size} samples "
                     f"in {max_tries} tries; lower min_partition_size or num_partitions")
    # END SOLUTION


def partition_pathological(labels: np.ndarray, num_partitions: int, classes_per_partition: int,
                           rng: np.random.Generator) -> list[np.ndarray]:
    """Each client holds exactly ``classes_per_partition`` classes (McMahan et al. 2017's
    pathological non-IID split): classes are dealt to clients round-robin from a shuffled
    class order, and the samples of each class are divided evenly among its holders.

    Needs ``num_partitions * classes_per_partition >= number of classes`` so that every
    class has a holder (else samples would be lost).  Returns ``num_partitions`` sorted
    integer arrays of indices into ``labels``, disjoint and covering every sample; draws
    from ``rng``.
    """
    classes = np.unique(labels)
    if num_partitions * classes_per_partition < len(classes):
        raise ValueError(f"{num_partitions} clients × {classes_per_partition} classes cannot cover "
                         f"{len(classes)} classes")
    if classes_per_partition > len(classes):
        raise ValueError(f"{classes_per_partition} classes per client > {len(classes)} classes")
    # BEGIN SOLUTION [step 1] hint: order = rng.permutation(classes); client k holds order[(k*m + j) % C] for j < m (m classes each); split each class's shuffled indices evenly (np.array_split) among its holders; np.sort each client's indices
    order = rng.permutation(classes)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for k in range(num_partitions):
        for j in range(classes_per_partition):
            holders[int(order[(k * classes_per_partition + j) % len(classes)])].append(k)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
    for c, ks in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        for k, chunk in zip(ks, np.array_split(idx, len(ks))):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]
    # END SOLUTION


def label_histograms(labels: np.ndarray, partitions: list[np.ndarray],
                     num_classes: int = NUM_CLASSES) -> np.ndarray:
    """A (clients × classes) matrix of sample counts: how skewed each client is."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in partitions])


def make_partitions(scheme: str, labels: np.ndarray, num_partitions: int, seed: int) -> list[np.ndarray]:
    """Dispatch on a scheme string: ``"iid"``, ``"dirichlet:<alpha>"`` or ``"classes:<k>"``."""
    rng = np.random.default_rng(seed)
    name, _, arg = scheme.partition(":")
    if name == "iid":
        return partition_iid(labels, num_partitions, rng)
    if name == "dirichlet":
        return partition_dirichlet(labels, num_partitions, float(arg), rng)
    if name == "classes":
        return partition_pathological(labels, num_partitions, int(arg), rng)
    raise ValueError(f"unknown partition scheme {scheme!r}: use iid, dirichlet:<alpha>, classes:<k>")


@functools.lru_cache(maxsize=64)
def client_data(scheme: str, partition_id: int, num_partitions: int, seed: int):
    """(x, y) of one client — what a SuperNode would hold locally."""
    x, y, _, _ = federation_digits(seed)
    parts = make_partitions(scheme, y, num_partitions, seed)
    return x[parts[partition_id]], y[parts[partition_id]]
