"""Training groups for contrastive fine-tuning: which passages go with which query in which epoch.

Inputs are the negatives files of docs/formats.md (any number, languages mixed) and each language's
prepared ``corpus.jsonl``, which is scanned once per language keeping only the passages some query needs.

A *group* is one query with ``group_size`` passages: one positive, then ``group_size - 1`` hard negatives.
:meth:`GroupDataset.group` is a pure function of ``(index, epoch)`` and the seed: the dataset holds no
trainer state, so any process, at any time (including after a resume), builds the same group.

Choices (documented here because they change what the model sees):

* **Several positives.** A query cycles through its positives by epoch, starting at a seeded offset:
  epoch ``e`` uses ``positives[(offset + e) % n]`` (Tevatron's rule, with a hash that does not depend on
  ``PYTHONHASHSEED``).
* **Negatives.** A query's pool is read in *passes*: each pass is a fresh seeded permutation of the pool,
  cut into windows of ``group_size - 1``; epoch ``e`` takes the next window, so every negative is used once
  per pass and the order differs between passes. A last window that runs off the end of the permutation
  is completed from the permutation's start (never repeating a negative within a group).
* **Too few negatives** (fewer than ``group_size - 1``, at least one): all of them, in a seeded order, and
  the remaining slots drawn *with replacement* from the same pool (Tevatron samples the whole group with
  replacement; using every available negative first wastes none). Such queries are counted and logged.
* **No negatives / no positives:** the query is skipped and counted (logged); it never reaches a batch.
* A docid listed both as a positive and as a negative of the same query is dropped from the negatives
  (counted); a negative listed twice is kept once.
* Docids are per language (MIRACL's ``39#0`` exists in many corpora), so texts are keyed by language.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from boostmdr.formats import FormatError, passage_text, read_corpus, read_negatives

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolQuery:
    """A training query as the trainer uses it (one line of a negatives file, cleaned): its positives and
    its pool of negatives, docids only; texts live in :class:`GroupDataset`."""

    qid: str
    query: str
    lang: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    """One query and its ``group_size`` passages for one epoch; ``docids[0]`` is the positive."""

    index: int
    qid: str
    lang: str
    query: str
    docids: tuple[str, ...]
    passages: tuple[str, ...]


@dataclass
class LoadStats:
    """What loading the negatives files kept and dropped (written to the training summary)."""

    records: int = 0
    kept: int = 0
    skipped_no_negatives: int = 0
    skipped_no_positives: int = 0
    too_few_negatives: int = 0
    negatives_dropped_as_positive: int = 0
    duplicate_negatives_dropped: int = 0
    per_lang: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def load_queries(paths: Sequence[str | os.PathLike], group_size: int) -> tuple[list[PoolQuery], LoadStats]:
    """Read negatives files into :class:`PoolQuery` records, skipping (and counting) unusable queries.

    A query id may appear once per language across all files; a second occurrence names both files.
    """
    if group_size < 2:
        raise ValueError(f"group size must be >= 2 (one positive and at least one negative), got {group_size}")
    stats = LoadStats()
    queries: list[PoolQuery] = []
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        for rec in read_negatives(path):
            stats.records += 1
            key = (rec.lang, rec.qid)
            if key in seen:
                raise FormatError(path, None, f"query {rec.qid!r} ({rec.lang}) also appears in {seen[key]}")
            seen[key] = str(path)
            positives = tuple(dict.fromkeys(rec.positives))
            pos_set = set(positives)
            negatives: list[str] = []
            neg_seen: set[str] = set()
            for neg in rec.negatives:
                if neg.docid in pos_set:
                    stats.negatives_dropped_as_positive += 1
                elif neg.docid in neg_seen:
                    stats.duplicate_negatives_dropped += 1
                else:
                    neg_seen.add(neg.docid)
                    negatives.append(neg.docid)
            if not positives:
                stats.skipped_no_positives += 1
                continue
            if not negatives:
                stats.skipped_no_negatives += 1
                continue
            if len(negatives) < group_size - 1:
                stats.too_few_negatives += 1
            queries.append(PoolQuery(rec.qid, rec.query, rec.lang, positives, tuple(negatives)))
            stats.per_lang[rec.lang] = stats.per_lang.get(rec.lang, 0) + 1
    stats.kept = len(queries)
    if stats.skipped_no_negatives or stats.skipped_no_positives:
        log.warning(
            "skipped %d queries without negatives and %d without positives (of %d read)",
            stats.skipped_no_negatives,
            stats.skipped_no_positives,
            stats.records,
        )
    if stats.too_few_negatives:
        log.info(
            "%d queries have fewer than %d negatives; their groups are completed by sampling with replacement",
            stats.too_few_negatives,
            group_size - 1,
        )
    if stats.negatives_dropped_as_positive:
        log.warning("dropped %d negatives that are also positives of their query", stats.negatives_dropped_as_positive)
    log.info("training queries per language: %s", dict(sorted(stats.per_lang.items())))
    return queries, stats


def load_passages(
    queries: Iterable[PoolQuery], corpora: Mapping[str, str | os.PathLike]
) -> dict[str, dict[str, str]]:
    """``{lang: {docid: text}}`` for every passage the queries use; one scan of each needed corpus.

    A language without a corpus, or a docid missing from its corpus, is an error naming what is missing.
    """
    needed: dict[str, set[str]] = {}
    for q in queries:
        bucket = needed.setdefault(q.lang, set())
        bucket.update(q.positives)
        bucket.update(q.negatives)
    missing_langs = sorted(set(needed) - set(corpora))
    if missing_langs:
        raise ValueError(
            f"no corpus given for language(s) {missing_langs}; pass --corpus LANG=PATH (results/data/LANG/corpus.jsonl)"
        )
    texts: dict[str, dict[str, str]] = {}
    for lang in sorted(needed):
        want = needed[lang]
        found: dict[str, str] = {}
        path = corpora[lang]
        for doc in read_corpus(path):
            docid = str(doc["docid"])
            if docid in want:
                found[docid] = passage_text(doc)
                if len(found) == len(want):
                    break
        if len(found) < len(want):
            absent = sorted(want - set(found))
            raise FormatError(
                path, None, f"{len(absent)} docid(s) used by the {lang} training queries are not in this corpus, e.g. {absent[:5]}"
            )
        texts[lang] = found
        log.info("%s: loaded %d passages from %s", lang, len(found), path)
    return texts


def _rng(*parts: object) -> random.Random:
    """A generator seeded from the parts' text (stable across processes, unlike ``hash(str)``)."""
    return random.Random("\x1f".join(map(str, parts)))


