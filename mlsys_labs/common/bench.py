"""Benchmark helpers: warm-up, median of repeats, ratios against a peer measured in the
same run, and *figures* — a measured value beside its target — saved as JSON with a
fingerprint of the machine they came from.

A benchmark in ``benchmarks/`` typically does::

    cmp = compare(ours, peer, repeats=7)                  # interleaved, same run
    record_figure(lab=1, name="MLP train step: ours / PyTorch", value=cmp.ratio,
                  unit="x", target="<= 1.5", peer="PyTorch CPU", detail=cmp.as_dict())

``make lab-N`` prints the figures of lab N with pass/short against each target, and
``mlsys-labs report`` renders all of them into ``reports/``.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .paths import results_dir

_OPS = {
    "<=": lambda v, t: v <= t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    ">": lambda v, t: v > t,
}


# ----------------------------------------------------------------------------- timing
@dataclass
class Timing:
    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def _cuda_sync():
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.synchronize if torch.cuda.is_available() else None


def time_fn(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5,
            sync: Callable[[], object] | None = None) -> Timing:
    """Wall-clock seconds of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    sync = sync if sync is not None else (_cuda_sync() or (lambda: None))
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return Timing(times)


@dataclass
class Comparison:
    ours: Timing
    peer: Timing

    @property
    def ratio(self) -> float:
        """ours / peer in time: below 1 means ours is faster."""
        return self.ours.median / self.peer.median

    def as_dict(self) -> dict:
        return {"ours_median_s": self.ours.median, "peer_median_s": self.peer.median,
                "ours_times_s": self.ours.times, "peer_times_s": self.peer.times,
                "ratio_time": self.ratio}


def compare(ours: Callable[[], object], peer: Callable[[], object], *, warmup: int = 1,
            repeats: int = 5, sync: Callable[[], object] | None = None) -> Comparison:
    """Time ours and the peer alternately (so machine noise hits both alike)."""
    sync = sync if sync is not None else (_cuda_sync() or (lambda: None))
    for _ in range(warmup):
        ours()
        peer()
    a, b = [], []
    for i in range(repeats):
        pair = [(ours, a), (peer, b)] if i % 2 == 0 else [(peer, b), (ours, a)]
        for fn, sink in pair:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            sink.append(time.perf_counter() - t0)
    return Comparison(Timing(a), Timing(b))


# ---------------------------------------------------------------------- the machine
def machine_fingerprint() -> dict:
    """What the figures were measured on: CPU model and cores, memory, GPU, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info = {"cpu": cpu, "cores": cores, "memory_gib": mem_gib, "gpu": None,
            "python": platform.python_version(), "platform": platform.platform()}
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def machine_name(info: dict | None = None) -> str:
    """A short human name: the GPU's when there is one, else 'CPU model, N cores'."""
    info = info or machine_fingerprint()
    if info.get("gpu"):
        return info["gpu"]
    return f"{info['cpu']}, {info['cores']} cores"


def machine_slug(info: dict | None = None) -> str:
    info = info or machine_fingerprint()
    name = info["gpu"] if info.get("gpu") else f"cpu-{info['cpu']}-{info['cores']}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---------------------------------------------------------------------------- figures
@dataclass
class Figure:
    """One measured number beside its target, e.g. ``value=0.8, unit='x', target='<= 1.5'``."""

    lab: int
    name: str
    value: float
    unit: str = ""
    target: str | None = None
    peer: str | None = None
    detail: dict = field(default_factory=dict)
    measured_at: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool | None:
        if not self.target:
            return None
        op, threshold = parse_target(self.target)
        return _OPS[op](self.value, threshold)


def parse_target(target: str) -> tuple[str, float]:
    m = re.fullmatch(r"\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", target)
    if not m:
        raise ValueError(f"target must look like '<= 1.5' or '>= 0.6', got {target!r}")
    return m.group(1), float(m.group(2))


def results_path(info: dict | None = None) -> Path:
    return results_dir() / f"{machine_slug(info)}.json"


def load_results(path: Path | None = None) -> dict:
    path = path or results_path()
    if not path.exists():
        return {"machine": machine_fingerprint(), "labs": {}}
    return json.loads(path.read_text())


def record_figure(lab: int, name: str, value: float, *, unit: str = "", target: str | None = None,
                  peer: str | None = None, detail: dict | None = None) -> Figure:
    """Save a figure into this machine's results file (replacing one of the same name)."""
    if target is not None:
        parse_target(target)
    fig = Figure(lab=lab, name=name, value=float(value), unit=unit, target=target, peer=peer,
                 detail=detail or {})
    info = machine_fingerprint()
    path = results_path(info)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load_results(path)
        data["machine"] = info
        data.setdefault("labs", {}).setdefault(str(lab), {})[name] = asdict(fig)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    return fig


def figures_for(lab: int, path: Path | None = None) -> list[Figure]:
    data = load_results(path)
    rows = data.get("labs", {}).get(str(lab), {})
    return [Figure(**row) for row in rows.values()]


def format_figures(figures: list[Figure], machine: str | None = None) -> str:
    """A Markdown table: figure, value, target, pass/short."""
    lines = []
    if machine:
        lines.append(f"Measured on: {machine}\n")
    lines.append("| figure | value | target | peer | verdict |")
    lines.append("|---|---|---|---|---|")
    for f in figures:
        verdict = {True: "pass", False: "short", None: "(no target)"}[f.passed]
        lines.append(f"| {f.name} | {f.value:.4g} {f.unit} | {f.target or ''} | {f.peer or ''} | {verdict} |")
    return "\n".join(lines)
