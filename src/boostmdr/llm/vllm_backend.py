"""In-process vLLM on GPUs: the judge at paper scale.

vLLM pins its own torch and needs CUDA, so it lives in its own environment (``requirements/vllm.txt``),
never in the CPU venv; this module imports it only when the backend is built.

* **Batching**: every request of a call goes to one ``LLM.generate`` call; vLLM schedules them
  (continuous batching). The judge hands over ``--batch-size`` prompts at a time, so a killed job loses
  at most one batch.
* **Samples of a prompt**: the authors' four samples differ in temperature and top-p, which
  ``SamplingParams(n=...)`` cannot express, so each sample is its own entry in the batch with its own
  ``SamplingParams`` (temperature, top_p, max_tokens, seed), placed next to its siblings. With
  ``enable_prefix_caching=True`` the KV blocks of the shared prompt (and of the template header and the
  question shared by all candidates of a query) are computed once and reused; ``prefilled_tokens``
  reports what vLLM says it did not take from its cache (``num_cached_tokens``).
* **LoRA adapters**: with ``adapter`` (a PEFT adapter directory, e.g. stage 2's MIFT adapter) the engine
  starts with ``enable_lora`` and every request carries a ``LoRARequest`` for it (rank read from the
  adapter's ``adapter_config.json``); the cache fingerprint covers the adapter.
* **Structured output**: a request's constraint (:mod:`boostmdr.llm.constraint`: choice, regex or JSON
  schema) becomes ``SamplingParams(structured_outputs=StructuredOutputsParams(choice=... | regex=... |
  json=...))`` on each of its samples (vLLM >= 0.12 names it so; the ``guided_*`` fields are gone).
* **Parallelism**: ``tensor_parallel_size`` GPUs per model (70B-class judges need 4-8 A100s);
  ``gpu_memory_utilization`` and ``max_model_len`` bound the KV cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from boostmdr.llm.base import (
    Backend,
    GenerationRequest,
    GenerationResult,
    SamplingSettings,
    local_model_fingerprint,
)
from boostmdr.llm.constraint import Constraint

log = logging.getLogger(__name__)


def sampling_kwargs(s: SamplingSettings) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one sample."""
    return {"n": 1, "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens, "seed": s.seed}


def structured_outputs_kwargs(constraint: Constraint | None) -> dict[str, Any] | None:
    """Keyword arguments of ``vllm.sampling_params.StructuredOutputsParams`` for a constraint (``None``: free text)."""
    if constraint is None:
        return None
    if constraint.kind == "choice":
        return {"choice": list(constraint.value)}
    if constraint.kind == "regex":
        return {"regex": constraint.value}
    return {"json": constraint.schema}


def flatten(requests: Sequence[GenerationRequest]) -> tuple[list[str], list[SamplingSettings], list[tuple[int, int]]]:
    """One entry per (request, sample), siblings adjacent: prompts, settings, and (request, sample) owners."""
    prompts: list[str] = []
    settings: list[SamplingSettings] = []
    owners: list[tuple[int, int]] = []
    for i, req in enumerate(requests):
        for j, s in enumerate(req.samples):
            prompts.append(req.prompt)
            settings.append(s)
            owners.append((i, j))
    return prompts, settings, owners


def request_params(requests: Sequence[GenerationRequest]) -> list[dict[str, Any]]:
    """One ``SamplingParams`` keyword dict per entry of :func:`flatten`; a constrained request's entries
    carry ``structured_outputs`` as the keyword dict of ``StructuredOutputsParams``."""
    out = []
    for req in requests:
        structured = structured_outputs_kwargs(req.constraint)
        for s in req.samples:
            kw = sampling_kwargs(s)
            if structured is not None:
                kw["structured_outputs"] = structured
            out.append(kw)
    return out


def assemble(
    requests: Sequence[GenerationRequest],
    owners: Sequence[tuple[int, int]],
    outputs: Sequence[tuple[str, int, int, int]],
) -> list[GenerationResult]:
    """Group per-sample outputs ``(text, prompt tokens, cached prompt tokens, generated tokens)`` back
    into one result per request, texts in sample order."""
    if len(outputs) != len(owners):
        raise ValueError(f"{len(outputs)} outputs for {len(owners)} samples")
    texts: list[list[str | None]] = [[None] * len(r.samples) for r in requests]
    prompt_tokens = [0] * len(requests)
    prefilled = [0] * len(requests)
    generated = [0] * len(requests)
    for (i, j), (text, n_prompt, n_cached, n_gen) in zip(owners, outputs):
        texts[i][j] = text
        prompt_tokens[i] = max(prompt_tokens[i], n_prompt)
        prefilled[i] += n_prompt - n_cached
        generated[i] += n_gen
    results = []
    for i, t in enumerate(texts):
        if any(x is None for x in t):
            raise ValueError(f"request {i} is missing samples")
        results.append(GenerationResult([x for x in t if x is not None], prompt_tokens[i], prefilled[i], generated[i]))
    return results


class VLLMBackend(Backend):
    NAME = "vllm"
    INSTALL_HINT = (
        "vLLM needs a CUDA GPU and pins its own torch: create its environment "
        "(python3.11 -m venv .venv-vllm && .venv-vllm/bin/pip install -r requirements/vllm.txt && "
        ".venv-vllm/bin/pip install --no-deps -e .), or use --backend transformers / --backend http"
    )
    REQUIRES = ("vllm",)
    CONSTRAINTS = ("choice", "regex", "json")

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        adapter: str | None = None,
    ) -> None:
        import json
        from pathlib import Path

        from vllm import LLM, SamplingParams

        self._SamplingParams = SamplingParams
        self._model = str(model)
        kwargs: dict[str, Any] = {
            "model": self._model,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.adapter = str(adapter) if adapter else None
        self._lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            rank = json.loads((Path(self.adapter) / "adapter_config.json").read_text())["r"]
            kwargs.update(enable_lora=True, max_lora_rank=max(8, int(rank)), max_loras=1)
            self._lora = LoRARequest("adapter", 1, self.adapter)
        log.info("vllm backend: %s", kwargs)
        self.llm = LLM(**kwargs)
        self._fingerprint = local_model_fingerprint(self._model)
        if self.adapter:
            self._fingerprint = f"{self._fingerprint}+adapter:{local_model_fingerprint(self.adapter)}"
        self.tensor_parallel_size = tensor_parallel_size

    @property
    def model_id(self) -> str:
        return self._model

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        extra = {"adapter": self.adapter} if self.adapter else {}
        return {**super().describe(), "tensor_parallel_size": self.tensor_parallel_size, "prefix_caching": True, **extra}

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        self.check_constraints(req.constraint for req in requests)
        prompts, _, owners = flatten(requests)
        params = []
        for kw in request_params(requests):
            if "structured_outputs" in kw:
                from vllm.sampling_params import StructuredOutputsParams

                kw = {**kw, "structured_outputs": StructuredOutputsParams(**kw["structured_outputs"])}
            params.append(self._SamplingParams(**kw))
        outs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False, lora_request=self._lora)
        per_sample = [
            (
                o.outputs[0].text,
                len(o.prompt_token_ids or ()),
                int(getattr(o, "num_cached_tokens", 0) or 0),
                len(o.outputs[0].token_ids),
            )
            for o in outs
        ]
        yield from enumerate(assemble(requests, owners, per_sample))
