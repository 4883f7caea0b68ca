"""The command-line options of the LLM backends, shared by every step that runs an LLM.

:func:`add_backend_arguments` adds ``--backend``, ``--model`` and each backend's own options to a parser;
:func:`backend_settings` turns the parsed arguments into the keyword arguments of
:func:`boostmdr.llm.get_backend`. Each option has a config key of the same name with ``_`` for ``-``
(``judges.<name>.max_model_len`` is ``--max-model-len``), so everything that can change an output is
reachable from the config, and the workflow passes it through ``params`` (a change reruns what it affects).

Options that change outputs: ``--backend``, ``--model``, ``--dtype``, ``--attn-implementation`` (transformers:
``eager`` makes sampling on CUDA repeat bit for bit, ``sdpa`` does not), ``--max-model-len`` (vLLM's context),
``--endpoint`` (HTTP: completions or chat), ``--adapter`` (a LoRA adapter applied to the model; the
workflow passes it as a rule input, not from the config). Options that only change speed or robustness:
``--device``, ``--max-batch-rows``, ``--draft-tokens``, ``--tensor-parallel-size``, ``--gpu-memory-utilization``, ``--concurrency``,
``--timeout``, ``--max-retries``, and where the server is (``--base-url``) and which environment variable
holds its key (``--api-key-env``, a NAME: the key itself never appears on a command line).
"""

from __future__ import annotations

import argparse
from typing import Any

BACKEND_DEFAULTS: dict[str, Any] = {
    "device": "auto",
    "dtype": "auto",
    "max_batch_rows": 64,
    "draft_tokens": 16,
    "attn_implementation": None,
    "tensor_parallel_size": 1,
    "gpu_memory_utilization": 0.9,
    "max_model_len": None,
    "base_url": None,
    "api_key_env": "OPENAI_API_KEY",
    "endpoint": "completions",
    "concurrency": 4,
    "timeout": 120.0,
    "max_retries": 6,
}
"""Defaults of the backend options (the config schema's defaults equal these; a test checks it)."""


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--model`` and every backend's options (see the module doc)."""
    from boostmdr.llm import BACKENDS

    d = BACKEND_DEFAULTS
    parser.add_argument("--backend", choices=sorted(BACKENDS), required=True)
    parser.add_argument(
        "--model", required=True, help="model directory or hub id (transformers, vllm) or served model name (http)"
    )
    parser.add_argument(
        "--adapter", default=None, help="transformers/vllm: a PEFT LoRA adapter directory applied to --model"
    )
    parser.add_argument("--device", default=d["device"], help="transformers: cpu, cuda, auto")
    parser.add_argument("--dtype", default=d["dtype"], help="transformers/vllm: auto, float32, bfloat16, float16")
    parser.add_argument(
        "--max-batch-rows",
        type=int,
        default=d["max_batch_rows"],
        help="transformers: rows (prompts x samples) decoded together; at most one prompt's samples: one prompt at a time",
    )
    parser.add_argument(
        "--draft-tokens",
        type=int,
        default=d["draft_tokens"],
        help="transformers: tokens of a finished sample fed as a draft and verified in one forward pass (the same "
        "samples, fewer decoding steps for near-identical answers); 0 decodes token by token",
    )
    parser.add_argument(
        "--attn-implementation",
        choices=["sdpa", "eager"],
        default=d["attn_implementation"],
        help="transformers: attention kernels (default: the model's, sdpa where available; eager repeats sampling "
        "on CUDA bit for bit)",
    )
    parser.add_argument("--tensor-parallel-size", type=int, default=d["tensor_parallel_size"], help="vllm: GPUs per model")
    parser.add_argument("--gpu-memory-utilization", type=float, default=d["gpu_memory_utilization"], help="vllm")
    parser.add_argument("--max-model-len", type=int, default=d["max_model_len"], help="vllm: context length to reserve")
    parser.add_argument("--base-url", default=d["base_url"], help="http: e.g. http://127.0.0.1:8000/v1")
    parser.add_argument(
        "--api-key-env", default=d["api_key_env"], help="http: NAME of the environment variable holding the key"
    )
    parser.add_argument("--endpoint", choices=["completions", "chat"], default=d["endpoint"], help="http: API to call")
    parser.add_argument("--concurrency", type=int, default=d["concurrency"], help="http: requests in flight")
    parser.add_argument("--timeout", type=float, default=d["timeout"], help="http: seconds per request")
    parser.add_argument(
        "--max-retries", type=int, default=d["max_retries"], help="http: retries on 429/5xx/connection errors"
    )


def backend_settings(args: argparse.Namespace, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of :func:`boostmdr.llm.get_backend` for ``args.backend`` from the parsed options."""
    adapter = getattr(args, "adapter", None)
    if args.backend == "transformers":
        return {
            "model": args.model, "device": args.device, "dtype": args.dtype, "max_batch_rows": args.max_batch_rows,
            "draft_tokens": args.draft_tokens, "adapter": adapter, "attn_implementation": getattr(args, "attn_implementation", None),
        }  # fmt: skip
    if args.backend == "vllm":
        return {
            "adapter": adapter,
            "model": args.model,
            "tensor_parallel_size": args.tensor_parallel_size,
            "dtype": args.dtype,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_model_len": args.max_model_len,
            "seed": seed,
        }
    if not args.base_url:
        raise ValueError("--backend http needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    if adapter:
        raise ValueError(
            f"--adapter {adapter}: the http backend cannot apply a LoRA adapter; serve the merged model "
            "(python -m boostmdr.mift merge) and name it with --model, or use --backend transformers or vllm"
        )
    return {
        "model": args.model,
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "endpoint": args.endpoint,
        "concurrency": args.concurrency,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
    }
