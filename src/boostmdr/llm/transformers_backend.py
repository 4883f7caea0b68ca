"""In-process generation with Hugging Face transformers (CPU or one GPU).

Each prompt is prefilled ONCE and all its samples are drawn from that one prefill. The prompts of one
``iter_generate`` call are decoded together, in micro-batches of consecutive requests with at most
``max_batch_rows`` rows (prompts x samples) in all: every forward pass has a fixed cost (Python, kernel
launches, reading the weights) that its rows share. ``max_batch_rows`` at most the samples of a request
decodes one prompt at a time. A micro-batch goes through three stages.

1. Shared prefix. The longest common token prefix of the micro-batch's prompts (the template header; for
   one query's candidates also the question) is prefilled once, in one row. Its cache is kept (a prefix
   cache of one entry, like vLLM's prefix caching): a later micro-batch that starts with the same tokens
   reuses those positions and prefills only the rest. A micro-batch of one prompt keeps the whole prompt.
   Keys and values of a causal model at a position depend only on the tokens up to it, so reuse is exact.
2. Suffixes. The prefix cache is repeated to one row per prompt and the rest of every prompt is prefilled
   in one forward pass, LEFT-padded to the longest rest, so that every row's last prompt token sits in the
   last column and its logits are that prompt's next-token logits. A row's cache is then
   ``[shared prefix][padding][own suffix][generated tokens]``: an explicit 2-D attention mask hides the
   padding slots (transformers expands it to a 4-D mask, holes included) and explicit position ids give
   every real token the position it has in its prompt alone. A row thus computes what it would compute
   unbatched, up to the last float bits of differently shaped matrix products.
3. Decoding. Each prompt's row is repeated to one row per sample and all rows are decoded together, each
   with its own temperature, top-p and random generator (seeded from the sample's seed, so a sample does
   not depend on its neighbours). Rows that reach the end-of-sequence token or their token limit leave
   the batch (cache, mask and positions alike); a request is yielded as soon as its last sample is done.
4. Drafts from finished samples (``draft_tokens``; 0 turns them off). A judge's samples are near copies
   of one another (``{"Information Accuracy": 2, "Information Completeness": 2}`` but for the digits), so
   one decoding step per token spends a whole forward pass, with its fixed cost, on a token that is almost
   certain. A row whose tokens so far begin a sample that already finished (in this micro-batch or an
   earlier one; the most recent distinct ones are kept) takes that sample's next tokens as a draft and
   feeds its pending token and the draft in ONE forward pass, which yields the logits at every drafted
   position. The row then samples position by position exactly as plain decoding would, each token with
   the next uniform number of its own generator (and the choice constraint where there is one): while the
   sampled token is the drafted one it is accepted and the next position's logits are already there; the
   first token that differs, or the one after a wholly accepted draft, is the row's new pending token.
   So a sample is the one plain decoding draws from the same logits (speculative decoding with a draft
   whose proposal is never sampled, so it needs no correction). Rows are right-padded to the longest
   draft of the step; the slots of rejected and padded tokens stay in the cache but are masked out, as
   the prefill's padding is. After a rejection a row's draft budget becomes twice what it accepted (none
   after a miss at the first drafted token), so free text, whose samples diverge at once, soon decodes
   token by token again; ``stats`` counts the drafted and the accepted tokens.

Sampling: greedy at temperature 0; otherwise the nucleus (top-p) is cut as a probability threshold and
one uniform number from the row's generator picks a token by inverse CDF, all rows in a few batched
tensor operations. A sample is reproducible from its seed for a given batch composition; another
composition changes the logits in their last float bits only (tested: within 1e-4, same texts on the
test model), which can flip a draw only at a near-tie. On CUDA that holds with ``attn_implementation``
``eager`` only: PyTorch's scaled-dot-product attention (transformers' default, ``sdpa``) is bitwise
deterministic in the prefill but not in the decoding steps (measured on an H200 with a random-weight
Llama: the same call made twice gave the same 16 prompts x 4 samples with ``eager``, and 3 or 4 of 16 with
``sdpa``, with its memory-efficient and flash kernels or without; greedy decoding too diverged once).
The workflow stays reproducible either way through its generation and verdict caches.

Structured output: a request with a ``choice`` constraint (:mod:`boostmdr.llm.constraint`) is decoded
under it. Each choice is tokenised on its own into a :class:`~boostmdr.llm.constraint.ChoiceTrie`; at every
step the row's logits outside the trie's next tokens are set to minus infinity (so temperature and top-p
act on the allowed tokens only), and the row ends as soon as it has written a whole choice. Other kinds
(regex, JSON schema) are refused: they need a grammar engine such as vLLM's.

Prompts are batched together only when they share at least their first token (always the case with a
BOS token or a common template), so every padding slot attends to a shared key: a query that attends to
no key at all makes SDPA return NaN on some GPUs, and the NaN spreads through ``0 * NaN``.

Token accounting: a request's ``prefilled_tokens`` are the prompt tokens computed for it. The shared
prefix of a micro-batch is charged to its first request and counted as reused by the others
(``extra["reused_prefix_tokens"]``), so the sum over requests is the number of prompt tokens computed.
Padding slots are computed too but are no prompt tokens: they are counted apart
(``extra["padding_tokens"]``, ``stats["padding_tokens"]``).

LoRA adapters: with ``adapter`` (a PEFT adapter directory, e.g. stage 2's MIFT adapter) the base model is
loaded, the adapter attached with ``peft`` and merged into the weights in memory, so decoding runs the plain
model; the cache fingerprint covers the base model and the adapter.

Limits: only ``temperature`` and ``top_p`` shape sampling; other generation-config settings of the model
(top-k, repetition penalty, ...) are not applied. The key/value cache grows with rows x (prompt + new
tokens): lower ``max_batch_rows`` for a large model on a small GPU. A sliding attention window counts
cache slots, padding and rejected drafted tokens included; with ``max_batch_rows`` at most the number of
samples per request and ``draft_tokens`` 0 there are none.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from boostmdr.llm.base import (
    Backend,
    BackendError,
    GenerationRequest,
    GenerationResult,
    SamplingSettings,
    common_prefix_length,
    local_model_fingerprint,
)
from boostmdr.llm.constraint import ChoiceTrie, Constraint

log = logging.getLogger(__name__)

PAD_ID = 0
"""Token id in padding slots: they are masked out, so any id of the vocabulary will do."""


@dataclass
class _Row:
    """One sample being decoded."""

    request: int
    """Index of its request in the micro-batch."""
    sample: int
    """Index of the sample in its request."""
    settings: SamplingSettings
    generator: Any
    tokens: list[int] = field(default_factory=list)
    trie: ChoiceTrie | None = None
    """The request's choice constraint, if any; ``node`` is where the row's tokens have led in it."""
    node: int = 0
    budget: int = 0
    """How many drafted tokens the row may feed in its next step (module docstring, stage 4)."""


@dataclass
class _Prefill:
    """A micro-batch's prompts after prefill: one row per prompt."""

    logits: Any
    """Next-token logits, (prompts, vocabulary), float32."""
    cache: Any
    attention_mask: Any
    """(prompts, cache slots); 0 on padding slots."""
    prefilled: list[int]
    """Per prompt: prompt tokens computed for it (the shared prefix counts for the first prompt)."""
    reused: list[int]
    """Per prompt: prompt tokens taken from the kept cache or from the shared prefix."""
    padding: list[int]
    """Per prompt: padding slots in its row."""


