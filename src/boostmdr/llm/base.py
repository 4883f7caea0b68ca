"""The interface every LLM backend implements (judge and generator use the same one).

A :class:`GenerationRequest` is one prompt and the list of samples wanted from it, each with its own
:class:`SamplingSettings` (temperature, top-p, maximum new tokens, seed). A backend answers with one
:class:`GenerationResult` per request: one text per sample, in the order asked, plus token accounting:

* ``prompt_tokens``: length of the prompt in tokens;
* ``prefilled_tokens``: prompt tokens the backend actually computed for this request. A backend that
  prefills a prompt once and draws all its samples from that one prefill reports ``prompt_tokens`` (or
  fewer, when it reused a cached prefix); one that sends a full request per sample reports
  ``samples x prompt_tokens``;
* ``generated_tokens``: new tokens over all samples.

A request may carry a :class:`~boostmdr.llm.constraint.Constraint` (structured output): a backend enforces
the kinds it lists in ``CONSTRAINTS`` and refuses the others before generating anything.

Backends follow the provider pattern: a ``NAME``, an ``INSTALL_HINT`` naming what to install, a
class method :meth:`Backend.is_available` that imports nothing heavy at module import time, and
``iter_generate`` that yields ``(index, result)`` as each request finishes, so a caller can commit
finished work before the whole batch is done (a killed job then loses nothing that finished).
"""

from __future__ import annotations

import abc
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from boostmdr.llm.constraint import Constraint

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """A backend's library is not installed (the message says what to install)."""


class BackendError(RuntimeError):
    """A backend failed to answer (after any retries); the message names the setting or endpoint."""


@dataclass(frozen=True)
class SamplingSettings:
    """How one sample is drawn. ``temperature <= 0`` means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def to_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and the samples wanted from it (all drawn from the same prompt), optionally under a
    structured-output ``constraint`` that every sample must satisfy."""

    prompt: str
    samples: tuple[SamplingSettings, ...]
    constraint: Constraint | None = None

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a generation request needs at least one sample")


@dataclass
class GenerationResult:
    """One text per requested sample (same order) and what it cost."""

    texts: list[str]
    prompt_tokens: int
    prefilled_tokens: int
    generated_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """An LLM that turns :class:`GenerationRequest` objects into :class:`GenerationResult` objects."""

    NAME: ClassVar[str]
    INSTALL_HINT: ClassVar[str]
    REQUIRES: ClassVar[tuple[str, ...]] = ()
    """Importable modules the backend needs; :meth:`is_available` checks them without importing them."""
    CONSTRAINTS: ClassVar[tuple[str, ...]] = ()
    """Structured-output kinds (:data:`boostmdr.llm.constraint.KINDS`) the backend enforces."""

    @classmethod
    def is_available(cls) -> bool:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in cls.REQUIRES)

    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """The model as named in the settings (a path or a served model name)."""

    def fingerprint(self) -> str:
        """A string that changes when the model's weights change (part of every cache key)."""
        return self.model_id

    def describe(self) -> dict[str, Any]:
        """Settings safe to log and to write into output files (never a credential)."""
        return {"backend": self.NAME, "model": self.model_id}

    @abc.abstractmethod
    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield ``(index into requests, result)`` as each request finishes (any order)."""

    def check_constraints(self, constraints: Iterable[Constraint | None]) -> None:
        """Refuse, before any work, a constraint this backend cannot enforce (``None`` entries: free text)."""
        for constraint in constraints:
            if constraint is not None and constraint.kind not in self.CONSTRAINTS:
                raise BackendError(
                    f"{self.NAME} backend cannot enforce a {constraint.kind!r} constraint "
                    f"(it enforces {list(self.CONSTRAINTS) or 'none'})"
                )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """All results, in the order of ``requests``."""
        out: list[GenerationResult | None] = [None] * len(requests)
        for i, res in self.iter_generate(requests):
            out[i] = res
        missing = [i for i, r in enumerate(out) if r is None]
        if missing:
            raise BackendError(f"{self.NAME} backend returned no result for request(s) {missing[:5]}")
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Release the model, threads or connections (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def common_prefix_length(sequences: Sequence[Sequence[int]], limit: int | None = None) -> int:
    """Length of the longest token prefix shared by all ``sequences`` (at most ``limit``): the part of
    several prompts a causal model computes once."""
    first = sequences[0]
    bound = min(map(len, sequences))
    if limit is not None:
        bound = min(bound, limit)
    length = 0
    while length < bound and all(seq[length] == first[length] for seq in sequences):
        length += 1
    return length


MODEL_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "vocab.txt", "vocab.json", "merges.txt",
    "adapter_config.json",
)
"""Files of a model directory that decide what the model outputs, besides the weights (``*.safetensors``,
``*.bin``, ``*.model`` sentencepiece files, ``*.index.json`` shard maps)."""


def is_model_file(name: str) -> bool:
    return name in MODEL_FILES or name.endswith((".safetensors", ".bin", ".model", ".index.json"))


def local_model_fingerprint(model: str | os.PathLike, probe_bytes: int = 1 << 16) -> str:
    """Cheap identity of a local model directory: the name and size of every file that decides the model's
    outputs (weights, config, tokenizer: :func:`is_model_file`), and the first and last ``probe_bytes`` of
    each. Files that do not (a training summary with its timing, a README) are left out, so rebuilding a
    model with bitwise-identical weights keeps its identity; so does moving it (the path is not part of it).
    Retraining a model in place changes it; hashing the whole of a 140 GB checkpoint would not be cheap. A
    model that is not a local directory (a hub id, a served model name) is identified by its name."""
    path = Path(model)
    if not path.is_dir():
        return str(model)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and is_model_file(p.name)):
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(probe_bytes))
            if size > 2 * probe_bytes:
                fh.seek(size - probe_bytes)
                h.update(fh.read(probe_bytes))
    return f"local-sha256:{h.hexdigest()}"
