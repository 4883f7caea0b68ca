"""In-process generation with Hugging Face transformers (CPU or one GPU).

Each request's prompt is prefilled ONCE; its samples are drawn from that one prefill: the key/value
cache is repeated to one row per sample and decoded step by step, each row with its own temperature,
top-p and random generator (seeded from the sample's seed, so a sample does not depend on its
neighbours). Rows that reach the end-of-sequence token or their token limit leave the batch.

Shared prefixes: the cache of the previous prompt is kept; a new prompt that starts with the same
tokens (a query's candidates share the template header and the question) reuses those positions and
prefills only the rest, like vLLM's prefix caching with a cache of one entry. Keys and values of a
causal model at a position depend only on the tokens up to it, so the reuse is exact.

Only ``temperature`` and ``top_p`` shape sampling here; other generation-config settings of the model
(top-k, repetition penalty, ...) are not applied.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from boostmdr.llm.base import (
    Backend,
    BackendError,
    GenerationRequest,
    GenerationResult,
    SamplingSettings,
    local_model_fingerprint,
)

log = logging.getLogger(__name__)


class TransformersBackend(Backend):
    NAME = "transformers"
    INSTALL_HINT = "pip install torch transformers (both are in the project's environment: `make install`)"
    REQUIRES = ("torch", "transformers")

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        share_prefix: bool = True,
        min_shared_prefix: int = 8,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self._model_name = str(model)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        torch_dtype: Any = dtype if dtype == "auto" else getattr(torch, dtype, None)
        if torch_dtype is None:
            raise ValueError(f"transformers backend: unknown dtype {dtype!r} (use auto, float32, bfloat16, float16)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self._model_name)
            self.model = AutoModelForCausalLM.from_pretrained(self._model_name, dtype=torch_dtype)
        except OSError as err:
            raise BackendError(f"transformers backend: cannot load model {self._model_name!r} ({err})") from err
        self.model.to(self.device).eval()
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if not self.eos_ids:
            log.warning("model %s defines no end-of-sequence token: every sample runs to its token limit", model)
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self.share_prefix = share_prefix
        self.min_shared_prefix = max(1, min_shared_prefix)
        self._prefix: tuple[list[int], Any] | None = None
        self._fingerprint = local_model_fingerprint(self._model_name)
        self.stats: Counter[str] = Counter()
        """prefill_calls, prefilled_tokens, reused_prefix_tokens, decode_calls, generated_tokens."""

    @property
    def model_id(self) -> str:
        return self._model_name

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "share_prefix": self.share_prefix}

    def close(self) -> None:
        self._prefix = None

    # ------------------------------------------------------------------------------------ generation

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        for i, req in enumerate(requests):
            yield i, self._generate_one(req)

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def _generate_one(self, req: GenerationRequest) -> GenerationResult:
        torch = self._torch
        ids = self.encode(req.prompt)
        longest = max(s.max_tokens for s in req.samples)
        if self.max_positions is not None and len(ids) + longest > self.max_positions:
            raise BackendError(
                f"prompt of {len(ids)} tokens + max_tokens {longest} exceeds the model's context "
                f"(max_position_embeddings={self.max_positions} in {self._model_name}/config.json): shorten the "
                "passages (judge --max-passage-words) or lower --max-new-tokens"
            )
        with torch.inference_mode():
            cache, start = self._reusable_prefix(ids)
            out = self.model(
                input_ids=torch.tensor([ids[start:]], device=self.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            self.stats["prefill_calls"] += 1
            self.stats["prefilled_tokens"] += len(ids) - start
            self.stats["reused_prefix_tokens"] += start
            cache = out.past_key_values
            if self.share_prefix:
                self._prefix = (ids, copy.deepcopy(cache))
            texts, n_generated = self._decode(out.logits[:, -1, :], cache, req.samples)
        self.stats["generated_tokens"] += n_generated
        return GenerationResult(
            texts=texts,
            prompt_tokens=len(ids),
            prefilled_tokens=len(ids) - start,
            generated_tokens=n_generated,
            extra={"reused_prefix_tokens": start},
        )

    def _reusable_prefix(self, ids: list[int]) -> tuple[Any, int]:
        """A copy of the kept cache cut to the longest common token prefix with ``ids`` (at least one
        token is always left to prefill, to get the next-token logits)."""
        if self._prefix is None:
            return None, 0
        prev_ids, prev_cache = self._prefix
        limit = min(len(prev_ids), len(ids) - 1)
        common = 0
        while common < limit and prev_ids[common] == ids[common]:
            common += 1
        if common < self.min_shared_prefix:
            return None, 0
        layers = getattr(prev_cache, "layers", None)
        if layers is None or any(getattr(layer, "is_sliding", False) for layer in layers):
            # Sliding-window or recurrent caches cannot be cut back to an arbitrary length.
            log.info("model cache cannot be cut to a shared prefix; prefix sharing turned off")
            self.share_prefix = False
            self._prefix = None
            return None, 0
        cache = copy.deepcopy(prev_cache)
        if len(prev_ids) > common:
            cache.crop(-(len(prev_ids) - common))
        return cache, common

    def _decode(self, logits: Any, cache: Any, samples: Sequence[SamplingSettings]) -> tuple[list[str], int]:
        torch = self._torch
        k = len(samples)
        if k > 1:
            cache.batch_repeat_interleave(k)
        logits = logits.float().expand(k, -1)
        generators = [torch.Generator(device=self.device).manual_seed(int(s.seed)) for s in samples]
        tokens: list[list[int]] = [[] for _ in range(k)]
        alive = list(range(k))
        while True:
            nxt = [_sample_token(logits[j], samples[row], generators[row], torch) for j, row in enumerate(alive)]
            keep: list[int] = []
            for j, (row, tok) in enumerate(zip(alive, nxt)):
                if tok in self.eos_ids:
                    continue
                tokens[row].append(tok)
                if len(tokens[row]) < samples[row].max_tokens:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(alive):
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
            alive = [alive[j] for j in keep]
            step = torch.tensor([[nxt[j]] for j in keep], device=self.device)
            out = self.model(input_ids=step, past_key_values=cache, use_cache=True, logits_to_keep=1)
            self.stats["decode_calls"] += 1
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
        texts = [self.tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        return texts, sum(len(t) for t in tokens)


def _sample_token(logits: Any, s: SamplingSettings, generator: Any, torch: Any) -> int:
    """One token from one row of logits: greedy at temperature 0, else nucleus sampling."""
    if s.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # keep the smallest set of most likely tokens whose mass reaches top_p (always the first one)
        drop = (torch.cumsum(sorted_p, dim=-1) - sorted_p) >= s.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))
