"""The cached, batched, retried generation loop every LLM step runs (the judge, the generator, translation).

A caller builds one :class:`Item` per prompt: a ``key`` that identifies it among the caller's items (the
judge: query and candidate), the rendered prompt, and its samples (each a top-p and a temperature). It
hands the items to a :class:`GenerationRunner` with a ``parse`` function that turns a generated text into
the caller's value, or ``None`` when the text cannot be used. The runner then

* draws every sample with its own seed, :func:`sample_seed` of (the step's namespace, the seed setting,
  the item's key, the sample's index, the attempt), so a sample never shares its random numbers with
  another item's sample and a rerun draws the same;
* passes an item's structured-output ``constraint`` (if any) with each of its requests and into its cache
  keys;
* takes a sample from the :class:`~boostmdr.llm.cache.GenerationCache` when its :func:`cache_key` is
  there, and otherwise asks the backend, ``batch_size`` prompts at a time, all missing samples of a
  prompt in one request (one prefill);
* writes each finished request to the cache as it arrives, so a killed job loses nothing that finished;
* retries a sample whose text does not parse with the next attempt's seed, ``retries`` times, and
  records every attempt (seed, raw text, whether it parsed, whether it came from the cache).

Token accounting per item (``prompt_tokens``, ``prefilled_tokens``, ``generated_tokens``) sums what the
backend reported for the requests the item made; samples taken from the cache cost nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from boostmdr.llm.base import Backend, BackendError, GenerationRequest, SamplingSettings
from boostmdr.llm.cache import GenerationCache, cache_key
from boostmdr.llm.constraint import Constraint

log = logging.getLogger(__name__)

Parse = Callable[[str], Any]
"""A generated text -> the caller's value, or ``None`` when the text cannot be used (then retried)."""


