"""Fusion of several retrievers' candidate runs into one candidate list per training query (stage 1).

The paper's ensemble scores a (query, passage) pair by the logit of the concatenation of each
member's (projected) representation. For L2-normalised members that logit is the sum of the members'
cosine scores (docs/miners.md derives it), so the training-free reading is a sum of per-member scores
made comparable: **normalised score fusion** (per query, each run's scores are min-max normalised to
[0, 1], a document missing from a run contributes 0, the normalised scores are summed).
**Reciprocal rank fusion** (``sum 1 / (k + rank)``, k = 60) is the rank-based alternative that
ignores score scales altogether.

Order of operations, the same for both methods: fuse the runs as the retrievers produced them
(positives still in place, so every member's ranks and score range are its own), remove the query's
labelled positives, round the fused scores to the 6 decimals a TREC run keeps (so the ranks written
equal the order any reader recomputes), sort by score descending then docid ascending, and keep the
top ``depth`` (40 by default). A single run is not transformed: it is only cut to ``depth`` with
positives removed and keeps its own scores (the one-retriever variants of Table 4).

``python -m boostmdr.fusion --runs bge.trec me5.trec --method normalized --depth 40 --train
train.jsonl --tag ensemble --out fused.trec --log fuse.log``
"""

from __future__ import annotations

import argparse
import enum
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .formats import Hit, Run, read_run, read_train, sort_hits, write_run
from .utils import setup_logging

logger = logging.getLogger(__name__)

SCORE_DECIMALS = 6
"""Decimals of a score in a TREC run written by :func:`boostmdr.formats.write_run`."""


class FusionMethod(str, enum.Enum):
    RRF = "rrf"
    NORMALIZED = "normalized"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FusionSettings:
    """How candidate runs are fused; checked when built."""

    method: FusionMethod = FusionMethod.RRF
    depth: int = 40
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", FusionMethod(self.method))
        except ValueError:
            valid = ", ".join(m.value for m in FusionMethod)
            raise ValueError(f"fusion setting method={self.method!r} is invalid: valid methods are {valid}") from None
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"fusion setting depth={self.depth!r} is invalid: expected an integer >= 1")
        k = self.rrf_k
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
            raise ValueError(f"fusion setting rrf_k={k!r} is invalid: expected a finite number >= 0")


# --------------------------------------------------------------------------------- run -> run


