"""Compile every Triton kernel of the lab for a real GPU — without a GPU.

The interpreter runs kernels as numpy code, so it accepts things a GPU compiler rejects
(``tl.dot`` tiles under 16, loop-carried values that change type, shared memory beyond the
card's).  Triton can still compile ahead of time for a named target: this script builds
each kernel for NVIDIA sm_90 (H100) with the block sizes the launchers use on a GPU, and
reports the shared memory each needs.  It needs Triton's bundled ``ptxas``, not a GPU::

    python -m mlsys_labs.kernels.compile_check            # representative dtypes/head dims
    python -m mlsys_labs.kernels.compile_check --all      # every dtype × head dim × mask × config
    python -m mlsys_labs.kernels.compile_check --arch 80  # A100

Triton must be imported with the interpreter off; when it was already imported interpreted
(``import mlsys_labs.kernels`` switches it on where there is no GPU), the check re-runs itself
in a fresh process.
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass


# Largest shared memory one block may use (opt-in), by compute capability: a config above it
# compiles but fails to launch (the autotuner skips it; a fixed config must stay below).
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}


def _modules():
    import mlsys_labs.kernels  # noqa: F401

    names = ["vector_add", "softmax", "online_softmax", "flash_attention", "int8_matmul", "rmsnorm", "rope"]
    return {n: sys.modules[f"mlsys_labs.kernels.{n}"] for n in names}


@dataclass
class Builds:
    """Ahead-of-time builds for one GPU target, counted as they go."""
    arch: int
    ok: int = 0
    failed: int = 0

    def check(self, name, kernel, signature, constexprs, num_warps=4, num_stages=3) -> None:
        """Compile ``kernel`` for sm_<arch>; print its shared memory (or why it failed)."""
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        sig = {n: ("constexpr" if n in constexprs else signature[n]) for n in kernel.arg_names}
        t0 = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(kernel, sig, constexprs), target=GPUTarget("cuda", self.arch, 32),
                                      options=dict(num_warps=num_warps, num_stages=num_stages))
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {str(e)[:800]}")
            return
        smem, limit = compiled.metadata.shared, SMEM_LIMIT.get(self.arch)
        note = f"  > {limit} B: cannot launch on sm_{self.arch}" if limit and smem > limit else ""
        self.ok += 1
        print(f"ok   {name:<72} smem {smem:>6} B  ({time.perf_counter() - t0:.1f} s){note}")


def _row_kernels(b: Builds, m: dict, float_dtypes) -> None:
    """Vector add, the two softmaxes, RMSNorm and RoPE in each dtype."""
    for dt in float_dtypes:
        rows = {"out_ptr": f"*{dt}", "in_ptr": f"*{dt}", "in_row_stride": "i32", "out_row_stride": "i32", "n_cols": "i32"}
        b.check(f"vector add {dt}", m["vector_add"].add_kernel,
                {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "out_ptr": f"*{dt}", "n_elements": "i32"}, {"BLOCK_SIZE": 1024})
        b.check(f"softmax {dt} (row of 4096)", m["softmax"].softmax_kernel, rows, {"BLOCK_SIZE": 4096}, num_warps=8)
        b.check(f"online softmax {dt}", m["online_softmax"].online_softmax_kernel, rows, {"BLOCK_SIZE": 1024})
        b.check(f"rmsnorm {dt} (row of 8192)", m["rmsnorm"].rmsnorm_kernel,
                {"X": f"*{dt}", "W": f"*{dt}", "Y": f"*{dt}", "x_row_stride": "i32", "y_row_stride": "i32",
                 "n_cols": "i32", "eps": "fp32"}, {"BLOCK_SIZE": 8192}, num_warps=8)
        b.check(f"rope {dt} d=128", m["rope"].rope_kernel,
                {"Q": f"*{dt}", "K": f"*{dt}", "QO": f"*{dt}", "KO": f"*{dt}", "COS": "*fp32", "SIN": "*fp32",
                 "POS": "*i32", "N_CTX": "i32"}, {"HALF": 64, "BLOCK_N": 16})


def _attention(b: Builds, fa, float_dtypes, every: bool) -> None:
    """The three FlashAttention kernels: fixed GPU blocks, and (``every``, or bf16 d=128) the autotune set."""
    import torch

    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    pointers = {"fwd": "Q K V O LSE", "dkdv": "Q K V DO LSE DELTA DK DV", "dq": "Q K V DO LSE DELTA DQ"}
    head_dims = fa.SUPPORTED_HEAD_DIMS if every else (64, 128)
    for dt, d, causal in itertools.product(float_dtypes, head_dims, (False, True)):
        if dt == "fp32" and d == 128 and not every:
            continue  # slow to build (IEEE fp32 dots), and no test uses it on a GPU
        for which, names in pointers.items():
            kernel, configs, _ = fa._KERNELS[which]
            sig = {n: ("*fp32" if n in ("LSE", "DELTA") else f"*{dt}") for n in names.split()}
            sig |= {"sm_scale": "fp32", "H": "i32", "N_CTX": "i32"}
            sig |= {n: "i32" for n in kernel.arg_names if n.startswith("stride_")}
            fixed = fa.gpu_blocks(which, d, torch_dtype[dt])
            variants = [({k: fixed[k] for k in ("BLOCK_M", "BLOCK_N")}, fixed["num_warps"], fixed["num_stages"])]
            if every or (dt == "bf16" and d == 128):  # the benchmarks' autotune set
                variants += [(c.kwargs, c.num_warps, c.num_stages) for c in configs]
            for blocks, warps, stages in variants:
                b.check(f"attention {which} {dt} d={d} {'causal' if causal else 'full'} {blocks} w{warps} s{stages}",
                        kernel, sig, {"HEAD_DIM": d, "CAUSAL": causal,
                                      "DOT_PRECISION": "ieee" if dt == "fp32" else "tf32", **blocks},
                        num_warps=warps, num_stages=stages)


def _int8(b: Builds, im) -> None:
    """The int8 GEMM: int32 out, bf16 out with dequant + bias, and its autotune set."""
    sig = {"A": "*i8", "B": "*i8", "C": "*bf16", "A_SCALE": "*fp32", "B_SCALE": "*fp32", "BIAS": "*bf16",
           "M": "i32", "N": "i32", "K": "i32", "stride_am": "i32", "stride_ak": "i32", "stride_bn": "i32",
           "stride_bk": "i32", "stride_cm": "i32", "stride_cn": "i32"}
    fixed = dict(im.GPU_BLOCKS)
    warps, stages = fixed.pop("num_warps"), fixed.pop("num_stages")
    b.check("int8 GEMM → int32", im.int8_matmul_kernel, sig | {"C": "*i32"},
            {"DEQUANT": False, "HAS_BIAS": False, **fixed}, num_warps=warps, num_stages=stages)
    b.check("int8 GEMM → bf16, dequant + bias", im.int8_matmul_kernel, sig,
            {"DEQUANT": True, "HAS_BIAS": True, **fixed}, num_warps=warps, num_stages=stages)
    for c in im.CONFIGS:
        b.check(f"int8 GEMM autotune config {c.kwargs} w{c.num_warps} s{c.num_stages}", im.int8_matmul_kernel, sig,
                {"DEQUANT": True, "HAS_BIAS": False, **c.kwargs}, num_warps=c.num_warps, num_stages=c.num_stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability ×10 (90 = H100)")
    parser.add_argument("--all", action="store_true", help="every dtype, head dim, mask and autotune config")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":  # Triton is (or will be) interpreted here: start afresh
        from mlsys_labs.common.paths import state_dir

        env = dict(os.environ, TRITON_INTERPRET="0")
        env.setdefault("TRITON_CACHE_DIR", str(state_dir("triton-cache")))  # not the user's home
        return subprocess.call([sys.executable, "-m", "mlsys_labs.kernels.plumbing.compile_check", *argv], env=env)
    m = _modules()
    builds = Builds(args.arch)
    float_dtypes = ["fp16", "bf16", "fp32"] if args.all else ["bf16", "fp32"]
    _row_kernels(builds, m, float_dtypes)
    _attention(builds, m["flash_attention"], float_dtypes, args.all)
    _int8(builds, m["int8_matmul"])
    print(f"\n{builds.ok} kernels compiled for sm_{args.arch}, {builds.failed} failed")
    return 1 if builds.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