def parse_samples_spec(spec: str, setting: str = "--samples") -> list[tuple[float, float]]:
    """``"0.7:0.4,0.8:0.6"`` -> ``[(top_p, temperature), ...]``; errors name ``setting``."""
    out: list[tuple[float, float]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            top_p_s, temp_s = part.split(":")
            top_p, temp = float(top_p_s), float(temp_s)
        except ValueError:
            raise ValueError(f"{setting}: {part!r} is not 'top_p:temperature' (e.g. 0.9:0.7)") from None
        if not 0 < top_p <= 1 or temp < 0:
            raise ValueError(f"{setting}: {part!r} needs 0 < top_p <= 1 and temperature >= 0")
        out.append((top_p, temp))
    if not out:
        raise ValueError(f"{setting} is empty; give at least one top_p:temperature pair")
    return out


def format_samples_spec(samples: Sequence[Sequence[float]]) -> str:
    """``[(top_p, temperature), ...]`` -> ``"top_p:temperature,..."`` (the inverse of :func:`parse_samples_spec`)."""
    return ",".join(f"{top_p}:{temperature}" for top_p, temperature in samples)


def sample_seed(namespace: str, seed: int, key: str, sample: int, attempt: int) -> int:
    """The seed of one attempt of one sample of one item: stable across runs, distinct per item, sample
    and attempt. Seeds shared across items would make every item's k-th sample use the same random
    numbers, so where the model is unsure all items would get the same answer."""
    digest = hashlib.sha256(f"{namespace}:{seed}:{key}:{sample}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Sample:
    """One sample of an item: its sampling settings, every attempt made, and the parsed value (or ``None``)."""

    top_p: float
    temperature: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    parsed: Any = None


@dataclass
class Item:
    """One prompt and the samples wanted from it, filled in by :meth:`GenerationRunner.run`; ``constraint``
    is the structured output every sample must satisfy (``None``: free text)."""

    key: str
    prompt: str
    samples: list[Sample]
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    constraint: Constraint | None = None

    @classmethod
    def make(
        cls, key: str, prompt: str, samples: Sequence[Sequence[float]], constraint: Constraint | None = None
    ) -> Item:
        """An item with one sample per ``(top_p, temperature)`` pair."""
        return cls(key, prompt, [Sample(top_p, temperature) for top_p, temperature in samples], constraint=constraint)


@dataclass(frozen=True)
class RunnerSettings:
    """How the runner generates: new tokens per sample, retries of unparsed samples, the seed setting and
    the namespace that keeps one step's seeds apart from another's, and prompts per backend call."""

    max_new_tokens: int
    retries: int = 2
    seed: int = 0
    namespace: str = "generate"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.retries < 0 or self.batch_size < 1:
            raise ValueError("max_new_tokens >= 1, retries >= 0 and batch_size >= 1 are required")


class GenerationRunner:
    """Fills the samples of :class:`Item` objects from a cache and a backend (see the module doc)."""

    def __init__(
        self, backend: Backend, settings: RunnerSettings, parse: Parse, cache: GenerationCache | None = None
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.parse = parse
        self.cache = cache

    def run(self, items: Sequence[Item], desc: str = "generating") -> Counter[str]:
        """Generate (or take from the cache) every sample of ``items``, retrying unparsed ones. Returns
        counters: ``generated``, ``cached``, ``unparsed_samples`` (after retries), ``prompt_tokens`` (prompt
        tokens sent: each generated sample counts its whole prompt, as an API bills one call per sample),
        ``prefilled_tokens`` (prompt tokens the backend computed), ``generated_tokens``."""
        fingerprint = self.backend.fingerprint()
        s = self.settings
        self.backend.check_constraints({it.constraint for it in items})
        counts: Counter[str] = Counter()
        for attempt in range(s.retries + 1):
            todo: list[tuple[Item, int, SamplingSettings, str]] = []
            for item in items:
                for i, sample in enumerate(item.samples):
                    if sample.parsed is None and len(sample.attempts) == attempt:
                        ss = SamplingSettings(
                            sample.temperature,
                            sample.top_p,
                            s.max_new_tokens,
                            sample_seed(s.namespace, s.seed, item.key, i, attempt),
                        )
                        key = cache_key(
                            self.backend.NAME, fingerprint, item.prompt, sample.top_p, sample.temperature,
                            ss.max_tokens, ss.seed, item.constraint.key() if item.constraint is not None else None,
                        )
                        todo.append((item, i, ss, key))
            if not todo:
                break
            hits = self.cache.get_many(k for *_, k in todo) if self.cache is not None else {}
            requests: dict[int, list[tuple[int, SamplingSettings, str]]] = {}
            order: list[Item] = []
            for item, i, ss, key in todo:
                if key in hits:
                    self._record(item.samples[i], ss.seed, hits[key], cached=True)
                    counts["cached"] += 1
                else:
                    if id(item) not in requests:
                        requests[id(item)] = []
                        order.append(item)
                    requests[id(item)].append((i, ss, key))
            if attempt:
                log.info(
                    "retry %d: %d unparsed samples (%d from cache)",
                    attempt,
                    len(todo),
                    len(todo) - sum(map(len, requests.values())),
                )
            self._generate(order, requests, counts, desc=f"{desc} (attempt {attempt + 1})")
        for item in items:
            counts["unparsed_samples"] += sum(sample.parsed is None for sample in item.samples)
        return counts

    def _generate(
        self,
        order: list[Item],
        requests: dict[int, list[tuple[int, SamplingSettings, str]]],
        counts: Counter[str],
        desc: str,
    ) -> None:
        """Generate the missing samples of ``order`` in batches; commit each finished request."""
        from tqdm import tqdm

        backend = self.backend
        with tqdm(total=len(order), desc=desc, unit="prompt", disable=not order) as bar:
            for b in range(0, len(order), self.settings.batch_size):
                batch = order[b : b + self.settings.batch_size]
                reqs = [
                    GenerationRequest(it.prompt, tuple(ss for _, ss, _ in requests[id(it)]), it.constraint)
                    for it in batch
                ]
                for j, res in backend.iter_generate(reqs):
                    item = batch[j]
                    wanted = requests[id(item)]
                    if len(res.texts) != len(wanted):
                        raise BackendError(
                            f"{backend.NAME} backend returned {len(res.texts)} texts for {len(wanted)} samples"
                        )
                    share = len(wanted)
                    rows = []
                    for (i, ss, key), text in zip(wanted, res.texts):
                        self._record(item.samples[i], ss.seed, text, cached=False)
                        rows.append(
                            (key, text, res.prompt_tokens, res.generated_tokens // share, backend.NAME, backend.model_id)
                        )
                    if self.cache is not None:
                        self.cache.put_many(rows)
                    item.prompt_tokens += res.prompt_tokens
                    item.prefilled_tokens += res.prefilled_tokens
                    item.generated_tokens += res.generated_tokens
                    counts["generated"] += len(wanted)
                    counts["prompt_tokens"] += res.prompt_tokens * len(wanted)
                    counts["prefilled_tokens"] += res.prefilled_tokens
                    counts["generated_tokens"] += res.generated_tokens
                    bar.update(1)

    def _record(self, sample: Sample, seed: int, text: str, cached: bool) -> None:
        parsed = self.parse(text)
        sample.attempts.append({"seed": seed, "raw": text, "parsed": parsed is not None, "cached": cached})
        if parsed is not None:
            sample.parsed = parsed