def _query_order(runs: Sequence[Run]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for qid in run:
            seen.setdefault(qid, None)
    return list(seen)


def reciprocal_rank_fusion(runs: Sequence[Run], k: float = 60.0) -> Run:
    """RRF: a document's score is ``sum over runs of 1 / (k + rank)``, rank 1-based in that run's order.

    Each run's order is score descending, docid ascending (:func:`boostmdr.formats.sort_hits`); a run
    in which the document does not appear adds nothing.
    """
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, hits in run.items():
            acc = fused.setdefault(qid, {})
            for rank, hit in enumerate(sort_hits(hits), start=1):
                acc[hit.docid] = acc.get(hit.docid, 0.0) + 1.0 / (k + rank)
    return {qid: sort_hits(Hit(d, s) for d, s in fused[qid].items()) for qid in _query_order(runs)}


def min_max_normalize(run: Run) -> Run:
    """Per query, map scores to ``(s - min) / (max - min)``; a query whose scores are all equal gets 1.0."""
    out: Run = {}
    for qid, hits in run.items():
        if not hits:
            out[qid] = []
            continue
        lo = min(h.score for h in hits)
        hi = max(h.score for h in hits)
        span = hi - lo
        out[qid] = sort_hits(Hit(h.docid, (h.score - lo) / span if span > 0 else 1.0) for h in hits)
    return out


def normalized_score_fusion(runs: Sequence[Run]) -> Run:
    """Sum of per-query min-max normalised scores; a document missing from a run counts 0 there."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, hits in min_max_normalize(run).items():
            acc = fused.setdefault(qid, {})
            for hit in hits:
                acc[hit.docid] = acc.get(hit.docid, 0.0) + hit.score
    return {qid: sort_hits(Hit(d, s) for d, s in fused[qid].items()) for qid in _query_order(runs)}


def remove_positives(run: Run, positives: Mapping[str, Iterable[str]]) -> Run:
    """Drop every hit whose docid is a labelled positive of its query."""
    out: Run = {}
    for qid, hits in run.items():
        pos = set(positives.get(qid, ()))
        out[qid] = [h for h in hits if h.docid not in pos]
    return out


def cut(run: Run, depth: int) -> Run:
    """Rank each query's hits deterministically and keep the first ``depth``."""
    return {qid: sort_hits(hits)[:depth] for qid, hits in run.items()}


def round_scores(run: Run, decimals: int = SCORE_DECIMALS) -> Run:
    return {qid: [Hit(h.docid, round(h.score, decimals)) for h in hits] for qid, hits in run.items()}


def fuse(runs: Sequence[Run], settings: FusionSettings, positives: Mapping[str, Iterable[str]] | None = None) -> Run:
    """Fuse ``runs`` into one run: fuse, remove positives, round, rank, cut to ``settings.depth``.

    Queries left with no hit are dropped (a TREC run cannot list them).
    """
    if not runs:
        raise ValueError("fusion needs at least one run")
    if len(runs) == 1:
        fused = {qid: list(hits) for qid, hits in runs[0].items()}
    elif settings.method is FusionMethod.RRF:
        fused = round_scores(reciprocal_rank_fusion(runs, settings.rrf_k))
    else:
        fused = round_scores(normalized_score_fusion(runs))
    if positives is not None:
        fused = remove_positives(fused, positives)
    return {qid: hits for qid, hits in cut(fused, settings.depth).items() if hits}


def fuse_files(
    run_paths: Sequence[str | os.PathLike],
    settings: FusionSettings,
    train_path: str | os.PathLike,
    tag: str,
    out_path: str | os.PathLike,
) -> Run:
    """Read the member runs and ``train.jsonl``, fuse, and write the fused run in training-file order."""
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag {tag!r} is invalid: it must be non-empty and contain no whitespace")
    names = [os.path.normpath(p) for p in run_paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"run(s) given more than once: {', '.join(dupes)} (each member counts once)")
    train = read_train(train_path)
    runs = []
    for path in run_paths:
        run = read_run(path)
        stray = [qid for qid in run if qid not in train]
        if stray:
            raise ValueError(
                f"{path}: {len(stray)} query id(s) not in {train_path} (e.g. {stray[0]!r}); "
                "the run and the training file come from different data"
            )
        logger.info("%s: %d queries", path, len(run))
        runs.append(run)
    fused = fuse(runs, settings, {q.qid: q.positives for q in train.values()})
    ordered = {qid: fused[qid] for qid in train if qid in fused}
    write_run(out_path, ordered, tag=tag)
    lengths = [len(h) for h in ordered.values()]
    members = "single run (no fusion)" if len(runs) == 1 else f"{len(runs)} runs by {settings.method.value}"
    if settings.method is FusionMethod.RRF and len(runs) > 1:
        members += f" (k={settings.rrf_k:g})"
    logger.info(
        "%s: %s, depth %d, positives removed: %d of %d training queries listed, %.2f candidates per listed query, "
        "%d with fewer than %d",
        out_path,
        members,
        settings.depth,
        len(ordered),
        len(train),
        sum(lengths) / len(lengths) if lengths else 0.0,
        sum(1 for n in lengths if n < settings.depth),
        settings.depth,
    )
    missing = len(train) - len(ordered)
    if missing:
        logger.warning("%s: %d training queries have no non-positive candidate in any run", out_path, missing)
    return ordered


# -------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m boostmdr.fusion",
        description="Fuse several retrievers' candidate runs into one top-depth list per query, positives removed.",
    )
    p.add_argument("--runs", nargs="+", required=True, help="member TREC runs (one per retriever)")
    p.add_argument("--method", choices=[m.value for m in FusionMethod], default=FusionMethod.RRF.value)
    p.add_argument("--rrf-k", type=float, default=None, help="RRF constant k (default 60)")
    p.add_argument("--depth", type=int, default=FusionSettings.depth)
    p.add_argument("--train", required=True, help="prepared train.jsonl (its positives are removed)")
    p.add_argument("--tag", required=True, help="run tag written in the last column")
    p.add_argument("--out", required=True)
    p.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    method = FusionMethod(args.method)
    if args.rrf_k is not None and method is not FusionMethod.RRF:
        logger.warning("--rrf-k is a setting of rrf only; ignored by %s", method.value)
    rrf_k = args.rrf_k if args.rrf_k is not None and method is FusionMethod.RRF else 60.0
    settings = FusionSettings(method=method, depth=args.depth, rrf_k=rrf_k)
    fuse_files(args.runs, settings, args.train, args.tag, args.out)
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
