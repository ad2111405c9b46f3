"""Measuring the cost model's constants on the machine at hand (what ``costmodel.py``
assumes, measured the way the collectives use it).

- **α, β, per protocol.**  Every step of our allreduces is an *exchange*: both ranks of a
  pair send and receive at once (``Sendrecv``); the model charges such a step α + n·β
  (Thakur et al. 2005, §2 assume full-duplex links).  So the link is timed as that exchange
  between ranks 0 and 1, not as the textbook's one-way ping-pong (on one machine a "link"
  is a core copying memory, and two copies at once are not free).  Sizes below MPICH's
  eager threshold fit the eager line, sizes from it on the rendezvous line
  (:func:`rendezvous_threshold`), each with ``costmodel.fit_alpha_beta``.
- **γ** is ``np.add(acc, incoming, out=acc)`` on float64 — the reduction the collectives
  run (``ops.reduce_into``) — timed at a given size (:func:`time_reduction`): a few
  hundred KiB stay in cache, tens of MiB do not, and γ differs by 2–3× between them.

Every figure is a median over interleaved repetitions: each repetition visits every size
once (a burst of load then spreads over all sizes instead of spoiling one), and each
rank's time of a step is the slower rank's (the step is over when both are).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..costmodel import CostParams, fit_alpha_beta

# MPICH 4–5, ch4 over shared memory: a message of at least this many bytes goes by the
# rendezvous protocol (CMA: one process_vm_readv between the two address spaces);
# smaller ones are copied through 8 KiB eager cells.  `mpivars` lists the value.
MPICH_RENDEZVOUS_CVAR = "MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD"
MPICH_RENDEZVOUS_DEFAULT = 8192

LINK_SIZES = (8, 64, 512, 2048, 4096, 8192, 32768, 131072, 2**19, 2**21, 2**23)


def rendezvous_threshold() -> int:
    """The message size (bytes) from which MPICH switches from eager to rendezvous."""
    return int(os.environ.get(MPICH_RENDEZVOUS_CVAR, MPICH_RENDEZVOUS_DEFAULT))


@dataclass(frozen=True)
class LinkTimes:
    """Median seconds per size of a two-way exchange (both ranks send and receive at once)."""

    sizes: tuple[int, ...]
    exchange: tuple[float, ...]


def _exchange_once(comm, send: np.ndarray, recv: np.ndarray) -> float:
    peer = 1 - comm.Get_rank()
    comm.Barrier()
    t0 = time.perf_counter()
    comm.Sendrecv(send, dest=peer, sendtag=78, recvbuf=recv, source=peer, recvtag=78)
    return time.perf_counter() - t0


def measure_links(comm, sizes=LINK_SIZES, repeats: int = 15, warmup: int = 2) -> LinkTimes:
    """Exchange medians between ranks 0 and 1 (each repetition's slower rank); the other
    ranks only wait.  Every rank gets the same LinkTimes."""
    pair = comm.Split(0 if comm.Get_rank() < 2 else 1, comm.Get_rank())
    exchange = {n: [] for n in sizes}
    if comm.Get_rank() < 2:
        bufs = {n: (np.ones(n, np.uint8), np.zeros(n, np.uint8)) for n in sizes}
        for rep in range(warmup + repeats):
            for n in sizes:
                ex = _exchange_once(pair, *bufs[n])
                if rep >= warmup:
                    exchange[n].append(ex)
        exchange = {n: [max(a, b) for a, b in zip(*pair.allgather(t))] for n, t in exchange.items()}
    pair.Free()
    times = None
    if comm.Get_rank() == 0:
        times = LinkTimes(tuple(sizes), tuple(float(np.median(exchange[n])) for n in sizes))
    return comm.bcast(times, root=0)


def time_reduction(nbytes: int, repeats: int = 7) -> float:
    """Median seconds of ``np.add(acc, incoming, out=acc)`` on ``nbytes`` of float64
    (buffers warmed first, as the collectives' are after their first call)."""
    acc = np.ones(max(1, nbytes // 8))
    incoming = np.ones_like(acc)
    np.add(acc, incoming, out=acc)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.add(acc, incoming, out=acc)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_gamma(nbytes: int = 32 * 2**20, repeats: int = 5) -> float:
    """Seconds per byte of the reduction at one size (default: past the caches)."""
    return time_reduction(nbytes, repeats) / max(8, nbytes // 8 * 8)


def fit_protocols(links: LinkTimes, threshold: int, gamma: float) -> CostParams:
    """Eager and rendezvous lines through the exchange medians on each side of the threshold
    (a side with fewer than two sizes borrows the other side's line)."""
    sizes, seconds = np.array(links.sizes), np.array(links.exchange)
    eager, rndv = sizes < threshold, sizes >= threshold
    lines = {}
    for name, mask in (("eager", eager), ("rndv", rndv)):
        lines[name] = fit_alpha_beta(sizes[mask], seconds[mask]) if mask.sum() >= 2 else None
    eager_line = lines["eager"] or lines["rndv"]
    rndv_line = lines["rndv"] or lines["eager"]
    return CostParams(alpha=eager_line[0], beta=eager_line[1], gamma=gamma,
                      alpha_rndv=rndv_line[0], beta_rndv=rndv_line[1], rendezvous_from=threshold)


def calibrate(comm, sizes=LINK_SIZES, iterations: int = 15) -> CostParams:
    """α, β per protocol from exchanges between ranks 0 and 1, γ from the reduction past
    the caches; the same CostParams on every rank (broadcast from rank 0).  Needs p ≥ 2."""
    if comm.Get_size() < 2:
        raise ValueError("calibration needs at least 2 ranks for the exchange")
    return params_from(comm, measure_links(comm, sizes, repeats=iterations))


def params_from(comm, links: LinkTimes) -> CostParams:
    """Rank 0 fits the two lines and times γ; every rank gets its CostParams."""
    params = None
    if comm.Get_rank() == 0:
        params = fit_protocols(links, rendezvous_threshold(), measure_gamma())
    return comm.bcast(params, root=0)


# ------------------------------------------------- the model checked against a sweep
def message_bytes(collective: str, algorithm: str, nbytes: int, p: int) -> int:
    """The mean size of one of the algorithm's messages: bytes sent / latencies."""
    from ..costmodel import terms

    lat, sent, _ = terms(collective, algorithm, nbytes, p)
    return max(1, int(sent / lat)) if lat else 0


def step_probes(comm, message_sizes) -> list[tuple[str, int, object]]:
    """What the model charges per step, as functions to time beside the collectives:
    ("exchange", m, fn) — every rank swaps m bytes with rank XOR 1 at once (a step of our
    allreduces; a rank without a partner idles) — and ("reduce", m, fn) — ``np.add`` on m
    bytes of float64, the reduction ``ops.reduce_into`` runs."""
    rank, p = comm.Get_rank(), comm.Get_size()
    partner = rank ^ 1
    probes = []
    for m in sorted(set(message_sizes)):
        send, recv = np.ones(m, np.uint8), np.zeros(m, np.uint8)
        acc, incoming = np.ones(max(1, m // 8)), np.ones(max(1, m // 8))
        if partner < p:
            probes.append(("exchange", m, lambda s=send, r=recv: comm.Sendrecv(
                s, dest=partner, sendtag=79, recvbuf=r, source=partner, recvtag=79)))
        else:
            probes.append(("exchange", m, lambda: None))
        probes.append(("reduce", m, lambda a=acc, b=incoming: np.add(a, b, out=a)))
    return probes


def predict_rows(rows: list[dict], steps: dict[tuple[str, int], float], p: int) -> CostParams:
    """Fit the eager and rendezvous lines through the exchange medians the sweep took, then
    give each of our rows the model's prediction, its three terms, and the prediction with
    the link's time measured at the row's own message size (no line: what is left is the
    algorithm's cost beyond its steps).  Returns the fitted lines (γ: the largest size's)."""
    from ..costmodel import terms

    sizes = sorted(m for kind, m in steps if kind == "exchange")
    links = LinkTimes(tuple(sizes), tuple(steps[("exchange", m)] for m in sizes))
    gamma_of = {m: steps[("reduce", m)] / max(8, m // 8 * 8) for kind, m in steps if kind == "reduce"}
    params = fit_protocols(links, rendezvous_threshold(), gamma_of[max(gamma_of)] if gamma_of else 0.0)
    for row in rows:
        if row.get("algorithm") is None:
            continue
        lat, sent, reduced = terms(row["collective"], row["algorithm"], row["bytes"], p)
        m = message_bytes(row["collective"], row["algorithm"], row["bytes"], p)
        alpha, beta = params.link(m)
        gamma = gamma_of.get(m, params.gamma)
        row["model_terms"] = {"latency": lat * alpha, "bandwidth": sent * beta, "reduction": reduced * gamma}
        row["predicted"] = sum(row["model_terms"].values())
        row["predicted_step_measured"] = lat * steps.get(("exchange", m), 0.0) + reduced * gamma
        row.update(message_bytes=m, gamma=gamma)
    return params
