"""Batch composition for contrastive fine-tuning: which queries train together, and with what weights.

The trainer consumes two small interfaces, and nothing else decides batches:

* a :class:`BatchSampler` yields *global* batches (lists of dataset indices; under ``torchrun`` each
  process takes its contiguous slice). It is deterministic given its seed and the epoch set by
  :meth:`~BatchSampler.set_epoch`, so a resumed run rebuilds an epoch and skips the batches it already did;
* an optional :class:`WeightProvider` maps a batch (its groups: query ids, languages, passage docids in
  loss order) to :class:`BatchWeights` for :func:`boostmdr.loss.contrastive_loss`.

:class:`ShuffledBatchSampler` (``--sampler shuffled``) shuffles all queries across languages (what the
authors' code and Tevatron do) with no weights. :class:`ManifestSampler` (``--sampler manifest
--sampler-arg manifest=PATH``) replays a batch manifest written by :mod:`boostmdr.batching` (stage 3:
monolingual, topic-diverse batches; or the shuffled batches of a variant without stage 3), and its
:class:`ManifestWeights` provider hands the loss the weight of every hard-negative slot. Both are registered
in :data:`SAMPLERS` and chosen with ``--sampler NAME --sampler-arg KEY=VALUE``; the trainer knows neither.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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

    def fingerprint(self) -> str:
        """What decides the batches (enters the trainer's resume fingerprint)."""
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
    softmax denominator; a query's own positive always weighs 1), ``queries`` per query ``[B]``, or
    ``hard_negatives`` per hard-negative slot ``[B, G-1]``, which the trainer's ``--loss-weighting`` turns
    into one of the losses of :func:`boostmdr.loss.hard_negative_weighting`."""

    negatives: Tensor | None = None
    queries: Tensor | None = None
    hard_negatives: Tensor | None = None


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

    def fingerprint(self) -> str:
        return f"shuffled:{self.num_items}:{self.batch_size}:{self.seed}:{self.drop_last}"


class ManifestSampler:
    """Replays the batches of a batch manifest (docs/formats.md): epoch ``e`` yields the manifest's steps of
    epoch ``e`` as dataset indices, in the manifest's order.

    Checked when built: the manifest's batch size and group size equal the trainer's, and its queries are
    exactly the dataset's, in the same order (the same negatives files, read with the same filter; the
    header's ``query_digest``), so every listed query trains and none is silently missing. An epoch past the manifest's last is an error naming the file.
    """

    def __init__(self, path: str | os.PathLike, dataset: GroupDataset, batch_size: int):
        from boostmdr.formats import FormatError, read_manifest
        from boostmdr.training_data import query_digest

        self.path = str(path)
        self.header, steps = read_manifest(path)
        if self.header["batch_size"] != batch_size:
            raise ValueError(
                f"{path}: manifest batches hold {self.header['batch_size']} queries, the trainer's --batch-size is "
                f"{batch_size}; rebuild the manifest with the same batch size"
            )
        if self.header["group_size"] != dataset.group_size:
            raise ValueError(
                f"{path}: manifest weights are for group size {self.header['group_size']}, the trainer's "
                f"--group-size is {dataset.group_size}; rebuild the manifest with the same group size"
            )
        index = {(q.lang, q.qid): i for i, q in enumerate(dataset.queries)}
        self.batches: list[list[list[int]]] = [[] for _ in range(self.header["epochs"])]
        self.weights: list[list[Any]] = [[] for _ in range(self.header["epochs"])]
        for n, step in enumerate(steps, start=2):  # line 1 is the header
            try:
                indices = [index[(lang, qid)] for lang, qid, _ in step.queries]
            except KeyError as err:
                raise FormatError(path, n, f"query {err.args[0]} is not among the trainer's training queries; the "
                                           "manifest was built from other negatives files") from None
            self.batches[step.epoch].append(indices)
            self.weights[step.epoch].append(step.weights)
        if self.header.get("query_digest") != query_digest((q.lang, q.qid) for q in dataset.queries):
            raise ValueError(
                f"{path}: the manifest was built for {self.header.get('queries')} training queries that are not the "
                f"trainer's {len(dataset)} (in its order); rebuild the manifest from the same negatives files, "
                f"given in the same order"
            )
        self.epoch = 0

    @property
    def epochs(self) -> int:
        return int(self.header["epochs"])

    def set_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < self.epochs:
            raise ValueError(
                f"{self.path} lays out {self.epochs} epoch(s); epoch {epoch + 1} was asked for: rebuild the manifest "
                f"with --epochs at least the trainer's"
            )
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.header["steps_per_epoch"])

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches[self.epoch]:
            yield list(batch)

    def fingerprint(self) -> str:
        import hashlib

        digest = hashlib.sha256(repr((self.batches, self.weights)).encode()).hexdigest()
        return f"manifest:{digest}"


class ManifestWeights:
    """The weight provider of a :class:`ManifestSampler`: the manifest's hard-negative slot weights of the
    batch being trained, as :class:`BatchWeights` ``hard_negatives`` ``[B, G-1]`` (``None`` when the
    manifest has no weights). The batch is found by its epoch and its queries' dataset indices."""

    def __init__(self, sampler: ManifestSampler):
        self._by_batch: dict[tuple[int, tuple[int, ...]], Any] = {}
        for epoch, (batches, weights) in enumerate(zip(sampler.batches, sampler.weights)):
            for batch, w in zip(batches, weights):
                self._by_batch[(epoch, tuple(batch))] = w
        self.weighted = any(w is not None for ws in sampler.weights for w in ws)

    def __call__(self, batch: BatchView) -> BatchWeights | None:
        import torch

        key = (batch.epoch, tuple(g.index for g in batch.groups))
        if key not in self._by_batch:
            raise ValueError(f"epoch {batch.epoch}: batch {list(key[1])[:5]}... is not a batch of the manifest")
        w = self._by_batch[key]
        if w is None:
            return None
        return BatchWeights(hard_negatives=torch.tensor(w, dtype=torch.float32))


# ---------------------------------------------------------------------------------------- registry

SamplerFactory = Callable[
    ["GroupDataset", int, int, Mapping[str, str]], "tuple[BatchSampler, WeightProvider | None]"
]

SAMPLERS: dict[str, str] = {
    "shuffled": "boostmdr.sampler:build_shuffled",
    "manifest": "boostmdr.sampler:build_manifest",
}
"""``--sampler`` name -> ``"module:function"`` of a :data:`SamplerFactory` (imported only when chosen).

A factory is called as ``factory(dataset, batch_size, seed, options)`` with the ``--sampler-arg`` pairs as
``options`` and returns ``(sampler, weight_provider_or_None)``."""


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


def build_manifest(
    dataset: GroupDataset, batch_size: int, seed: int, options: Mapping[str, str]
) -> tuple[ManifestSampler, ManifestWeights | None]:
    """``--sampler manifest --sampler-arg manifest=PATH``: replay a batch manifest (and its weights)."""
    unknown = sorted(set(options) - {"manifest"})
    if unknown or "manifest" not in options:
        raise ValueError(f"sampler 'manifest' takes exactly the option manifest=PATH, got {sorted(options)}")
    sampler = ManifestSampler(options["manifest"], dataset, batch_size)
    provider = ManifestWeights(sampler)
    return sampler, provider if provider.weighted else None


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
        raise TypeError(f"sampler {name!r} does not provide set_epoch, __iter__, __len__ and fingerprint")
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
