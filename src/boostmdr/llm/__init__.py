"""LLM backends behind one interface (:mod:`boostmdr.llm.base`), chosen by name from a registry.

========================  ============================================  ==================================
name                      what it runs                                  needs
========================  ============================================  ==================================
``transformers``          the model in this process, CPU or GPU;        torch, transformers
                          one prefill per prompt, samples drawn from it
``vllm``                  the model in this process on GPUs, batched,   vllm (GPU environment,
                          prefix caching, tensor parallelism            requirements/vllm.txt)
``http``                  any OpenAI-compatible server (vLLM's,         httpx
                          ``transformers serve``, a hosted API)
========================  ============================================  ==================================

Backend modules are imported only when a backend is built, so asking for ``vllm`` on a machine without
it fails with :class:`BackendUnavailable` naming what to install, and never falls back to another
backend.

Everything else generic about running an LLM sits beside the backends, for every step that runs one (the
stage-1 judge, the stage-2 generator, translation): :mod:`~boostmdr.llm.prompt` (templates whose
placeholder names the caller declares), :mod:`~boostmdr.llm.cache` (the generation cache and its key),
:mod:`~boostmdr.llm.runner` (sample seeds and the cached, batched, retried generation loop, given a parse
function) and :mod:`~boostmdr.llm.options` (the backends' command-line options and their defaults).
"""

from __future__ import annotations

import importlib
from typing import Any

from boostmdr.llm.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    GenerationRequest,
    GenerationResult,
    SamplingSettings,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "GenerationRequest",
    "GenerationResult",
    "SamplingSettings",
    "backend_class",
    "get_backend",
]

BACKENDS: dict[str, str] = {
    "transformers": "boostmdr.llm.transformers_backend:TransformersBackend",
    "vllm": "boostmdr.llm.vllm_backend:VLLMBackend",
    "http": "boostmdr.llm.http_backend:HTTPBackend",
}
"""Backend name -> ``module:Class``. The modules themselves import their heavy libraries lazily."""


def backend_class(name: str) -> type[Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown LLM backend {name!r}; choose one of {sorted(BACKENDS)}") from None
    module, cls_name = target.split(":")
    return getattr(importlib.import_module(module), cls_name)


def get_backend(name: str, **settings: Any) -> Backend:
    """Build the backend ``name`` with its settings; raises :class:`BackendUnavailable` (with the
    package to install) when its library is missing."""
    cls = backend_class(name)
    if not cls.is_available():
        usable = [n for n in BACKENDS if backend_class(n).is_available()]
        raise BackendUnavailable(
            f"LLM backend {name!r} is not installed here: {cls.INSTALL_HINT}. "
            f"Backends usable in this environment: {usable}"
        )
    return cls(**settings)
