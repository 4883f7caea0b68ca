"""Stage 3, batches: the batch manifest a fine-tuned variant trains from, and the weight of every negative.

``python -m boostmdr.batching --negatives sw.jsonl ru.jsonl ... --topics sw.jsonl ru.jsonl ... --batch-size 24
--group-size 8 --epochs 16 --seed 42 --out M.jsonl.gz --stats M.stats.json`` writes, for every epoch and
step, the queries of the global batch (language, query id, topic) and the weight of every hard-negative slot
of each query's group (docs/formats.md); :mod:`boostmdr.train` replays it (``--sampler manifest``). The
queries are those the trainer keeps from the same negatives files (:func:`boostmdr.training_data.load_queries`:
a query without positives or negatives never reaches a batch). Everything is a function of the inputs, the
settings and the seed. docs/stage3.md has the paper's words next to the definitions below.

**Batches** (``--same-language``, ``--topic-balance``; paper Sec. 3.5, Table 7):

* *neither*: exactly the trainer's :class:`boostmdr.sampler.ShuffledBatchSampler`: all queries shuffled
  together per epoch (``numpy.random.default_rng([seed, epoch])``), cut into batches, the remainder sitting
  out the epoch. A variant without stage 3 thus trains on the same batches as before manifests existed.
* *same language*: every language's queries are shuffled and cut into full batches of its own; all batches
  of the epoch are then shuffled into the step order. A language's share of steps is its share of queries
  (up to the remainders): languages are sampled in proportion to their counts and every query is used once
  per epoch, so a low-resource language is represented as often as its data allows, never drowned.
* *topic balance*: within each batch source (a language, or all queries when languages mix), the topics are
  dealt across the source's batches: its queries, grouped by topic (topics in a seeded order, queries in a
  seeded order within a topic), are dealt round-robin over its ``k = n // B`` batches, so a topic with at
  least ``k`` queries is in every batch and a rarer one in as many batches as it has queries. Every batch
  is as topic-diverse as the data allows: ``min(B, topics available)`` distinct topics whenever no topic has
  more queries than there are batches. The order inside a batch is then shuffled.
* *both*: same-language sources, dealt by topic (the paper's full model).

**Remainders and small languages** (the paper is silent; FlagEmbedding drops a short last batch): every
batch holds exactly ``batch_size`` queries, so a global batch is one language across all processes and every
process gets an equal slice. What does not fill a batch sits out the epoch: with topic balance the left-out
queries are taken from the most frequent topics (rare topics are kept), otherwise at random; the shuffle
differs per epoch, so different queries sit out. A language with fewer queries than one batch cannot fill a
monolingual batch: with ``--same-language`` such languages are pooled into mixed batches (counted as such in
the statistics); if even their pool cannot fill one batch, batching fails naming them and the fix.

**Weights** (``--weights``; paper Sec. 3.5 and Table 9): a hard negative inherits the language ``l`` and the
topic ``c`` of the query it was mined for, so every hard-negative slot of query ``q`` weighs
``omega(q) = alpha_l + beta_c``:

* ``proportion``: ``alpha_l = alpha / (L * p_l)`` and ``beta_c = beta / (C * p_c)``, where ``p_l`` and
  ``p_c`` are the shares of the training queries in language ``l`` and topic ``c`` and ``L``, ``C`` count
  the languages and topics present. Rarer categories weigh more, in inverse proportion to their share, and
  the means over the training queries are exactly ``alpha`` and ``beta`` (``E_q[1/(L p_l(q))] = 1``).
  Defaults ``alpha = 0.45``, ``beta = 0.40``: the paper's best pair (Table 9).
* ``fixed``: ``alpha_l = alpha`` and ``beta_c = beta`` for every language and topic (Table 9's settings).
* ``none``: no weights (the loss is plain InfoNCE).

How a batch's weights enter the loss (the paper's equation, the authors' code, or inside the softmax) is
the trainer's ``--loss-weighting`` (:mod:`boostmdr.loss`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boostmdr.formats import ManifestStep, read_topic_labels, write_json, write_manifest
from boostmdr.sampler import ShuffledBatchSampler
from boostmdr.training_data import PoolQuery, load_queries, query_digest
from boostmdr.utils import setup_logging

log = logging.getLogger(__name__)

WEIGHT_MODES = ("none", "proportion", "fixed")
DEFAULT_ALPHA = 0.45
DEFAULT_BETA = 0.40
MIXED = "mixed"
"""Name of the batch source that pools the languages too small to fill a batch of their own."""


class BatchingError(ValueError):
    """The queries cannot be batched as asked; the message names the languages and the fix."""


@dataclass(frozen=True)
class BatchingSettings:
    """A variant's ``batching`` settings (config ``variants.*.batching``)."""

    same_language: bool = True
    topic_balance: bool = True
    weights: str = "proportion"
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_MODES:
            raise ValueError(f"--weights {self.weights!r}: choose one of {', '.join(WEIGHT_MODES)}")
        if self.weights != "none" and not (math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise ValueError("--alpha and --beta must be finite numbers")
        if self.weights != "none" and (self.alpha < 0 or self.beta < 0 or self.alpha + self.beta <= 0):
            raise ValueError(f"--alpha {self.alpha} and --beta {self.beta} must be >= 0 with a positive sum")

    @property
    def mode(self) -> str:
        if self.same_language and self.topic_balance:
            return "both"
        if self.same_language:
            return "same_language"
        return "topic_balance" if self.topic_balance else "neither"

    @property
    def needs_topics(self) -> bool:
        return self.topic_balance or self.weights == "proportion"


@dataclass(frozen=True)
class Item:
    """A training query as batching sees it: its language, id and topic (``None`` without topic files)."""

    lang: str
    qid: str
    topic: str | None


# ------------------------------------------------------------------------------------------ weights


def category_weights(
    items: Sequence[Item], settings: BatchingSettings
) -> tuple[dict[str, float], dict[str, float]] | None:
    """``(alpha_l per language, beta_c per topic)``, or ``None`` when the variant has no weights."""
    if settings.weights == "none":
        return None
    langs = Counter(it.lang for it in items)
    topics = Counter(it.topic for it in items)
    if settings.weights == "fixed":
        return {lang: settings.alpha for lang in sorted(langs)}, {str(t): settings.beta for t in sorted(topics, key=str)}
    if None in topics:
        raise BatchingError("proportion weights need every query's topic; pass --topics")
    n = len(items)
    alpha = {lang: settings.alpha * n / (len(langs) * c) for lang, c in sorted(langs.items())}
    beta = {str(t): settings.beta * n / (len(topics) * c) for t, c in sorted(topics.items(), key=lambda kv: str(kv[0]))}
    return alpha, beta


def query_weight(item: Item, weights: tuple[Mapping[str, float], Mapping[str, float]]) -> float:
    """``omega(q) = alpha_l + beta_c``: the weight of each hard negative of the query."""
    alpha, beta = weights
    return alpha[item.lang] + beta[str(item.topic)]


# ------------------------------------------------------------------------------------------ batches


def _deal_by_topic(indices: Sequence[int], items: Sequence[Item], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Full batches of one source with the topics dealt round-robin (see the module docstring)."""
    k = len(indices) // batch_size
    if k == 0:
        return []
    by_topic: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        by_topic[str(items[i].topic)].append(i)
    topics = sorted(by_topic)
    rank = {topics[j]: r for r, j in enumerate(rng.permutation(len(topics)).tolist())}  # a seeded topic order
    pools = {t: [by_topic[t][j] for j in rng.permutation(len(by_topic[t]))] for t in topics}
    # Who sits out: one query at a time from the topic with the most queries left (ties: the seeded order).
    for _ in range(len(indices) - k * batch_size):
        largest = max(topics, key=lambda t: (len(pools[t]), -rank[t]))
        pools[largest].pop()
    order = sorted(topics, key=rank.__getitem__)
    sequence = [i for t in order for i in pools[t]]
    batches = [sequence[j::k] for j in range(k)]
    return [[b[j] for j in rng.permutation(len(b))] for b in batches]


def _cut(indices: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Full batches of one source in a seeded random order; the remainder sits out."""
    order = [indices[j] for j in rng.permutation(len(indices))]
    return [order[b * batch_size : (b + 1) * batch_size] for b in range(len(order) // batch_size)]


def batch_sources(items: Sequence[Item], settings: BatchingSettings, batch_size: int) -> dict[str, list[int]]:
    """The groups batches are cut from: one per language (small languages pooled), or one for all."""
    if not settings.same_language:
        return {"all": list(range(len(items)))}
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_lang[it.lang].append(i)
    small = sorted(lang for lang, idx in by_lang.items() if len(idx) < batch_size)
    sources = {lang: idx for lang, idx in sorted(by_lang.items()) if lang not in small}
    if small:
        pooled = [i for lang in small for i in by_lang[lang]]
        if len(pooled) < batch_size:
            raise BatchingError(
                f"language(s) {small} have {len(pooled)} training queries together, fewer than one batch of "
                f"{batch_size}: they cannot be trained in monolingual or pooled batches; lower training.batch_size"
            )
        log.warning(
            "language(s) %s have fewer queries than a batch of %d; they are pooled into mixed-language batches",
            small, batch_size,
        )  # fmt: skip
        sources[MIXED] = pooled
    return sources


def epoch_batches(items: Sequence[Item], settings: BatchingSettings, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch, in step order, as indices into ``items``."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if settings.mode == "neither":
        sampler = ShuffledBatchSampler(len(items), batch_size, seed)
        sampler.set_epoch(epoch)
        return list(sampler)
    if settings.topic_balance and any(it.topic is None for it in items):
        raise BatchingError("topic balance needs every query's topic; pass --topics")
    rng = np.random.default_rng([seed, epoch, 3])  # a stream apart from the shuffled sampler's [seed, epoch]
    batches: list[list[int]] = []
    for name, indices in batch_sources(items, settings, batch_size).items():
        made = _deal_by_topic(indices, items, batch_size, rng) if settings.topic_balance else _cut(indices, batch_size, rng)
        batches.extend(made)
    if not batches:
        raise BatchingError(f"{len(items)} training queries cannot fill one batch of {batch_size}; lower training.batch_size")
    return [batches[j] for j in rng.permutation(len(batches))]


def manifest_steps(
    items: Sequence[Item], settings: BatchingSettings, batch_size: int, group_size: int, epochs: int, seed: int
) -> Iterator[ManifestStep]:
    """Every step of every epoch, with the hard-negative slot weights when the variant has weights."""
    weights = category_weights(items, settings)
    for epoch in range(epochs):
        for step, batch in enumerate(epoch_batches(items, settings, batch_size, seed, epoch)):
            queries = tuple((items[i].lang, items[i].qid, items[i].topic) for i in batch)
            slot_weights = None
            if weights is not None:
                slot_weights = tuple((round(query_weight(items[i], weights), 10),) * (group_size - 1) for i in batch)
            yield ManifestStep(epoch, step, queries, slot_weights)


# ---------------------------------------------------------------------------------------- statistics


def attainable_distinct_topics(topic_counts: Mapping[str, int], batches: int, batch_size: int) -> float:
    """The most distinct topics a source's ``batches`` batches can hold on average: topic ``t`` can be in at
    most ``min(n_t, batches)`` of them, and a batch holds at most ``batch_size``: ``min(batch_size,
    sum_t min(n_t, batches) / batches)``. Dealing topics round-robin reaches it (up to the left-out queries)."""
    return min(float(batch_size), sum(min(n, batches) for n in topic_counts.values()) / batches)


def batch_statistics(
    items: Sequence[Item], steps: Sequence[ManifestStep], settings: BatchingSettings, batch_size: int
) -> dict[str, Any]:
    """What the batches actually trained on look like (written beside the manifest, shown in a table).

    ``attainable_topics_per_batch`` is :func:`attainable_distinct_topics` of each batch's source (its language
    when batches are monolingual, else all queries) and the source's number of batches in that epoch: the
    yardstick for ``distinct_topics_per_batch``, whatever the mode."""
    langs = Counter(it.lang for it in items)
    topics = Counter(it.topic for it in items if it.topic is not None)
    epochs = max(s.epoch for s in steps) + 1
    has_topics = bool(topics) and all(it.topic is not None for it in items)
    topics_of: dict[str, Counter[str]] = defaultdict(Counter)
    for it in items:
        topics_of[it.lang][str(it.topic)] += 1
        topics_of[MIXED][str(it.topic)] += 1

    def source(s: ManifestStep) -> str:
        batch_langs = {q[0] for q in s.queries}
        return next(iter(batch_langs)) if settings.same_language and len(batch_langs) == 1 else MIXED

    batches_of = Counter((s.epoch, source(s)) for s in steps)
    one_language = 0
    distinct, attainable = [], []
    lang_steps: Counter[str] = Counter()
    used_per_topic: Counter[str] = Counter()
    used = 0
    omega = []
    for s in steps:
        batch_langs = {q[0] for q in s.queries}
        if len(batch_langs) == 1:
            one_language += 1
            lang_steps[next(iter(batch_langs))] += 1
        else:
            lang_steps[MIXED] += 1
        used += len(s.queries)
        if has_topics:
            distinct.append(len({q[2] for q in s.queries}))
            src = source(s)
            attainable.append(attainable_distinct_topics(topics_of[src], batches_of[(s.epoch, src)], batch_size))
            used_per_topic.update(str(q[2]) for q in s.queries)
        if s.weights is not None:
            omega.extend(w[0] for w in s.weights)
    n_steps = len(steps)
    out: dict[str, Any] = {
        "mode": settings.mode,
        "weights": settings.weights,
        "queries": len(items),
        "epochs": epochs,
        "steps_per_epoch": n_steps // epochs,
        "batch_size": batch_size,
        "one_language_batch_share": one_language / n_steps,
        "queries_used_per_epoch": used / epochs,
        "queries_used_share": used / (epochs * len(items)),
        "language_query_share": {lang: c / len(items) for lang, c in sorted(langs.items())},
        "language_step_share": {lang: lang_steps.get(lang, 0) / n_steps for lang in [*sorted(langs), MIXED]},
        "distinct_topics_per_batch": None,
        "attainable_topics_per_batch": None,
        "topic_query_share": None,
        "topic_coverage": None,
        "mean_weight": float(np.mean(omega)) if omega else None,
    }
    if has_topics:
        out["distinct_topics_per_batch"] = {"mean": float(np.mean(distinct)), "min": min(distinct), "max": max(distinct)}
        out["attainable_topics_per_batch"] = {"mean": float(np.mean(attainable)), "min": float(min(attainable))}
        out["topic_query_share"] = {str(t): c / len(items) for t, c in sorted(topics.items(), key=lambda kv: str(kv[0]))}
        # Share of each topic's queries that a mean epoch trains on.
        out["topic_coverage"] = {
            str(t): used_per_topic.get(str(t), 0) / (epochs * c) for t, c in sorted(topics.items(), key=lambda kv: str(kv[0]))
        }
    return out


# ----------------------------------------------------------------------------------------------- CLI


def load_items(
    negatives: Sequence[str | os.PathLike], topic_files: Sequence[str | os.PathLike], group_size: int
) -> list[Item]:
    """The trainer's queries (same files, same order, same filter) with their topics."""
    queries: list[PoolQuery]
    queries, _ = load_queries(negatives, group_size)
    if not queries:
        raise BatchingError(f"no usable training queries in {[str(p) for p in negatives]}")
    topic_of: dict[tuple[str, str], str] = {}
    for path in topic_files:
        for rec in read_topic_labels(path):
            topic_of[(rec.lang, rec.qid)] = rec.topic
    if topic_files:
        missing = [(q.lang, q.qid) for q in queries if (q.lang, q.qid) not in topic_of]
        if missing:
            raise BatchingError(
                f"{len(missing)} training queries have no topic in {[str(p) for p in topic_files]}, e.g. {missing[:3]}; "
                "the topic files must come from the same prepared training data"
            )
    return [Item(q.lang, q.qid, topic_of.get((q.lang, q.qid))) for q in queries]


def build_parser() -> argparse.ArgumentParser:
    d = BatchingSettings()
    p = argparse.ArgumentParser(
        prog="python -m boostmdr.batching",
        description="Stage 3: the batch manifest (batches and negative weights) a variant trains from.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--negatives", nargs="+", required=True, help="the negatives files the trainer gets, in its order")
    p.add_argument("--topics", nargs="*", default=[], help="topic files (boostmdr.topics) of every language")
    p.add_argument("--batch-size", type=int, required=True, help="queries per global batch (training.batch_size)")
    p.add_argument("--group-size", type=int, required=True, help="1 positive + hard negatives (training.group_size)")
    p.add_argument("--epochs", type=int, required=True, help="epochs to lay out (the trainer's --epochs)")
    p.add_argument("--seed", type=int, required=True, help="seed of the batches (training.seed)")
    p.add_argument("--same-language", action=argparse.BooleanOptionalAction, default=d.same_language)
    p.add_argument("--topic-balance", action=argparse.BooleanOptionalAction, default=d.topic_balance)
    p.add_argument("--weights", choices=WEIGHT_MODES, default=d.weights, help="per-negative weights")
    p.add_argument("--alpha", type=float, default=d.alpha, help="language weight: fixed, or its mean (proportion)")
    p.add_argument("--beta", type=float, default=d.beta, help="topic weight: fixed, or its mean (proportion)")
    p.add_argument("--out", required=True, help="manifest (gzip JSON lines; docs/formats.md)")
    p.add_argument("--stats", required=True, help="statistics of the batches (JSON)")
    p.add_argument("--log", default=None, help="log file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    settings = BatchingSettings(args.same_language, args.topic_balance, args.weights, args.alpha, args.beta)
    if args.epochs < 1 or args.group_size < 2:
        raise ValueError("--epochs must be >= 1 and --group-size >= 2")
    if settings.needs_topics and not args.topics:
        raise BatchingError(f"batching mode {settings.mode} with {settings.weights} weights needs --topics")
    items = load_items(args.negatives, args.topics, args.group_size)
    steps = list(manifest_steps(items, settings, args.batch_size, args.group_size, args.epochs, args.seed))
    weights = category_weights(items, settings)
    header = {
        "settings": asdict(settings),
        "mode": settings.mode,
        "batch_size": args.batch_size,
        "group_size": args.group_size,
        "epochs": args.epochs,
        "steps_per_epoch": len(steps) // args.epochs,
        "seed": args.seed,
        "queries": len(items),
        "query_digest": query_digest((it.lang, it.qid) for it in items),
        "negatives": [str(p) for p in args.negatives],
        "topics": [str(p) for p in args.topics],
        "language_weights": None if weights is None else weights[0],
        "topic_weights": None if weights is None else weights[1],
    }
    write_manifest(args.out, header, steps)
    stats = batch_statistics(items, steps, settings, args.batch_size)
    stats["language_weights"], stats["topic_weights"] = header["language_weights"], header["topic_weights"]
    write_json(args.stats, stats)
    log.info("wrote %d steps (%d per epoch) to %s: %s", len(steps), header["steps_per_epoch"], Path(args.out),
             json.dumps({k: stats[k] for k in ("mode", "one_language_batch_share", "distinct_topics_per_batch",
                                               "queries_used_share", "mean_weight")}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
