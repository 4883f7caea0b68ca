"""The five hard-negative mining baselines of the paper (Table 2, appendix B.3), and the mixed miner of the
mined-share sweep (issue 13: how much do mined hard negatives help low-resource languages?).

Every miner reads the same inputs: the mining retriever's candidate run for the training queries
(positives still in it), that retriever's score for every labelled positive, and the prepared
``train.jsonl``. For each query it removes the positives, applies its filter, and keeps the best
``num_negatives`` survivors (30 by default, the paper's pool size N):

* ``naive_topk``: every non-positive candidate passes (the top non-positive candidates);
* ``shifted_topk``: all but the ``shift`` best non-positive candidates pass (N = 10);
* ``topk_abs``: ``score <= max_score`` (0.6);
* ``topk_margin_pos``: ``score < positive_score - margin`` (0.15);
* ``topk_perc_pos``: ``score <= percentage * positive_score`` (90 %; see :class:`TopKPercPos`);
* ``mixed``: a share ``mined_share`` of each query's ``num_negatives`` drawn from its Naive Top-K
  negatives, the rest drawn at random from the corpus (see :class:`MixedShare`).

``rank`` of a negative is its 1-based position in the full candidate list (positives included),
ranked by score descending, docid ascending.

Several positives: ``positive_score`` is the **minimum** score over the query's labelled positives.
The negative pool is shared by all of a query's positives (the trainer draws one positive per
example and pairs it with negatives from the pool), so a negative must respect the margin against
every positive it may be paired with, which holds exactly when it respects it against the weakest
one. The weakest labelled positive also shows how low a truly relevant passage can score under the
mining model, so a candidate above it is as plausible a false negative as that positive is a true
positive. See docs/miners.md.

No positive score (the positive-scores file has none of the query's positives): the two
positive-relative miners cannot tell a safe candidate from a false negative, so the query is kept
with an empty list (counted and logged); the other three miners do not need the score and mine it
normally. Queries without candidates are likewise kept, empty. A positive-scores row for a query or
document that is not a labelled positive in ``train.jsonl`` is an error (the files disagree).

Comparisons use a tolerance of ``1e-9`` so that values equal on paper are equal here
(``0.80 - 0.15`` is ``0.6500000000000001`` in floating point; a candidate scoring ``0.65`` fails
the strict margin test, as it should).

``python -m boostmdr.miners --method topk_perc_pos --candidates cand.trec --positive-scores
cand.positives.tsv --train train.jsonl --lang sw --out negs.jsonl --log mine.log``
"""

from __future__ import annotations

import argparse
import enum
import logging
import math
import os
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from .formats import (
    Hit,
    LabelledQuery,
    Negative,
    NegativesRecord,
    iter_lines,
    read_corpus,
    read_positive_scores,
    read_run,
    read_train,
    sort_hits,
    write_negatives,
)
from .utils import setup_logging

logger = logging.getLogger(__name__)

EPS = 1e-9
"""Tolerance of the score comparisons (scores in run files carry 6 decimals)."""

DEFAULT_NUM_NEGATIVES = 30


class MinerMethod(str, enum.Enum):
    """The paper's hard-negative mining baselines, by the names the config and the CLI use."""

    NAIVE_TOPK = "naive_topk"
    SHIFTED_TOPK = "shifted_topk"
    TOPK_ABS = "topk_abs"
    TOPK_MARGIN_POS = "topk_margin_pos"
    TOPK_PERC_POS = "topk_perc_pos"
    MIXED = "mixed"

    def __str__(self) -> str:
        return self.value


class QueryOutcome(str, enum.Enum):
    """What happened to one query; counted per file and logged."""

    FULL = "full"  # num_negatives negatives
    SHORT = "short"  # at least one, fewer than num_negatives
    EMPTY_NO_CANDIDATES = "empty_no_candidates"  # the run has no non-positive candidate for the query
    EMPTY_FILTERED = "empty_filtered"  # every non-positive candidate failed the filter (or the shift)
    EMPTY_NO_POSITIVE_SCORE = "empty_no_positive_score"  # positive-relative filter, no positive scored


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"miner setting {name}={value!r} is invalid: expected an integer >= {minimum}")


def _check_real(name: str, value: Any, valid: str, ok) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"miner setting {name}={value!r} is invalid: expected {valid}")


