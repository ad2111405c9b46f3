"""OSU-style measurement of our collectives against the MPI library's own, in one
``mpiexec`` run (the OSU micro-benchmarks' method: warm-up, iterations, a barrier between
iterations, each rank's average, then min/avg/max over ranks; here also the median over
iterations of the slowest rank, and the variants of a size take turns call by call).

    mpiexec -n 2 python -m mlsys_labs.collectives.plumbing.osu --out osu.json
    mpiexec -f hosts.txt -n 16 python -m mlsys_labs.collectives.plumbing.osu --max-bytes 64M

Sizes follow nccl-tests: the size of the whole vector (allreduce, reduce, bcast: each
rank's buffer; reduce-scatter: each rank's input; allgather: the gathered output;
alltoall: each rank's send buffer).  Bandwidths as nccl-tests: algbw = size / time,
busbw = algbw × factor (allreduce 2(p−1)/p; reduce-scatter, allgather, alltoall
(p−1)/p; bcast, reduce 1), so busbw is comparable with the link's bandwidth.

Our collectives run with ``check=False`` (no cross-rank argument check), so the
algorithm alone is timed.  The cost model is calibrated inside the sweep: the steps it
charges for (an exchange and a reduction of each algorithm's message size) take turns with
the collectives, so both are timed under the same load; the eager and rendezvous lines
are fitted through those medians (calibrate.py), and the prediction is stored beside each
of our measurements and compared with the median (:func:`summarize`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ...common.cli_args import at_least

BUS_FACTOR = {
    "allreduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "allgather": lambda p: (p - 1) / p,
    "alltoall": lambda p: (p - 1) / p,
    "bcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
}
COLLECTIVES = tuple(BUS_FACTOR)


def iterations_for(nbytes: int, scale: float = 1.0) -> tuple[int, int]:
    """(iterations, warm-up): OSU uses 1000/100 up to 8 KiB and 100/10 above; Python calls
    are slower, so fewer, and fewer still for the largest messages (enough for a median)."""
    if nbytes <= 8192:
        iters = 200
    elif nbytes <= 2**20:
        iters = 40
    elif nbytes <= 2**23:
        iters = 15
    else:
        iters = 7
    iters = max(3, int(iters * scale))
    return iters, max(1, iters // 10)


def osu_time(comm, fns: list, iterations: int, warmup: int) -> list[tuple[float, float, float, float]]:
    """Per function: (min, avg, max) over ranks of each rank's average seconds per call — the
    OSU figures — and the median over iterations of the slowest rank's time (what the cost
    model predicts: a burst of load on a shared machine moves an average, not a median).
    The functions take turns, one call each per iteration, a barrier before every call."""
    times = np.zeros((iterations, len(fns)))
    for i in range(warmup + iterations):
        for j, fn in enumerate(fns):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times[i - warmup, j] = elapsed
    everyone = np.array(comm.allgather(times))  # ranks × iterations × functions
    averages = everyone.mean(axis=1)  # ranks × functions
    slowest = everyone.max(axis=0)  # iterations × functions
    return [(float(averages[:, j].min()), float(averages[:, j].mean()), float(averages[:, j].max()),
             float(np.median(slowest[:, j]))) for j in range(len(fns))]


def variants(comm, collective: str, nbytes: int):
    """[(name, algorithm or None for the built-in, fn)] for one collective and size."""
    from mpi4py import MPI

    from .. import ALGORITHMS, allgather, allreduce, alltoall, bcast, block_counts, reduce, reduce_scatter

    p, rank = comm.Get_size(), comm.Get_rank()
    elements = max(1, nbytes // 8)
    out = []
    if collective in ("allreduce", "reduce", "bcast", "reduce_scatter"):
        x = np.random.default_rng(rank).standard_normal(elements)
        recv = np.empty_like(x)
        if collective == "allreduce":
            mine = np.empty_like(x)  # a preallocated result, as the built-in gets
            out += [(a, a, lambda a=a: allreduce(comm, x, "sum", algorithm=a, out=mine, check=False))
                    for a in ALGORITHMS["allreduce"]]
            out.append(("builtin", None, lambda: comm.Allreduce(x, recv, op=MPI.SUM)))
        elif collective == "reduce":
            out.append(("binomial", "binomial", lambda: reduce(comm, x, "sum", root=0, check=False)))
            out.append(("builtin", None, lambda: comm.Reduce(x, recv, op=MPI.SUM, root=0)))
        elif collective == "bcast":
            out += [(a, a, lambda a=a: bcast(comm, x, root=0, algorithm=a, check=False))
                    for a in ALGORITHMS["bcast"]]
            out.append(("builtin", None, lambda: comm.Bcast(x, root=0)))
        else:
            counts = block_counts(elements, p)
            part = np.empty(counts[rank])
            out += [(a, a, lambda a=a: reduce_scatter(comm, x, "sum", algorithm=a, check=False))
                    for a in ALGORITHMS["reduce_scatter"]]
            out.append(("builtin", None, lambda: comm.Reduce_scatter(x, part, recvcounts=counts, op=MPI.SUM)))
    elif collective == "allgather":
        x = np.random.default_rng(rank).standard_normal(max(1, elements // p))
        recv = np.empty((p, x.size))
        out += [(a, a, lambda a=a: allgather(comm, x, algorithm=a, check=False)) for a in ALGORITHMS["allgather"]]
        out.append(("builtin", None, lambda: comm.Allgather(x, recv)))
    elif collective == "alltoall":
        x = np.random.default_rng(rank).standard_normal((p, max(1, elements // p)))
        recv = np.empty_like(x)
        out.append(("pairwise", "pairwise", lambda: alltoall(comm, x, check=False)))
        out.append(("builtin", None, lambda: comm.Alltoall(x, recv)))
    return out


def actual_bytes(collective: str, nbytes: int, p: int) -> int:
    """The size actually moved after rounding to whole float64 elements per rank."""
    elements = max(1, nbytes // 8)
    if collective in ("allgather", "alltoall"):
        return 8 * p * max(1, elements // p)
    return 8 * elements


def sweep(comm, collectives, sizes, *, scale: float = 1.0, model: bool = True,
          progress=None) -> tuple[list[dict], object]:
    """Measure every variant of every collective at every size; rows for rank 0.

    The variants of one size take turns call by call, and with ``model`` so do the steps
    the cost model charges for them (calibrate.step_probes: an exchange and a reduction of
    each algorithm's message size), timed in the same loop under the same load.  Then each
    of our rows gets the model's prediction (calibrate.predict_rows); returns (rows, the
    fitted CostParams or None)."""
    from .calibrate import message_bytes, predict_rows, step_probes

    p = comm.Get_size()
    rows, steps = [], {}
    for collective in collectives:
        for nbytes in sizes:
            iters, warmup = iterations_for(nbytes, scale)
            size = actual_bytes(collective, nbytes, p)
            found = variants(comm, collective, nbytes)
            probes = step_probes(comm, [message_bytes(collective, a, size, p) for _, a, _ in found
                                        if a is not None]) if model and p > 1 else []
            stats = osu_time(comm, [fn for *_, fn in found + probes], iters, warmup)
            for (name, algorithm, _), (t_min, t_avg, t_max, t_med) in zip(found, stats):
                algbw = size / t_avg
                rows.append({"collective": collective, "variant": name, "algorithm": algorithm, "bytes": size,
                             "p": p, "iterations": iters, "t_min": t_min, "t_avg": t_avg, "t_max": t_max,
                             "t_med": t_med, "algbw": algbw, "busbw": algbw * BUS_FACTOR[collective](p)})
            for (kind, m, _), stat in zip(probes, stats[len(found):]):
                steps.setdefault((kind, m), []).append(stat[3])
            if progress is not None and comm.Get_rank() == 0:
                progress(collective, size)
    if not steps:
        return rows, None
    return rows, predict_rows(rows, {k: float(np.median(v)) for k, v in steps.items()}, p)


def parse_size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def default_sizes(max_bytes: int) -> list[int]:
    """8 B, 32 B, ... ×4 up to ``max_bytes`` (and ``max_bytes`` itself)."""
    sizes, n = [], 8
    while n < max_bytes:
        sizes.append(n)
        n *= 4
    return sizes + [max_bytes]


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collectives", default=",".join(COLLECTIVES))
    ap.add_argument("--max-bytes", default="64M")
    ap.add_argument("--scale", type=at_least(0.001, float), default=1.0, help="multiply the iteration counts")
    ap.add_argument("--out", default=None, help="rank 0 writes the rows and the calibration here (JSON)")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    sizes = default_sizes(parse_size(args.max_bytes))

    def progress(collective, size):
        print(f"  {collective:15s} {size:>10d} B done", file=sys.stderr, flush=True)

    rows, params = sweep(comm, args.collectives.split(","), sizes, scale=args.scale, progress=progress)
    if comm.Get_rank() == 0:
        report = {"p": comm.Get_size(), "params": params.as_dict() if params else None, "rows": rows,
                  "mpi": MPI.Get_library_version().splitlines()[0]}
        if args.out:
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1)
        print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    """Markdown: per collective and size, each variant's avg (OSU) and median time, busbw,
    prediction, avg ratio to the built-in."""
    builtin = {(r["collective"], r["bytes"]): r["t_avg"] for r in rows if r["variant"] == "builtin"}
    lines = ["| collective | bytes | variant | avg µs | min µs | max µs | median µs | busbw GB/s | model µs | / built-in |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["t_avg"] / builtin[(r["collective"], r["bytes"])]
        model = f"{1e6 * r['predicted']:.1f}" if "predicted" in r else ""
        lines.append(f"| {r['collective']} | {r['bytes']} | {r['variant']} | {1e6 * r['t_avg']:.1f} | "
                     f"{1e6 * r['t_min']:.1f} | {1e6 * r['t_max']:.1f} | {1e6 * r['t_med']:.1f} | {r['busbw'] / 1e9:.3f} | {model} | {ratio:.2f} |")
    return "\n".join(lines)



def summarize(report: dict) -> dict:
    """The lab's figures from a sweep: ring allreduce / built-in at ≥ 4 MiB (worst size),
    and the cost model's relative error against the median time at ≥ 64 KiB (worst and
    median over our allreduce algorithms and sizes; and over every collective), with the
    allreduce errors taken apart (:func:`model_decomposition`)."""
    rows = report["rows"]
    builtin = {(r["collective"], r["bytes"]): r["t_avg"] for r in rows if r["variant"] == "builtin"}
    ring = {r["bytes"]: r["t_avg"] / builtin[("allreduce", r["bytes"])]
            for r in rows if r["collective"] == "allreduce" and r["variant"] == "ring" and r["bytes"] >= 4 * 2**20}
    errors = {f"{r['collective']}/{r['variant']}/{r['bytes']}": r["predicted"] / r["t_med"] - 1
              for r in rows if "predicted" in r and r["bytes"] >= 64 * 2**10}
    allreduce_errors = [abs(v) for k, v in errors.items() if k.startswith("allreduce/")]
    best = {}
    for (collective, nbytes), t_builtin in builtin.items():
        ours = [r["t_avg"] for r in rows if r["collective"] == collective and r["bytes"] == nbytes
                and r["variant"] != "builtin"]
        best.setdefault(collective, {})[nbytes] = min(ours) / t_builtin
    decomposition = model_decomposition(rows)
    nan = float("nan")
    return {
        "ring_over_builtin_4MiB_worst": max(ring.values()) if ring else nan,
        "ring_over_builtin_by_size": ring,
        "model_error_allreduce_worst": max(allreduce_errors) if allreduce_errors else nan,
        "model_error_allreduce_median": float(np.median(allreduce_errors)) if allreduce_errors else nan,
        "model_error_all_median": float(np.median(np.abs(list(errors.values())))) if errors else nan,
        "line_error_allreduce_worst": max((abs(d["line"]) for d in decomposition.values()), default=nan),
        "steps_error_allreduce_worst": max((abs(d["steps"]) for d in decomposition.values()), default=nan),
        "model_errors": errors,
        "model_decomposition": decomposition,
        "best_over_builtin": best,
    }


def model_decomposition(rows: list[dict], min_bytes: int = 64 * 2**10) -> dict[str, dict]:
    """Each allreduce row's model error (predicted / measured − 1) as the sum of two measured parts:

    - ``line``: (prediction − the same formula with each step's exchange *measured* at the
      row's message size) / measured — what drawing the link as two α-β lines costs;
    - ``steps``: (that step-measured prediction − measured) / measured — what the
      collective costs beyond its steps (scheduling of the two ranks, Python between
      messages, load that came and went).

    Also the three terms of the prediction (latency, bandwidth, reduction) in seconds."""
    out = {}
    for r in rows:
        if r["collective"] != "allreduce" or "predicted" not in r or r["bytes"] < min_bytes:
            continue
        t = r["t_med"]
        out[f"{r['variant']}/{r['bytes']}"] = {
            "measured": t, "predicted": r["predicted"], "total": r["predicted"] / t - 1,
            "line": (r["predicted"] - r["predicted_step_measured"]) / t,
            "steps": r["predicted_step_measured"] / t - 1, **r["model_terms"]}
    return out


def format_decomposition(decomposition: dict[str, dict]) -> str:
    """Markdown: the model's error per allreduce row, its terms, and its two parts."""
    lines = ["| allreduce | bytes | measured µs | model µs | α terms µs | β terms µs | γ terms µs | error | "
             "of it: line | of it: steps |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, d in decomposition.items():
        variant, nbytes = key.rsplit("/", 1)
        lines.append(f"| {variant} | {nbytes} | {1e6 * d['measured']:.0f} | {1e6 * d['predicted']:.0f} | "
                     f"{1e6 * d['latency']:.0f} | {1e6 * d['bandwidth']:.0f} | {1e6 * d['reduction']:.0f} | "
                     f"{d['total']:+.2f} | {d['line']:+.2f} | {d['steps']:+.2f} |")
    return "\n".join(lines)

if __name__ == "__main__":
    raise SystemExit(main())
