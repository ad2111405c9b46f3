"""The seven labs: lab N covers batch N of the readings (the roster in the root README).

Each entry says what the lab builds, which readings it maps to, what it is measured
against and its targets; ``demo`` names the function ``mlsys-labs run N`` calls after
the graded tests and benchmarks (it trains, plots, or starts the system end to end).
"""
from __future__ import annotations

from dataclasses import dataclass

from .common.paths import labs_dir


@dataclass(frozen=True)
class Lab:
    number: int
    package: str
    topic: str
    readings: str
    builds: str
    peer: str
    targets: str
    demo: str | None = None  # "module:function", called with a list of extra CLI arguments
    extra_packages: tuple[str, ...] = ()  # other subpackages of mlsys_labs that belong to this lab

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.package,) + self.extra_packages

    @property
    def tests_dir(self):
        return labs_dir() / f"batch{self.number}"   # lab N reads batch N of the plan

    @property
    def present(self) -> bool:
        """True once the lab's graded tests exist in this checkout."""
        d = self.tests_dir
        return d.is_dir() and any(d.glob("test_*.py"))

    @property
    def benchmark_files(self):
        from .common.paths import project_root

        return sorted((project_root() / "benchmarks").glob(f"test_lab{self.number}_*.py"))


LABS: dict[int, Lab] = {lab.number: lab for lab in [
    Lab(1, "nn", "NN from scratch; the memory mountain",
        "D2L ch. 1–14; NNFS ch. 1–22; Math & Architectures of DL ch. 1–14; CS:APP ch. 1–6",
        "reverse-mode autograd on numpy, MLP/CNN/Transformer block, SGD/Adam/AdamW; CS:APP's memory mountain in numba",
        "PyTorch CPU", "MLP and CNN train steps ≤ 1.5× PyTorch's time; MLP ≥ 97%, CNN ≥ 98% on digits",
        demo="mlsys_labs.nn.plumbing.demo:main", extra_packages=("memory",)),
    Lab(2, "matmul", "Cache-aware matrix multiplication",
        "CS:APP ch. 7–9; Engineering a Compiler ch. 1–6; Art of HPC vol. 1; Parallel & HPC parts 1–2",
        "naive → loop order → blocking → packed register-blocked micro-kernel → threads; autotuner; roofline; cache simulator",
        "numpy's BLAS", "packed 1-thread ≥ 75% of BLAS (n=960 fp32); 2 threads ≥ 1.6×",
        demo="mlsys_labs.matmul.plumbing.demo:main"),
    Lab(3, "collectives", "MPI collectives from point-to-point",
        "Art of HPC vol. 2 (MPI); Thakur, Rabenseifner & Gropp 2005; Chan et al. 2007",
        "barrier, bcast, reduce, allreduce (recursive doubling, ring, Rabenseifner), reduce-scatter, allgather, alltoall; α-β-γ cost model; data-parallel SGD",
        "the MPI library's own collectives", "ring allreduce ≤ 1.3× built-in at ≥ 4 MiB (p=2); model within ±30% at ≥ 64 KiB",
        demo="mlsys_labs.collectives.plumbing.demo:main"),
    Lab(4, "kernels", "GPU kernels in Triton and Numba CUDA",
        "FlashAttention; online softmax (Milakov & Gimelshein); SmoothQuant; ZeroQuant; LLM.int8(); RoFormer; PMPP; CUDA by Example; MLC",
        "Triton softmax, FlashAttention-2 fwd/bwd, W8A8 int8 matmul, RMSNorm, RoPE; Numba CUDA tiled matmul and reduction",
        "torch.softmax, SDPA (flash), torch.matmul / _int_mm", "softmax ≥ 1.0× torch; attention fwd ≥ 1.0×, bwd ≥ 0.7× SDPA; int8 ≥ 1.3× bf16 (GPU)",
        demo="mlsys_labs.kernels.plumbing.demo:main"),
    Lab(5, "serving", "An LLM inference server",
        "PagedAttention (vLLM); Orca; online softmax; LLM.int8(); AWQ; SpecInfer; StreamingLLM; FlashDecoding++",
        "paged KV cache, continuous batching, prefix caching, preemption, speculative decoding, OpenAI-compatible HTTP server",
        "Hugging Face transformers generate", "≥ 2× transformers' static batching (tokens/s); KV waste < 5%; prefix cache −80% prefill",
        demo="mlsys_labs.serving.plumbing.demo:main"),
    Lab(6, "zero", "ZeRO sharded data-parallel training",
        "ZeRO (Rajbhandari et al. 2020); Distributed ML ch. 1–5; CRAMMING; PETALS; Art of HPC vol. 2",
        "DDP with bucketed overlapped allreduce, ZeRO stages 1–3, mixed precision, resharding checkpoints",
        "PyTorch ZeroRedundancyOptimizer, FSDP2", "memory and bytes sent equal the ZeRO formulas; step time ≤ 1.2× PyTorch's",
        demo="mlsys_labs.zero.plumbing.demo:main"),
    Lab(7, "federated", "Federated learning on Flower",
        "Federated Learning Systems ch. 5–8; FedAvg (McMahan et al. 2017); FedProx (Li et al. 2020); Desktop Grid Computing",
        "FedAvg/FedProx/FedAdam on IID and non-IID clients, stragglers, DP clipping+noise; simulation and SuperLink/SuperNodes",
        "centralized training", "IID FedAvg within 2 points of centralized; FedProx ≥ FedAvg with 50% stragglers",
        demo="mlsys_labs.federated.plumbing.demo:main"),
]}


def get_lab(number: int) -> Lab:
    if number not in LABS:
        raise KeyError(f"unknown lab {number}: labs are numbered 1–{max(LABS)}")
    return LABS[number]


def lab_of_package(package: str) -> Lab | None:
    """The lab a subpackage of mlsys_labs belongs to (None for shared infrastructure)."""
    for lab in LABS.values():
        if package in lab.packages:
            return lab
    return None


def present_labs() -> list[Lab]:
    return [lab for lab in LABS.values() if lab.present]