@dataclass(frozen=True, kw_only=True)
class Miner(ABC):
    """A hard-negative miner: a filter over one query's ranked non-positive candidates.

    Subclasses are frozen dataclasses whose fields are the method's settings; they are checked when
    the miner is built, so a bad config value fails before any file is read.
    """

    method: ClassVar[MinerMethod]
    needs_positive_score: ClassVar[bool] = False
    needs_corpus: ClassVar[bool] = False
    num_negatives: int = DEFAULT_NUM_NEGATIVES

    def __post_init__(self) -> None:
        _check_int("num_negatives", self.num_negatives, 1)

    @property
    def source(self) -> str:
        """Provenance tag written into every negative (``miner:<name>``)."""
        return f"miner:{self.method.value}"

    def settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @abstractmethod
    def survivors(self, pool: list[tuple[int, Hit]], positive_score: float | None) -> list[tuple[int, Hit]]:
        """The candidates of ``pool`` (``(rank, hit)``, best first, positives removed) that pass the filter."""

    def select(
        self, candidates: Iterable[Hit], positives: Iterable[str], positive_score: float | None
    ) -> tuple[list[Negative], QueryOutcome]:
        """Choose one query's negatives.

        ``candidates`` is the retriever's list for the query (any order; ranked here by score
        descending, docid ascending). ``rank`` of a negative is its 1-based position in that full
        list, positives included. ``positive_score`` is the score the filter compares against
        (see :func:`positive_score_of`); ``None`` when no positive was scored.
        """
        pos = set(positives)
        ranked = sort_hits(candidates)
        pool = [(rank, hit) for rank, hit in enumerate(ranked, start=1) if hit.docid not in pos]
        if not pool:
            return [], QueryOutcome.EMPTY_NO_CANDIDATES
        if self.needs_positive_score and positive_score is None:
            return [], QueryOutcome.EMPTY_NO_POSITIVE_SCORE
        chosen = self.survivors(pool, positive_score)[: self.num_negatives]
        negatives = [Negative(docid=h.docid, score=h.score, rank=r, source=self.source) for r, h in chosen]
        if not negatives:
            return [], QueryOutcome.EMPTY_FILTERED
        return negatives, (QueryOutcome.FULL if len(negatives) == self.num_negatives else QueryOutcome.SHORT)


@dataclass(frozen=True, kw_only=True)
class NaiveTopK(Miner):
    """Naive Top-K: the best ``num_negatives`` non-positive candidates."""

    method: ClassVar[MinerMethod] = MinerMethod.NAIVE_TOPK

    def survivors(self, pool, positive_score):
        return pool


@dataclass(frozen=True, kw_only=True)
class ShiftedTopK(Miner):
    """Top-K shifted by N: skip the ``shift`` best non-positive candidates, then take the top ones."""

    method: ClassVar[MinerMethod] = MinerMethod.SHIFTED_TOPK
    shift: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("shift", self.shift, 0)

    def survivors(self, pool, positive_score):
        return pool[self.shift :]


@dataclass(frozen=True, kw_only=True)
class TopKAbs(Miner):
    """TopK-Abs: keep candidates scoring at or below ``max_score``."""

    method: ClassVar[MinerMethod] = MinerMethod.TOPK_ABS
    max_score: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real("max_score", self.max_score, "a finite number", lambda v: True)

    def survivors(self, pool, positive_score):
        return [(r, h) for r, h in pool if h.score <= self.max_score + EPS]


@dataclass(frozen=True, kw_only=True)
class TopKMarginPos(Miner):
    """TopK-MarginPos: keep candidates scoring strictly below ``positive_score - margin``."""

    method: ClassVar[MinerMethod] = MinerMethod.TOPK_MARGIN_POS
    needs_positive_score: ClassVar[bool] = True
    margin: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real("margin", self.margin, "a finite number >= 0", lambda v: v >= 0)

    def threshold(self, positive_score: float) -> float:
        return positive_score - self.margin

    def survivors(self, pool, positive_score):
        limit = self.threshold(positive_score) - EPS
        return [(r, h) for r, h in pool if h.score < limit]


@dataclass(frozen=True, kw_only=True)
class TopKPercPos(Miner):
    """TopK-PercPos: keep candidates scoring at or below ``percentage`` of the positive's score.

    The threshold is ``positive_score - (1 - percentage) * |positive_score|``: ``percentage *
    positive_score`` for the usual non-negative positive score, and still *below* the positive when
    the positive scores negative (there ``percentage * positive_score`` would lie above it and let
    through candidates that beat the positive).
    """

    method: ClassVar[MinerMethod] = MinerMethod.TOPK_PERC_POS
    needs_positive_score: ClassVar[bool] = True
    percentage: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real("percentage", self.percentage, "a number in (0, 1]", lambda v: 0 < v <= 1)

    def threshold(self, positive_score: float) -> float:
        return positive_score - (1.0 - self.percentage) * abs(positive_score)

    def survivors(self, pool, positive_score):
        limit = self.threshold(positive_score) + EPS
        return [(r, h) for r, h in pool if h.score <= limit]


