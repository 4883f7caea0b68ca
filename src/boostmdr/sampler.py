"""Batch composition for contrastive fine-tuning: which queries train together, and with what weights.

The trainer consumes two small interfaces, and nothing else decides batches:

* a :class:`BatchSampler` yields *global* batches (lists of dataset indices; under ``torchrun`` each
  process takes its contiguous slice). It is deterministic given its seed and the epoch set by
  :meth:`~BatchSampler.set_epoch`, so a resumed run rebuilds an epoch and skips the batches it already did;
* an optional :class:`WeightProvider` maps a batch (its groups: query ids, languages, passage docids in
  loss order) to :class:`BatchWeights` for :func:`boostmdr.loss.contrastive_loss`.

The default, :class:`ShuffledBatchSampler`, shuffles all queries across languages (what the authors' code
and Tevatron do) with no weights. Stage 3 (monolingual, topic-diverse batches with per-negative weights
``alpha_lang + beta_topic``) is another sampler class plus a weight provider, registered in
:data:`SAMPLERS` under a new name and chosen with ``--sampler NAME --sampler-arg KEY=VALUE``; the trainer
does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from boostmdr.training_data import Group, GroupDataset


@runtime_checkable
class BatchSampler(Protocol):
    """Yields the global batches of one epoch; the same seed and epoch always give the same batches.

    Every batch must hold a number of queries divisible by the number of training processes.
    """

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[list[int]]: ...

    def __len__(self) -> int:
        """Batches per epoch (the trainer's step count and learning-rate schedule follow from it)."""
        ...


@dataclass(frozen=True)
class BatchView:
    """What a weight provider sees: the epoch, and the batch's groups in loss order.

    Passage ``k`` of the loss is ``groups[k // G].docids[k % G]`` (``G`` the group size), in the language
    ``groups[k // G].lang``.
    """

    epoch: int
    groups: Sequence[Group]


@dataclass(frozen=True)
class BatchWeights:
    """Weights for one batch: ``negatives`` per passage ``[B*G]`` or per pair ``[B, B*G]`` (inside the
    softmax denominator; a query's own positive always weighs 1), ``queries`` per query ``[B]``."""

    negatives: Tensor | None = None
    queries: Tensor | None = None


class WeightProvider(Protocol):
    def __call__(self, batch: BatchView) -> BatchWeights | None: ...


class ShuffledBatchSampler:
    """All queries shuffled together (languages mixed), cut into batches of ``batch_size``.

    The permutation of epoch ``e`` comes from ``numpy.random.default_rng([seed, e])``. With ``drop_last``
    (the default) the ``len % batch_size`` queries left over after the last full batch sit out that epoch
    (different ones each epoch), so every step sees the same number of in-batch negatives and every
    process gets an equal slice.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, drop_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if num_items < (batch_size if drop_last else 1):
            raise ValueError(
                f"{num_items} training queries cannot fill one batch of {batch_size}; lower --batch-size"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return -(-self.num_items // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


# ---------------------------------------------------------------------------------------- registry

SamplerFactory = Callable[
    ["GroupDataset", int, int, Mapping[str, str]], "tuple[BatchSampler, WeightProvider | None]"
]

SAMPLERS: dict[str, str] = {
    "shuffled": "boostmdr.sampler:build_shuffled",
}
"""``--sampler`` name -> ``"module:function"`` of a :data:`SamplerFactory` (imported only when chosen).

A factory is called as ``factory(dataset, batch_size, seed, options)`` with the ``--sampler-arg`` pairs as
``options`` and returns ``(sampler, weight_provider_or_None)``. Stage 3 adds its entry here."""


def build_shuffled(
    dataset: GroupDataset, batch_size: int, seed: int, options: Mapping[str, str]
) -> tuple[BatchSampler, None]:
    unknown = sorted(set(options) - {"drop_last"})
    if unknown:
        raise ValueError(f"sampler 'shuffled' takes only the option drop_last=true|false, got {unknown}")
    drop_last = options.get("drop_last", "true").lower()
    if drop_last not in ("true", "false"):
        raise ValueError(f"sampler option drop_last must be true or false, got {options['drop_last']!r}")
    return ShuffledBatchSampler(len(dataset), batch_size, seed, drop_last=drop_last == "true"), None


def build_sampler(
    name: str, dataset: GroupDataset, batch_size: int, seed: int, options: Mapping[str, str] | None = None
) -> tuple[BatchSampler, WeightProvider | None]:
    """Build the sampler (and weight provider) registered as ``name``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; registered samplers: {sorted(SAMPLERS)}")
    module, _, func = SAMPLERS[name].partition(":")
    factory: SamplerFactory = getattr(importlib.import_module(module), func)
    sampler, provider = factory(dataset, batch_size, seed, dict(options or {}))
    if not isinstance(sampler, BatchSampler):
        raise TypeError(f"sampler {name!r} does not provide set_epoch, __iter__ and __len__")
    return sampler, provider


def parse_sampler_args(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``; errors name the bad item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--sampler-arg expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out