class GroupDataset:
    """Queries plus passage texts; :meth:`group` picks a query's passages for an epoch (see module doc)."""

    def __init__(
        self,
        queries: Sequence[PoolQuery],
        texts: Mapping[str, Mapping[str, str]],
        group_size: int,
        seed: int,
    ):
        if group_size < 2:
            raise ValueError(f"group size must be >= 2, got {group_size}")
        if not queries:
            raise ValueError("no usable training queries (every query lacks positives or negatives)")
        self.queries = list(queries)
        self.texts = texts
        self.group_size = group_size
        self.seed = seed

    @classmethod
    def from_files(
        cls,
        negatives: Sequence[str | os.PathLike],
        corpora: Mapping[str, str | os.PathLike],
        group_size: int,
        seed: int,
    ) -> tuple[GroupDataset, LoadStats]:
        queries, stats = load_queries(negatives, group_size)
        if not queries:
            raise ValueError(
                f"no usable training queries in {[str(p) for p in negatives]} "
                f"({stats.skipped_no_negatives} without negatives, {stats.skipped_no_positives} without positives)"
            )
        return cls(queries, load_passages(queries, corpora), group_size, seed), stats

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def langs(self) -> list[str]:
        """Language of every query, by index (what a language-aware sampler groups on)."""
        return [q.lang for q in self.queries]

    def positive(self, index: int, epoch: int) -> str:
        q = self.queries[index]
        offset = _rng(self.seed, "pos", q.lang, q.qid).randrange(len(q.positives))
        return q.positives[(offset + epoch) % len(q.positives)]

    def negatives(self, index: int, epoch: int) -> list[str]:
        q = self.queries[index]
        need = self.group_size - 1
        pool = list(q.negatives)
        if len(pool) < need:
            rng = _rng(self.seed, "few", q.lang, q.qid, epoch)
            rng.shuffle(pool)
            return pool + rng.choices(q.negatives, k=need - len(pool))
        windows = -(-len(pool) // need)  # per pass
        cycle, window = divmod(epoch, windows)
        _rng(self.seed, "neg", q.lang, q.qid, cycle).shuffle(pool)
        start = window * need
        chosen = pool[start : start + need]
        if len(chosen) < need:
            chosen += pool[: need - len(chosen)]
        return chosen

    def group(self, index: int, epoch: int) -> Group:
        q = self.queries[index]
        docids = (self.positive(index, epoch), *self.negatives(index, epoch))
        texts = self.texts[q.lang]
        return Group(index, q.qid, q.lang, q.query, docids, tuple(texts[d] for d in docids))

    def fingerprint(self) -> str:
        """A digest of everything that decides the groups (queries, pools, texts, group size, seed)."""
        h = hashlib.sha256(f"{self.group_size}\x1e{self.seed}\x1e".encode())
        for q in self.queries:
            h.update("\x1f".join((q.lang, q.qid, q.query, *q.positives, "\x1d", *q.negatives)).encode())
            h.update(b"\x1e")
        for lang in sorted(self.texts):
            for docid in sorted(self.texts[lang]):
                h.update(f"{lang}\x1f{docid}\x1f{self.texts[lang][docid]}\x1e".encode())
        return h.hexdigest()


def query_digest(keys: Iterable[tuple[str, str]]) -> str:
    """A digest of ``(lang, qid)`` pairs in order: a batch manifest records the trainer's queries with it."""
    return hashlib.sha256("\x1e".join(f"{lang}\x1f{qid}" for lang, qid in keys).encode()).hexdigest()


def parse_corpus_args(items: Sequence[str]) -> dict[str, Path]:
    """``["sw=results/data/sw/corpus.jsonl", ...]`` -> ``{"sw": Path(...)}``; errors name the bad item."""
    out: dict[str, Path] = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep or not lang or not path:
            raise ValueError(f"--corpus expects LANG=PATH, got {item!r}")
        if lang in out:
            raise ValueError(f"--corpus given twice for language {lang!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--corpus {item}: no such file {path}")
        out[lang] = Path(path)
    return out