@dataclass(frozen=True, kw_only=True)
class MixedShare(Miner):
    """Mixed negatives: ``mined_share`` of each query's ``num_negatives`` are mined, the rest are random.

    * **How many**: ``n_mined = round(mined_share * num_negatives)``, halves rounded up (25 % of 30 is 7.5,
      so 8 mined and 22 random; 75 % gives 23 and 7).
    * **Mined**: a seeded random subset of ``n_mined`` of the query's Naive Top-K negatives (its best
      ``num_negatives`` non-positive candidates), so the mined part is as hard at every share and only the
      share changes. At share 1 the query's negatives are exactly Naive Top-K's (the sweep's 100 % point is
      the ``naive_topk`` variant; tests check the two agree).
    * **Random**: ``num_negatives - n_mined`` passages drawn uniformly without replacement from the
      language's corpus, never a labelled positive and never one of the query's Naive Top-K candidates (so
      the mined share is exact). Too few candidates or a corpus too small leave the query short.
    * **Seeds**: every draw of a query comes from ``random.Random("mixed:<seed>:<qid>")``, so a query's
      negatives do not depend on the other queries or the file order.

    Provenance: ``source`` is ``miner:mixed``; ``extra.origin`` is ``mined`` (with the candidate's score and
    rank) or ``random`` (no score, no rank).
    """

    method: ClassVar[MinerMethod] = MinerMethod.MIXED
    needs_corpus: ClassVar[bool] = True
    mined_share: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real("mined_share", self.mined_share, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        _check_int("seed", self.seed, 0)

    @property
    def num_mined(self) -> int:
        return math.floor(self.mined_share * self.num_negatives + 0.5 + EPS)

    def survivors(self, pool, positive_score):
        return pool  # the Naive Top-K list, from which the mined part is drawn

    def rng(self, qid: str) -> random.Random:
        return random.Random(f"mixed:{self.seed}:{qid}")


MINERS: dict[MinerMethod, type[Miner]] = {
    cls.method: cls for cls in (NaiveTopK, ShiftedTopK, TopKAbs, TopKMarginPos, TopKPercPos, MixedShare)
}
"""Registry: method name -> miner class."""


def parse_method(method: str | MinerMethod) -> MinerMethod:
    try:
        return MinerMethod(method)
    except ValueError:
        valid = ", ".join(m.value for m in MinerMethod)
        raise ValueError(f"unknown miner method {method!r}; valid methods: {valid}") from None


def method_settings(method: str | MinerMethod) -> list[str]:
    """Names of the settings a method takes (besides ``num_negatives``)."""
    return [f.name for f in fields(MINERS[parse_method(method)]) if f.name != "num_negatives"]


def build_miner(method: str | MinerMethod, **settings: Any) -> Miner:
    """Build the miner ``method`` with ``settings``; a setting the method does not take is an error."""
    cls = MINERS[parse_method(method)]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"miner {cls.method.value} does not take setting(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(known))}"
        )
    return cls(**settings)


# ------------------------------------------------------------------------------------------- inputs


def positive_score_of(positives: Sequence[str], scores: dict[str, float]) -> float | None:
    """The score the positive-relative filters compare against: the minimum over the scored positives."""
    values = [scores[p] for p in positives if p in scores]
    return min(values) if values else None


# ----------------------------------------------------------------------------------------- mining


@dataclass
class MiningStats:
    queries: int = 0
    negatives: int = 0
    outcomes: Counter = field(default_factory=Counter)
    partial_positive_scores: int = 0

    @property
    def empty(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o.value.startswith("empty"))

    @property
    def mean_negatives(self) -> float:
        return self.negatives / self.queries if self.queries else 0.0


class CorpusIds(Protocol):
    """The docids of a language's corpus by 0-based position (line of ``corpus.jsonl``), for random draws."""

    def __len__(self) -> int: ...

    def at(self, positions: Collection[int]) -> dict[int, str]: ...