class TransformersBackend(Backend):
    NAME = "transformers"
    INSTALL_HINT = "pip install torch transformers (both are in the project's environment: `make install`)"
    REQUIRES = ("torch", "transformers")
    CONSTRAINTS = ("choice",)

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        share_prefix: bool = True,
        min_shared_prefix: int = 8,
        max_batch_rows: int = 64,
        adapter: str | None = None,
        attn_implementation: str | None = None,
        draft_tokens: int = 16,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if max_batch_rows < 1:
            raise ValueError(f"transformers backend: max_batch_rows must be >= 1, got {max_batch_rows}")
        if draft_tokens < 0:
            raise ValueError(f"transformers backend: draft_tokens must be >= 0, got {draft_tokens}")
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
            extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
            self.model = AutoModelForCausalLM.from_pretrained(self._model_name, dtype=torch_dtype, **extra)
        except OSError as err:
            raise BackendError(f"transformers backend: cannot load model {self._model_name!r} ({err})") from err
        self.adapter = str(adapter) if adapter else None
        if self.adapter:
            self.model = _merge_adapter(self.model, self.adapter)
        self.model.to(self.device).eval()
        self.skipped_mlps = len(skip_zero_mlps(self.model))
        if self.skipped_mlps:
            log.info("model %s: %d all-zero MLP blocks are not computed (each adds an exact 0)", model, self.skipped_mlps)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if not self.eos_ids:
            log.warning("model %s defines no end-of-sequence token: every sample runs to its token limit", model)
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self.share_prefix = share_prefix
        self.min_shared_prefix = max(1, min_shared_prefix)
        self.max_batch_rows = max_batch_rows
        self.draft_tokens = draft_tokens
        self._finished: list[tuple[int, ...]] = []
        """The most recent distinct finished samples (end-of-sequence token included), newest first: the drafts."""
        self._prefix: tuple[list[int], Any] | None = None
        self._fingerprint = local_model_fingerprint(self._model_name)
        if self.adapter:
            self._fingerprint = f"{self._fingerprint}+adapter:{local_model_fingerprint(self.adapter)}"
        self._tries: dict[Constraint, ChoiceTrie] = {}
        self.stats: Counter[str] = Counter()
        """prefill_calls, prefilled_tokens, reused_prefix_tokens, padding_tokens, decode_calls, decode_slots (token
        positions the decoding passes computed: rows x width, padding included), generated_tokens, drafted_tokens,
        accepted_draft_tokens."""

    @property
    def model_id(self) -> str:
        return self._model_name

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "device": str(self.device),
            "share_prefix": self.share_prefix,
            "max_batch_rows": self.max_batch_rows,
            "draft_tokens": self.draft_tokens,
            "attn_implementation": self.model.config._attn_implementation,
            **({"skipped_zero_mlps": self.skipped_mlps} if self.skipped_mlps else {}),
            **({"adapter": self.adapter} if self.adapter else {}),
        }

    def close(self) -> None:
        self._prefix = None
        self._finished = []

    # ------------------------------------------------------------------------------------ generation

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        # every prompt is checked before any is computed: a prompt over the context fails the call at once
        self.check_constraints(req.constraint for req in requests)
        prompts = [self._encode_checked(req) for req in requests]
        for batch in self._micro_batches(requests, prompts):
            yield from self._generate_batch(batch, [requests[i] for i in batch], [prompts[i] for i in batch])

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def _trie(self, constraint: Constraint | None) -> ChoiceTrie | None:
        """The token trie of a choice constraint (built once per distinct constraint)."""
        if constraint is None:
            return None
        if constraint not in self._tries:
            self._tries[constraint] = ChoiceTrie(
                [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in constraint.value]
            )
        return self._tries[constraint]

    def _encode_checked(self, req: GenerationRequest) -> list[int]:
        ids = self.encode(req.prompt)
        if not ids:
            raise BackendError("empty prompt: the tokenizer adds no BOS token, so there is nothing to condition on")
        longest = max(s.max_tokens for s in req.samples)
        trie = self._trie(req.constraint)
        if trie is not None and trie.longest > min(s.max_tokens for s in req.samples):
            raise BackendError(
                f"structured output: the longest allowed answer is {trie.longest} tokens but a sample may write only "
                f"{min(s.max_tokens for s in req.samples)}: raise the judge's --max-new-tokens"
            )
        if self.max_positions is not None and len(ids) + longest > self.max_positions:
            raise BackendError(
                f"prompt of {len(ids)} tokens + max_tokens {longest} exceeds the model's context "
                f"(max_position_embeddings={self.max_positions} in {self._model_name}/config.json): shorten the "
                "passages (judge --max-passage-words) or lower --max-new-tokens"
            )
        return ids

    def _micro_batches(self, requests: Sequence[GenerationRequest], prompts: list[list[int]]) -> Iterator[list[int]]:
        """Runs of consecutive request indices with at most ``max_batch_rows`` samples in all (a request
        with more samples goes alone). A prompt joins a run only if it has the run's first token and
        another after it, so the run's shared prefix has at least one token (see the module docstring)."""
        batch: list[int] = []
        rows = 0
        for i, (req, ids) in enumerate(zip(requests, prompts)):
            if batch:
                head = prompts[batch[0]]
                joins = (
                    rows + len(req.samples) <= self.max_batch_rows
                    and len(head) > 1
                    and len(ids) > 1
                    and ids[0] == head[0]
                )
                if not joins:
                    yield batch
                    batch, rows = [], 0
            batch.append(i)
            rows += len(req.samples)
        if batch:
            yield batch

    def _generate_batch(
        self, indices: list[int], requests: list[GenerationRequest], prompts: list[list[int]]
    ) -> Iterator[tuple[int, GenerationResult]]:
        """Decode one micro-batch; yield ``(indices[j], result)`` as request ``j``'s samples all finish.
        Model work runs under ``inference_mode`` step by step, never across a ``yield``: the mode is
        thread-local and would otherwise stay on in the caller's code."""
        torch = self._torch
        rows = [
            _Row(
                j, s, settings, torch.Generator(device=self.device).manual_seed(int(settings.seed)),
                trie=self._trie(req.constraint), budget=self.draft_tokens,
            )
            for j, req in enumerate(requests)
            for s, settings in enumerate(req.samples)
        ]
        with torch.inference_mode():
            pre = self._prefill(prompts)
            owner = torch.tensor([row.request for row in rows], device=self.device)
            cache = pre.cache
            cache.batch_select_indices(owner)  # one row per sample, a copy of its prompt's row
            mask = pre.attention_mask[owner]
            # the position of every row's next token fed (its pending token: sampled, not yet in the cache)
            positions = torch.tensor([len(prompts[row.request]) for row in rows], device=self.device)
            first = self._draw(pre.logits[owner], rows)
        finished: list[list[list[int]]] = [[[] for _ in req.samples] for req in requests]
        unfinished = [len(req.samples) for req in requests]
        alive = [self._take(row, token) for row, token in zip(rows, first)]
        while True:
            done: list[int] = []
            for row, on in zip(rows, alive):
                if not on:
                    finished[row.request][row.sample] = row.tokens
                    unfinished[row.request] -= 1
                    if not unfinished[row.request]:
                        done.append(row.request)
            for j in done:
                yield indices[j], self._result(finished[j], prompts[j], pre, j)
            keep = [j for j, on in enumerate(alive) if on]
            if not keep:
                return
            with torch.inference_mode():
                if len(keep) < len(rows):
                    kept = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(kept)
                    mask, positions = mask[kept], positions[kept]
                    rows = [rows[j] for j in keep]
                drafts = [self._draft(row) for row in rows]
                width = 1 + max(map(len, drafts))
                fed = [[row.tokens[-1], *d] + [PAD_ID] * (width - 1 - len(d)) for row, d in zip(rows, drafts)]
                step_mask = torch.tensor([[1] * (1 + len(d)) + [0] * (width - 1 - len(d)) for d in drafts])
                mask = torch.cat([mask, step_mask.to(mask)], dim=1)
                out = self.model(
                    input_ids=torch.tensor(fed, device=self.device),
                    attention_mask=mask,
                    position_ids=positions[:, None] + torch.arange(width, device=self.device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=width,
                )
                cache = out.past_key_values
                alive, accepted = self._verify(out.logits.float(), rows, drafts)
                # the slots of rejected (and padded) drafted tokens stay in the cache, masked out
                base = mask.shape[1] - width
                for j, n in enumerate(accepted):
                    mask[j, base + 1 + n :] = 0
                positions = positions + 1 + torch.tensor(accepted, device=self.device)
            self.stats["decode_calls"] += 1
            self.stats["decode_slots"] += len(rows) * width
            self.stats["drafted_tokens"] += sum(map(len, drafts))
            self.stats["accepted_draft_tokens"] += sum(accepted)

    def _verify(self, logits: Any, rows: list[_Row], drafts: list[list[int]]) -> tuple[list[bool], list[int]]:
        """Sample every row position by position from the logits of its pending token and drafted tokens
        (rows, width, vocabulary): a token equal to the drafted one is accepted and sampling goes on at
        the next position; any other token (or the one after a wholly accepted draft) is the row's new
        pending token. Returns, per row, whether it goes on and how many drafted tokens it accepted; the
        row's draft budget becomes twice that, at most ``draft_tokens`` (none after a first-token miss)."""
        alive = [True] * len(rows)
        accepted = [0] * len(rows)
        active = list(range(len(rows)))
        column = 0
        while active:
            index = self._torch.tensor(active, device=logits.device)
            tokens = self._draw(logits[index, column], [rows[j] for j in active])
            going = []
            for j, token in zip(active, tokens):
                alive[j] = self._take(rows[j], token)
                if alive[j] and column < len(drafts[j]) and token == drafts[j][column]:
                    accepted[j] += 1
                    going.append(j)
            active = going
            column += 1
        for row, draft, n in zip(rows, drafts, accepted):
            if draft and n < len(draft):
                row.budget = min(self.draft_tokens, 2 * n)
        return alive, accepted

    def _draw(self, logits: Any, rows: Sequence[_Row]) -> list[int]:
        """One token per row from its next-token logits (under its choice constraint, if any)."""
        if any(row.trie is not None for row in rows):
            logits = _restrict_to_choices(logits, rows, self._torch)
        return _sample_tokens(logits, rows, self._torch)

    def _take(self, row: _Row, token: int) -> bool:
        """Append a sampled token to its row; False when the row has finished (end-of-sequence token,
        token limit, or a whole choice written), and then its sample is kept as a draft."""
        if row.trie is not None:  # constrained: never EOS; ends with a whole choice
            row.tokens.append(token)
            row.node = row.trie.step(row.node, token)
            if not row.trie.complete(row.node) and len(row.tokens) < row.settings.max_tokens:
                return True
            ending: tuple[int, ...] = ()
        elif token not in self.eos_ids:
            row.tokens.append(token)
            if len(row.tokens) < row.settings.max_tokens:
                return True
            ending = ()
        else:
            ending = (token,)
        if self.draft_tokens:
            sample = (*row.tokens, *ending)
            self._finished = [sample, *(s for s in self._finished if s != sample)][:DRAFT_SAMPLES]
        return False

    def _draft(self, row: _Row) -> list[int]:
        """The row's draft: the next tokens of the newest finished sample that its tokens begin."""
        if not row.budget:
            return []
        n = len(row.tokens)
        mine = tuple(row.tokens)
        for sample in self._finished:
            if len(sample) > n and sample[:n] == mine:
                return list(sample[n : n + min(row.budget, row.settings.max_tokens - n + 1)])
        return []

    def _result(self, tokens: list[list[int]], prompt: list[int], pre: _Prefill, j: int) -> GenerationResult:
        n_generated = sum(len(t) for t in tokens)
        self.stats["generated_tokens"] += n_generated
        return GenerationResult(
            texts=[self.tokenizer.decode(t, skip_special_tokens=True) for t in tokens],
            prompt_tokens=len(prompt),
            prefilled_tokens=pre.prefilled[j],
            generated_tokens=n_generated,
            extra={"reused_prefix_tokens": pre.reused[j], "padding_tokens": pre.padding[j]},
        )

    def _prefill(self, prompts: list[list[int]]) -> _Prefill:
        """Prefill a micro-batch's prompts: the shared prefix once (or from the kept cache), then every
        prompt's rest in one left-padded pass (module docstring, stages 1 and 2)."""
        torch = self._torch
        n = len(prompts)
        # at least one token of every prompt is left for the second pass, which yields the logits
        shared = common_prefix_length(prompts, min(map(len, prompts)) - 1)
        cache, reused = self._reusable_prefix(prompts[0], shared)
        if cache is None:
            cache = self._new_cache()
        if n == 1:
            split = reused  # nothing to share within the batch: prefill the rest in the one pass below
        else:
            split = shared
            if reused < shared:
                out = self.model(
                    input_ids=torch.tensor([prompts[0][reused:shared]], device=self.device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                self.stats["prefill_calls"] += 1
                cache = out.past_key_values
                if self.share_prefix:
                    self._prefix = (prompts[0][:shared], copy.deepcopy(cache))
            cache.batch_repeat_interleave(n)
        suffixes = [ids[split:] for ids in prompts]
        width = max(map(len, suffixes))
        padding = [width - len(s) for s in suffixes]
        input_ids = [[PAD_ID] * pad + s for s, pad in zip(suffixes, padding)]
        mask = [[1] * split + [0] * pad + [1] * len(s) for s, pad in zip(suffixes, padding)]
        # a padding slot gets the position of the row's first real token; it is masked out anyway
        positions = [[split] * pad + list(range(split, split + len(s))) for s, pad in zip(suffixes, padding)]
        attention_mask = torch.tensor(mask, device=self.device)
        out = self.model(
            input_ids=torch.tensor(input_ids, device=self.device),
            attention_mask=attention_mask,
            position_ids=torch.tensor(positions, device=self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["prefill_calls"] += 1
        cache = out.past_key_values
        if n == 1 and self.share_prefix:
            self._prefix = (prompts[0], copy.deepcopy(cache))
        # the first request pays for the shared prefix, the others reuse it
        prefilled = [len(ids) - split for ids in prompts]
        prefilled[0] += split - reused
        reused_by = [reused] + [split] * (n - 1)
        self.stats["prefilled_tokens"] += sum(prefilled)
        self.stats["reused_prefix_tokens"] += sum(reused_by)
        self.stats["padding_tokens"] += sum(padding)
        return _Prefill(out.logits[:, -1, :].float(), cache, attention_mask, prefilled, reused_by, padding)

    def _new_cache(self) -> Any:
        """An empty cache of the model's layer types whose full-attention layers append into spare capacity
        (:func:`_growing_layer`); ``None`` (the model builds its own) where the model's cache cannot be
        built from its config."""
        try:
            from transformers.cache_utils import DynamicCache, DynamicLayer

            cache = DynamicCache(config=self.model.config)
        except (ImportError, TypeError, ValueError, AttributeError) as err:
            log.info("cache with spare capacity unavailable (%s); the model's own cache is used", err)
            return None
        cache.layers = [_growing_layer()() if type(layer) is DynamicLayer else layer for layer in cache.layers]
        return cache

    def _reusable_prefix(self, ids: list[int], limit: int) -> tuple[Any, int]:
        """A copy of the kept cache cut to the longest common token prefix with ``ids``, at most
        ``limit`` tokens long; ``(None, 0)`` when there is nothing worth reusing."""
        if self._prefix is None:
            return None, 0
        prev_ids, prev_cache = self._prefix
        common = common_prefix_length([prev_ids, ids], limit)
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


DRAFT_SAMPLES = 8
"""How many distinct finished samples are kept as drafts."""

GROW_TOKENS = 128
"""Least spare capacity a growing cache layer adds when it runs out (and at least a quarter of its length)."""


@functools.cache
def _growing_layer() -> type:
    """transformers' ``DynamicLayer`` with an ``update`` that writes the new tokens into spare capacity and
    returns views of the buffers, instead of concatenating: a decoding step copied the whole cache of every
    layer (``torch.cat``: a quarter of the tiny judge's time on one core), now it copies the new tokens only.
    The buffers are replaced, with the layer's tokens copied once, when they are full or when another
    operation (``batch_repeat_interleave``) has replaced the layer's tensors; a crop keeps them (the next
    tokens overwrite the cropped ones). ``batch_select_indices`` copies filled positions only (copying the
    whole buffers there was 18% of a demo judge job): when finished rows leave, the rows that stay move up
    within the buffers; when each prompt's row is repeated for its samples, it is broadcast into new buffers
    of the same capacity; any other selection copies the whole buffers. Values are those of the
    concatenation."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        spare: tuple[Any, Any] | None = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
                return super().update(key_states, value_states, *args, **kwargs)
            n, add = self.keys.shape[-2], key_states.shape[-2]
            spare = self.spare
            if (
                spare is None
                or n + add > spare[0].shape[-2]
                or not (_prefix_of(self.keys, spare[0]) and _prefix_of(self.values, spare[1]))
            ):
                capacity = n + add + max(GROW_TOKENS, (n + add) // 4)
                spare = self.spare = (_with_capacity(self.keys, capacity), _with_capacity(self.values, capacity))
            spare[0][..., n : n + add, :] = key_states
            spare[1][..., n : n + add, :] = value_states
            self.keys, self.values = spare[0][..., : n + add, :], spare[1][..., : n + add, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            spare = self.spare
            if spare is None or not (_prefix_of(self.keys, spare[0]) and _prefix_of(self.values, spare[1])):
                return super().batch_select_indices(indices)
            n = self.keys.shape[-2]
            selection = indices.tolist()
            runs = _compaction_runs(selection, spare[0].shape[0])
            if runs is not None:
                # finished rows leave: the rows after them move up within the buffers, their n filled
                # positions only (a new buffer would copy every row's whole capacity)
                for buffer in spare:
                    for dst, src, length in runs:
                        # blocks of at most the shift: no block overlaps its source, and a source is never a
                        # place written before it is read (the moves go up, in order)
                        shift = src - dst
                        for off in range(0, length, shift):
                            to, m = dst + off, min(shift, length - off)
                            buffer[to : to + m, ..., :n, :] = buffer[to + shift : to + shift + m, ..., :n, :]
                spare = self.spare = (spare[0][: len(selection)], spare[1][: len(selection)])
            elif all(a <= b for a, b in zip(selection, selection[1:])):
                # each prompt's row repeated for its samples: new buffers of the same capacity (so the same
                # strides), each source row broadcast into its copies, its n filled positions only
                grown = []
                for buffer in spare:
                    new = buffer.new_empty((len(selection), *buffer.shape[1:]))
                    for src, start, count in _repeat_runs(selection):
                        new[start : start + count, ..., :n, :] = buffer[src : src + 1, ..., :n, :]
                    grown.append(new)
                spare = self.spare = (grown[0], grown[1])
            else:
                # rows selected from the whole buffers: the copy keeps its spare capacity, so the next update
                # does not copy the rows a second time into a new buffer
                spare = self.spare = (spare[0][indices, ...], spare[1][indices, ...])
            self.keys, self.values = spare[0][..., :n, :], spare[1][..., :n, :]
            return None

    return GrowingLayer


def _compaction_runs(keep: list[int], rows: int) -> list[tuple[int, int, int]] | None:
    """The moves that compact ``rows`` rows to the strictly increasing ``keep``, as ``(destination,
    source, length)`` runs of consecutive rows that change place; ``None`` when ``keep`` is not such a
    subset (a repetition or a reordering: those need a new buffer)."""
    if any(b <= a for a, b in zip(keep, keep[1:])) or (keep and (keep[0] < 0 or keep[-1] >= rows)):
        return None
    runs: list[tuple[int, int, int]] = []
    for dst, src in enumerate(keep):
        if src == dst:
            continue
        if runs and runs[-1][0] + runs[-1][2] == dst and runs[-1][1] + runs[-1][2] == src:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((dst, src, 1))
    return runs


def _repeat_runs(selection: list[int]) -> list[tuple[int, int, int]]:
    """``(source, start, count)`` for every run of equal rows in ``selection``: row ``source`` goes to
    ``count`` consecutive places from ``start``."""
    runs: list[tuple[int, int, int]] = []
    for place, src in enumerate(selection):
        if runs and runs[-1][0] == src:
            runs[-1] = (src, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((src, place, 1))
    return runs


def _prefix_of(view: Any, buffer: Any) -> bool:
    """Whether ``view`` is ``buffer[..., :k, :]`` for some ``k``."""
    same_start = view.data_ptr() == buffer.data_ptr()
    return same_start and view.shape[:-2] == buffer.shape[:-2] and view.stride() == buffer.stride()


def _with_capacity(states: Any, capacity: int) -> Any:
    """A buffer of ``capacity`` positions (dimension -2) holding ``states`` in its first ones."""
    buffer = states.new_empty((*states.shape[:-2], capacity, states.shape[-1]))
    buffer[..., : states.shape[-2], :] = states
    return buffer


def skip_zero_mlps(model: Any, layers: int | None = None, frozen_only: bool = False) -> list[tuple[Any, Any]]:
    """Replace every decoder layer's MLP whose parameters are all zero by a module that returns an exact 0,
    and return the ``(layer, original MLP)`` pairs (put ``layer.mlp`` back to undo). Such a block adds 0 to
    the residual whatever its input (its output projection and bias are 0), so each layer's output is bit for
    bit the same, and its matrix products are saved. Trained models have none; the demo's tiny judge has
    three (:mod:`boostmdr.demo.tiny_circuit`: its fixed circuit layers are attention only), 45% of its
    prefill's and 28% of its decoding's matrix products (a demo judge job: 52.4 -> 45.9 s, the same
    verdicts). ``layers``: only the first that many layers; ``frozen_only``: only blocks without a trainable
    parameter (for fine-tuning). Models whose layers are not at ``model.model.layers`` with an ``mlp`` each
    (the Llama family's layout) are left as they are."""
    blocks = getattr(getattr(model, "model", None), "layers", None) or []
    skipped = []
    for layer in list(blocks)[:layers]:
        mlp = getattr(layer, "mlp", None)
        params = list(mlp.parameters()) if mlp is not None else []
        if not params or (frozen_only and any(p.requires_grad for p in params)):
            continue
        if not any(bool(p.detach().any()) for p in params):
            skipped.append((layer, mlp))
            layer.mlp = _zero_mlp_class()()
    return skipped


@functools.cache
def _zero_mlp_class() -> type:
    import torch

    class ZeroMLP(torch.nn.Module):
        """Stands in for an MLP whose weights are all zero: returns an exact 0, broadcast onto the residual."""

        def forward(self, hidden_states: Any) -> Any:
            return hidden_states.new_zeros(())

    return ZeroMLP


def _merge_adapter(model: Any, adapter: str) -> Any:
    """``model`` with the PEFT adapter in ``adapter`` merged into its weights (in memory)."""
    try:
        from peft import PeftModel
    except ImportError as err:
        raise BackendError("transformers backend: an adapter needs peft (pip install peft; in `make install`)") from err
    try:
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (OSError, ValueError) as err:
        raise BackendError(f"transformers backend: cannot load the LoRA adapter {adapter!r} ({err})") from err
def _restrict_to_choices(logits: Any, rows: Sequence[_Row], torch: Any) -> Any:
    """``logits`` with every token that does not continue a constrained row's choices set to minus infinity
    (unconstrained rows unchanged)."""
    out = logits.clone()
    for j, row in enumerate(rows):
        if row.trie is None:
            continue
        allowed = torch.tensor(row.trie.allowed(row.node), device=logits.device)
        kept = logits[j, allowed]
        out[j] = float("-inf")
        out[j, allowed] = kept
    return out


def _sample_tokens(logits: Any, rows: Sequence[_Row], torch: Any) -> list[int]:
    """One token per row of ``logits``: greedy at temperature 0, else nucleus sampling with the row's
    own temperature, top-p and generator. The arithmetic is batched but row-wise, and each draw takes
    one uniform number from its row's generator only, so a draw does not depend on the other rows."""
    tokens = torch.argmax(logits, dim=-1)
    sampled = [j for j, row in enumerate(rows) if row.settings.temperature > 0]
    if not sampled:
        return tokens.tolist()
    device = logits.device
    which = torch.tensor(sampled, device=device)
    temperature = torch.tensor([rows[j].settings.temperature for j in sampled], device=device)
    top_p = torch.tensor([rows[j].settings.top_p for j in sampled], device=device)
    probs = torch.softmax(logits[which] / temperature[:, None], dim=-1)
    # The nucleus: the smallest set of most likely tokens whose mass reaches top_p (always the first
    # one), and any token as likely as its least likely member; at top_p 1 every token, even where
    # rounding lets the cumulative sum reach 1 before the last one. It is kept as a probability
    # threshold, so only the sorted values are needed, never the sorting permutation.
    sorted_p = _sorted_descending(probs, torch)
    size = ((torch.cumsum(sorted_p, dim=-1) - sorted_p) < top_p[:, None]).sum(dim=-1)
    threshold = torch.where(top_p < 1.0, sorted_p.gather(1, (size - 1)[:, None]).squeeze(1), 0.0)
    kept = probs.masked_fill(probs < threshold[:, None], 0.0)
    # inverse-CDF draw in vocabulary order: one torch.rand per row is ~30x cheaper than one
    # torch.multinomial per row. right=True never lands on a zero-probability token, except when
    # uniform * total rounds up to the total: then take the last kept token (where the CDF first
    # reaches the total).
    cdf = torch.cumsum(kept, dim=-1)
    uniform = torch.cat([torch.rand(1, generator=rows[j].generator, device=device) for j in sampled])
    picks = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True)
    picks = torch.minimum(picks, torch.searchsorted(cdf, cdf[:, -1:].contiguous())).squeeze(1)
    tokens[which] = picks
    return tokens.tolist()


def _sorted_descending(probs: Any, torch: Any) -> Any:
    """Every row of ``probs`` sorted in descending order (values only). On CPU numpy's SIMD sort is
    about 6x faster than torch.sort, which also computes the permutation."""
    if probs.device.type != "cpu":
        return torch.sort(probs, dim=-1, descending=True).values
    import numpy as np

    return torch.from_numpy(-np.sort(-probs.numpy(), axis=-1))
