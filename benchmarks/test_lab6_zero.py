"""Lab 6: our stage 1 against ZeroRedundancyOptimizer and our stage 3 against FSDP2, at 2 ranks
(gloo, CPU), in the same processes (``mlsys_labs.zero.plumbing.peers``); plus our memory and bytes sent
per step against the ZeRO formulas.  A ratio counts only if both sides trained to the same loss
over the first steps (recorded as ``same_loss`` in the figure's detail).

The model is the demo's small GPT (d_model 128, 2 blocks, 64 characters, global batch 16,
Ψ ≈ 0.42 M) — the issue's sizes shrunk to fit a 2-core machine.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsys_labs.common.bench import record_figure
from mlsys_labs.zero.plumbing import torchrun

ROOT = Path(__file__).resolve().parents[1]


def _launch(nproc: int, out: Path, extra: list[str], timeout: float = 540) -> dict:
    done = torchrun(nproc, ["-m", "mlsys_labs.zero.plumbing.peers", str(out), *extra], timeout=timeout)
    assert done.returncode == 0 and out.exists(), f"peers run failed ({done.returncode}):\n{done.stdout[-4000:]}"
    return json.loads(out.read_text())


def _record(report: dict, where: str) -> None:
    for stage, pair in report["pairs"].items():
        detail = dict(pair, world=report["world"], device=report["device"], config=report["config"])
        if pair["same_loss"]:
            record_figure(lab=6, name=f"{stage} step time: ours / {pair['peer']} ({where})", value=pair["ratio"],
                          unit="x", target="<= 1.2", peer=f"PyTorch {pair['peer']}", detail=detail)
        else:
            record_figure(lab=6, name=f"{stage} step time: ours / {pair['peer']} ({where}) — LOSSES DIFFER, not timed",
                          value=float("nan"), unit="x", target="<= 1.2", peer=f"PyTorch {pair['peer']}", detail=detail)
        record_figure(lab=6, name=f"{stage} model-state bytes per rank: ours / {pair['peer']} ({where})",
                      value=pair["ours_state_bytes"] / pair["peer_state_bytes"], unit="x",
                      peer=f"PyTorch {pair['peer']}", detail=detail)
    for stage, f in report["formulas"].items():
        record_figure(lab=6, name=f"{stage} model-state bytes per rank / ZeRO formula ({where})",
                      value=f["state_bytes"] / f["state_formula"], unit="x", target="<= 1.01", detail=f)
        record_figure(lab=6, name=f"{stage} bytes sent per step / ZeRO formula ({where})",
                      value=f["sent_bytes"] / f["sent_formula"], unit="x", target="<= 1.01", detail=f)


def test_zero_vs_pytorch_cpu_2_ranks(benchmark, tmp_path):
    out = tmp_path / "peers.json"
    report = benchmark.pedantic(lambda: _launch(2, out, []), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in report["pairs"].items()})
    _record(report, "2 ranks, gloo CPU")


@pytest.mark.gpu
def test_zero_vs_pytorch_cuda_1_rank(benchmark, tmp_path):
    """On one GPU (NCCL at world size 1): step time against the same peers, and memory figures
    (``torch.cuda.max_memory_allocated``) in the detail."""
    out = tmp_path / "peers_cuda.json"
    report = benchmark.pedantic(lambda: _launch(1, out, ["--device", "cuda"]), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in report["pairs"].items()})
    _record(report, "1 GPU, NCCL")