class DocidList:
    """:class:`CorpusIds` over docids held in memory."""

    def __init__(self, docids: Sequence[str]):
        self.docids = list(docids)

    def __len__(self) -> int:
        return len(self.docids)

    def at(self, positions: Collection[int]) -> dict[int, str]:
        return {i: self.docids[i] for i in positions}


class CorpusFile:
    """:class:`CorpusIds` over a prepared ``corpus.jsonl``, read in two passes (count the lines; then parse only
    the drawn ones), so a corpus of tens of millions of passages is never held in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._size: int | None = None

    def __len__(self) -> int:
        if self._size is None:
            self._size = sum(1 for _ in iter_lines(self.path))
        return self._size

    def at(self, positions: Collection[int]) -> dict[int, str]:
        wanted = set(positions)
        last = max(wanted, default=-1)
        return {i: rec["docid"] for i, rec in enumerate(read_corpus(self.path, stop=last + 1)) if i in wanted}


def _mix(miner: MixedShare, records: list[NegativesRecord], corpus: CorpusIds) -> None:
    """Replace each record's Naive Top-K negatives by the mixed ones (see :class:`MixedShare`), in place."""
    size = len(corpus)
    plans = []
    wanted: set[int] = set()
    n_random = miner.num_negatives - miner.num_mined
    for rec in records:
        rng = miner.rng(rec.qid)
        pool = rec.negatives
        mined = [pool[i] for i in sorted(rng.sample(range(len(pool)), min(miner.num_mined, len(pool))))]
        excluded = set(rec.positives) | {n.docid for n in pool}
        # enough positions that n_random survive even if every excluded passage is drawn
        draws = rng.sample(range(size), min(size, n_random + len(excluded))) if n_random else []
        wanted.update(draws)
        plans.append((mined, excluded, draws))
    docids = corpus.at(wanted)
    for rec, (mined, excluded, draws) in zip(records, plans):
        drawn = [docids[i] for i in draws if docids[i] not in excluded][:n_random]
        rec.negatives = [Negative(n.docid, n.score, n.rank, miner.source, {"origin": "mined"}) for n in mined]
        rec.negatives += [Negative(d, None, None, miner.source, {"origin": "random"}) for d in drawn]
        rec.meta["mined"] = len(mined)


def mine(
    miner: Miner,
    train: dict[str, LabelledQuery],
    candidates: dict[str, list[Hit]],
    positive_scores: dict[str, dict[str, float]],
    lang: str,
    corpus: CorpusIds | None = None,
) -> tuple[list[NegativesRecord], MiningStats]:
    """Mine every training query (in ``train`` order); queries without candidates are kept, empty.

    ``meta.positive_score`` is the minimum positive score (``None`` when no positive was scored),
    recorded for every method, also those that do not filter on it. A miner that draws from the corpus
    (``mixed``) needs ``corpus``.
    """
    if miner.needs_corpus and corpus is None:
        raise ValueError(f"miner {miner.method.value} draws random negatives from the corpus: pass the "
                         "language's corpus.jsonl (--corpus)")
    stats = MiningStats()
    records: list[NegativesRecord] = []
    outcomes: list[QueryOutcome] = []
    for q in train.values():
        scores = positive_scores.get(q.qid, {})
        pos_score = positive_score_of(q.positives, scores)
        if pos_score is not None and len(scores) < len(set(q.positives)):
            stats.partial_positive_scores += 1
        negatives, outcome = miner.select(candidates.get(q.qid, []), q.positives, pos_score)
        outcomes.append(outcome)
        records.append(
            NegativesRecord(
                qid=q.qid,
                query=q.query,
                lang=lang,
                positives=list(q.positives),
                negatives=negatives,
                meta={"positive_score": pos_score},
            )
        )
    if isinstance(miner, MixedShare):
        assert corpus is not None
        _mix(miner, records, corpus)
    for rec, outcome in zip(records, outcomes):
        n = len(rec.negatives)
        if n:
            outcome = QueryOutcome.FULL if n == miner.num_negatives else QueryOutcome.SHORT
        stats.queries += 1
        stats.negatives += n
        stats.outcomes[outcome] += 1
    return records, stats


def mine_files(
    miner: Miner,
    candidates_path: str | os.PathLike,
    positive_scores_path: str | os.PathLike,
    train_path: str | os.PathLike,
    lang: str,
    out_path: str | os.PathLike,
    corpus_path: str | os.PathLike | None = None,
) -> MiningStats:
    """Read the inputs, mine, write the negatives file atomically and log the statistics."""
    train = read_train(train_path)
    candidates = read_run(candidates_path)
    stray = [qid for qid in candidates if qid not in train]
    if stray:
        raise ValueError(
            f"{candidates_path}: {len(stray)} query id(s) not in {train_path} (e.g. {stray[0]!r}); "
            "the candidate run and the training file come from different data"
        )
    scores = read_positive_scores(positive_scores_path, train)
    corpus = CorpusFile(corpus_path) if corpus_path is not None else None
    records, stats = mine(miner, train, candidates, scores, lang, corpus)
    write_negatives(out_path, records)
    log_stats(miner, lang, stats)
    return stats


def log_stats(miner: Miner, lang: str, stats: MiningStats) -> None:
    o = stats.outcomes
    logger.info(
        "%s [%s] %s: %d queries, %.2f negatives per query on average; %d full (%d negatives), %d short, %d empty",
        miner.source,
        ", ".join(f"{k}={v}" for k, v in miner.settings().items()),
        lang,
        stats.queries,
        stats.mean_negatives,
        o[QueryOutcome.FULL],
        miner.num_negatives,
        o[QueryOutcome.SHORT],
        stats.empty,
    )
    if o[QueryOutcome.EMPTY_NO_CANDIDATES]:
        logger.warning(
            "%s: %d queries have no non-positive candidate in the run (kept with no negatives)",
            lang,
            o[QueryOutcome.EMPTY_NO_CANDIDATES],
        )
    if o[QueryOutcome.EMPTY_FILTERED]:
        logger.warning(
            "%s: %d queries lost every candidate to the %s filter (kept with no negatives)",
            lang,
            o[QueryOutcome.EMPTY_FILTERED],
            miner.method.value,
        )
    if o[QueryOutcome.EMPTY_NO_POSITIVE_SCORE]:
        logger.warning(
            "%s: %d queries have no positive score in the positive-scores file; %s cannot filter them "
            "(kept with no negatives)",
            lang,
            o[QueryOutcome.EMPTY_NO_POSITIVE_SCORE],
            miner.method.value,
        )
    if stats.partial_positive_scores:
        logger.warning(
            "%s: %d queries have scores for only some of their positives; the minimum of the scored ones is used",
            lang,
            stats.partial_positive_scores,
        )


# -------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m boostmdr.miners",
        description="Select hard negatives for training queries with one of the paper's baseline miners.",
    )
    p.add_argument("--method", required=True, choices=[m.value for m in MinerMethod])
    p.add_argument("--candidates", required=True, help="the mining retriever's candidate TREC run (positives in it)")
    p.add_argument("--positive-scores", required=True, help="qid<TAB>docid<TAB>score of every labelled positive")
    p.add_argument("--train", required=True, help="prepared train.jsonl")
    p.add_argument("--lang", required=True)
    p.add_argument("--num-negatives", type=int, default=DEFAULT_NUM_NEGATIVES)
    p.add_argument("--shift", type=int, default=None, help="shifted_topk: best candidates to skip (default 10)")
    p.add_argument("--max-score", type=float, default=None, help="topk_abs: highest score kept (default 0.6)")
    p.add_argument("--margin", type=float, default=None, help="topk_margin_pos: margin below the positive (0.15)")
    p.add_argument("--percentage", type=float, default=None, help="topk_perc_pos: fraction of the positive (0.9)")
    p.add_argument("--mined-share", type=float, default=None, help="mixed: share of the negatives mined (1.0)")
    p.add_argument("--seed", type=int, default=None, help="mixed: seed of the random draws (0)")
    p.add_argument("--corpus", default=None, help="mixed: the language's prepared corpus.jsonl (random negatives)")
    p.add_argument("--out", required=True, help="negatives file (JSON lines)")
    p.add_argument("--log", default=None, help="log file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    method = parse_method(args.method)
    given = {
        name: getattr(args, name)
        for name in ("shift", "max_score", "margin", "percentage", "mined_share", "seed")
        if getattr(args, name) is not None
    }
    takes = set(method_settings(method))
    for name in sorted(set(given) - takes):
        logger.warning("--%s is not a setting of %s; ignored", name.replace("_", "-"), method.value)
    miner = build_miner(method, num_negatives=args.num_negatives, **{k: v for k, v in given.items() if k in takes})
    if miner.needs_corpus and args.corpus is None:
        build_parser().error(f"--method {method.value} draws random negatives from the corpus: give --corpus")
    mine_files(miner, args.candidates, args.positive_scores, args.train, args.lang, args.out,
               args.corpus if miner.needs_corpus else None)
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
