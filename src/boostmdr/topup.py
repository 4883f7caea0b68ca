"""Stage 2, the final negative pool: every training query's stage-1 pool topped up to exactly N with the
best candidates its generated queries retrieved (paper Sec. 3.4, App. B.2), each negative with its provenance.

The generated queries (:mod:`boostmdr.generate`) are ranked by the same stage-1 ensemble through the same
rules (candidate runs of every member, fusion with the original query's positives removed). Then:

* ``candidates`` maps the generated queries' fused lists back to their training query: the new candidates
  of a query are its generated queries' fused hits (several generated queries: merged by reciprocal rank
  fusion, k = 60), in rank order, without the query's labelled positives and without **every candidate
  stage 1 already saw** (its fused list): those in the pool are there already, and those the judge removed
  were judged false negatives and must not come back through generation. The result is a TREC run keyed by
  the ORIGINAL query id, so the stage-1 judge judges the new candidates against the original query and its
  reference positive with the same rule (``judge_generated``), and a provenance file (which generated query
  brought each candidate, at which rank).
* ``pool`` builds the final pool of each query: the stage-1 pool as it is, in its order (cut to its first N
  when it holds more, counted), then new candidates in rank order, each kept if the judge's verdict is in
  ``--keep`` (judged top-up, the default) or kept as they come (``--no-judge``), until the pool holds N. A
  query that cannot reach N keeps what it has and records its ``shortfall`` in ``meta``: a pool is never
  padded. ``--no-generation`` gives the "w/o stage 2" pool (stage 1 cut to N, shortfalls recorded). Stage-1
  negatives keep their ``source`` (``stage1:<ensemble>``); new ones get ``stage2:<ensemble>`` and ``extra``
  ``{"gid", "generated_rank", "judged", "verdict", "votes"}``.
* ``roundtrip`` (as Promptagator's consistency check): whether each generated query retrieves the positive it
  was written from within the top ``k`` of the ensemble's fused member runs (positives not removed), and the
  share per language; also whether any labelled positive of its training query is there.
* ``falsenegatives`` (synthetic benchmark, analysis only): the share of the negatives that generation brought
  in that are planted false negatives (relevant in the complete truth file), in the judged and in the
  unjudged final pool, beside the same share among the stage-1 negatives. The method never reads the truth.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .formats import (
    FormatError,
    Hit,
    Negative,
    NegativesRecord,
    read_generated_queries,
    read_jsonl,
    read_negatives,
    read_qrels,
    read_run,
    read_train,
    read_verdicts,
    write_json,
    write_jsonl,
    write_negatives,
    write_run,
)
from .fusion import FusionMethod, FusionSettings, fuse, reciprocal_rank_fusion
from .utils import setup_logging

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 30
"""N: negatives per query after stage 2 (paper App. B.2)."""
DEFAULT_ROUNDTRIP_K = 10
"""The round-trip check's cut-off: is the source positive in the generated query's top 10?"""


@dataclass(frozen=True)
class NewCandidate:
    """A candidate a training query's generated queries brought, in the order the top-up considers them."""

    qid: str
    docid: str
    rank: int
    score: float
    gid: str
    generated_rank: int


# --------------------------------------------------------------------------------------- candidates


def map_candidates(
    generated_path: str | os.PathLike,
    fused_path: str | os.PathLike,
    stage1_path: str | os.PathLike,
    train_path: str | os.PathLike,
) -> list[NewCandidate]:
    """The new candidates of every training query (module docstring), in training-file order."""
    train = read_train(train_path)
    generated = [g for g in read_generated_queries(generated_path) if g.status == "ok"]
    fused = read_run(fused_path)
    stray = sorted(set(fused) - {g.gid for g in generated})
    if stray:
        raise FormatError(fused_path, None, f"{len(stray)} query ids are not generated queries of {generated_path}, e.g. {stray[:3]}")
    stage1 = read_run(stage1_path)
    by_qid: dict[str, list[str]] = {}
    for g in generated:
        if g.qid not in train:
            raise FormatError(generated_path, None, f"generated query {g.gid!r} is for {g.qid!r}, which is not in {train_path}")
        by_qid.setdefault(g.qid, []).append(g.gid)
    out: list[NewCandidate] = []
    for qid in train:
        gids = by_qid.get(qid, [])
        lists = {gid: fused.get(gid, []) for gid in gids}
        origin: dict[str, tuple[str, int]] = {}
        for gid, hits in lists.items():
            for r, h in enumerate(hits, start=1):
                if h.docid not in origin or r < origin[h.docid][1]:
                    origin[h.docid] = (gid, r)
        if len(gids) > 1:
            ranked = reciprocal_rank_fusion([{qid: hits} for hits in lists.values()]).get(qid, [])
        else:
            ranked = lists[gids[0]] if gids else []
        seen = {h.docid for h in stage1.get(qid, [])} | set(train[qid].positives)
        rank = 0
        for h in ranked:
            if h.docid in seen:
                continue
            rank += 1
            gid, grank = origin[h.docid]
            out.append(NewCandidate(qid, h.docid, rank, h.score, gid, grank))
    return out


def write_candidates(run_path: str | os.PathLike, provenance_path: str | os.PathLike, cands: Sequence[NewCandidate]) -> None:
    """The new candidates as a TREC run (original query ids, for the judge) and their provenance."""
    run: dict[str, list[Hit]] = {}
    for c in cands:
        run.setdefault(c.qid, []).append(Hit(c.docid, -float(c.rank)))  # rank order survives any re-sort
    write_run(run_path, run, tag="stage2.new")
    write_jsonl(provenance_path, (c.__dict__ for c in cands))


def read_candidates(path: str | os.PathLike) -> dict[str, list[NewCandidate]]:
    out: dict[str, list[NewCandidate]] = {}
    for lineno, rec in read_jsonl(path):
        try:
            c = NewCandidate(str(rec["qid"]), str(rec["docid"]), int(rec["rank"]), float(rec["score"]), str(rec["gid"]), int(rec["generated_rank"]))
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(path, lineno, f"not a new-candidate record ({err})") from None
        out.setdefault(c.qid, []).append(c)
    return out


# --------------------------------------------------------------------------------------------- pool


def top_up(
    pool: Sequence[NegativesRecord],
    candidates: dict[str, list[NewCandidate]] | None,
    size: int,
    source: str,
    keep: frozenset[int] | None = None,
    verdicts: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> tuple[list[NegativesRecord], dict[str, Any]]:
    """The final pools (module docstring) and their statistics. ``candidates`` ``None``: no generation;
    ``keep`` ``None``: new candidates are not judged; else ``verdicts`` must hold every one of them."""
    if size < 1:
        raise ValueError(f"pool size N must be >= 1, got {size}")
    out: list[NegativesRecord] = []
    t: Counter[str] = Counter()
    missing: list[tuple[str, str]] = []
    for rec in pool:
        negatives = list(rec.negatives[:size])
        cut = len(rec.negatives) - len(negatives)
        from_stage1 = len(negatives)
        seen = {n.docid for n in negatives} | set(rec.positives)
        considered = removed = unjudged = 0
        for c in (candidates or {}).get(rec.qid, []) if len(negatives) < size else []:
            if len(negatives) >= size:
                break
            if c.docid in seen:
                continue
            considered += 1
            extra: dict[str, Any] = {"gid": c.gid, "generated_rank": c.generated_rank, "judged": keep is not None}
            if keep is not None:
                v = (verdicts or {}).get((rec.qid, c.docid))
                if v is None:
                    missing.append((rec.qid, c.docid))
                    continue
                if v["verdict"] is None:
                    unjudged += 1
                    continue
                if v["verdict"] not in keep:
                    removed += 1
                    continue
                extra.update(verdict=v["verdict"], votes=v.get("votes", {}))
            negatives.append(Negative(c.docid, c.score, c.rank, source, extra))
            seen.add(c.docid)
        shortfall = size - len(negatives)
        meta = {
            **rec.meta,
            "pool_size": size,
            "stage1_negatives": len(rec.negatives),
            "from_stage1": from_stage1,
            "from_stage2": len(negatives) - from_stage1,
            "dropped_over_pool_size": cut,
            "new_considered": considered,
            "new_removed_by_judge": removed,
            "new_unjudged": unjudged,
            "shortfall": shortfall,
        }
        out.append(NegativesRecord(rec.qid, rec.query, rec.lang, list(rec.positives), negatives, meta))
        t["queries"] += 1
        t["below_pool_size"] += len(rec.negatives) < size
        t["from_stage1"] += from_stage1
        t["from_stage2"] += len(negatives) - from_stage1
        t["dropped_over_pool_size"] += cut
        t["new_considered"] += considered
        t["new_removed_by_judge"] += removed
        t["new_unjudged"] += unjudged
        t["queries_with_shortfall"] += shortfall > 0
        t["shortfall"] += shortfall
    if missing:
        raise ValueError(
            f"{len(missing)} new candidates have no verdict, e.g. {missing[:3]}: pass the verdict files of every "
            "chunk of judge_generated, made from these candidates"
        )
    total = t["from_stage1"] + t["from_stage2"]
    judged = t["new_considered"] - t["new_unjudged"]
    stats = {
        **dict(t),
        "negatives": total,
        "from_retrieval_share": t["from_stage1"] / total if total else None,
        "from_llm_share": t["from_stage2"] / total if total else None,
        "new_removed_share": (t["new_removed_by_judge"] / judged) if keep is not None and judged else None,
        "judged": keep is not None,
        "generation": candidates is not None,
    }
    return out, stats


# ---------------------------------------------------------------------------------------- analysis


def round_trip(
    generated_path: str | os.PathLike,
    run_paths: Sequence[str | os.PathLike],
    train_path: str | os.PathLike,
    settings: FusionSettings,
    k: int,
) -> dict[str, Any]:
    """Whether each generated query retrieves its source positive (and any positive of its training query)
    in the top ``k`` of the fused member runs (module docstring)."""
    train = read_train(train_path)
    generated = [g for g in read_generated_queries(generated_path) if g.status == "ok"]
    runs = [read_run(p) for p in run_paths]
    fused = fuse(runs, FusionSettings(settings.method, k, settings.rrf_k))
    per_query: dict[str, int | None] = {}
    source_hits = any_hits = 0
    for g in generated:
        top = [h.docid for h in fused.get(g.gid, [])]
        rank = top.index(g.source_docid) + 1 if g.source_docid in top else None
        per_query[g.gid] = rank
        source_hits += rank is not None
        any_hits += any(d in set(train[g.qid].positives) for d in top)
    n = len(generated)
    return {
        "k": k,
        "generated_queries": n,
        "source_positive_in_top_k": source_hits,
        "round_trip_share": source_hits / n if n else None,
        "any_positive_in_top_k": any_hits,
        "any_positive_share": any_hits / n if n else None,
        "source_positive_rank": per_query,
    }


def false_negative_shares(
    judged_path: str | os.PathLike, unjudged_path: str | os.PathLike, truth_path: str | os.PathLike
) -> dict[str, Any]:
    """Planted false negatives among the negatives generation brought in, with and without the judge, and
    among the stage-1 negatives (analysis only: reads the synthetic benchmark's complete truth)."""
    truth = read_qrels(truth_path)

    def share(path: str | os.PathLike, stage: str) -> dict[str, Any]:
        n = fn = 0
        for rec in read_negatives(path):
            rel = truth.get(rec.qid, {})
            for neg in rec.negatives:
                if neg.source.startswith(stage):
                    n += 1
                    fn += rel.get(neg.docid, 0) > 0
        return {"negatives": n, "false_negatives": fn, "share": fn / n if n else None}

    return {
        "truth": str(truth_path),
        "stage2_judged": share(judged_path, "stage2:"),
        "stage2_unjudged": share(unjudged_path, "stage2:"),
        "stage1": share(judged_path, "stage1:"),
    }


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m boostmdr.topup", description="Stage 2: top every pool up to N.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("candidates", help="map the generated queries' fused candidates back to their training query")
    c.add_argument("--generated", required=True, help="generated queries (python -m boostmdr.generate)")
    c.add_argument("--fused", required=True, help="fused run of the generated queries (positives removed)")
    c.add_argument("--stage1", required=True, help="stage-1 fused run of the training queries (every candidate stage 1 saw)")
    c.add_argument("--train", required=True)
    c.add_argument("--out", required=True, help="TREC run of the new candidates, keyed by the training query")
    c.add_argument("--provenance", required=True, help="which generated query brought each candidate (JSON lines)")
    c.add_argument("--log", default=None)

    pl = sub.add_parser("pool", help="the final pools: stage 1 topped up to N")
    pl.add_argument("--pool", required=True, help="stage-1 negatives file")
    pl.add_argument("--candidates", default=None, help="provenance file of the new candidates (topup candidates)")
    pl.add_argument("--verdicts", nargs="*", default=[], help="verdict files of the new candidates (every chunk)")
    pl.add_argument("--keep", default="0", help="verdicts kept: 0 (authors' code) or 0,1")
    pl.add_argument("--no-judge", action="store_true", help="take new candidates without the judge")
    pl.add_argument("--no-generation", action="store_true", help="no top-up: stage 1 cut to N ('w/o stage 2')")
    pl.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="N")
    pl.add_argument("--source", required=True, help="provenance tag of new negatives, e.g. stage2:me5_bge")
    pl.add_argument("--lang", required=True)
    pl.add_argument("--out", required=True)
    pl.add_argument("--stats", required=True)
    pl.add_argument("--log", default=None)

    rt = sub.add_parser("roundtrip", help="does each generated query retrieve its own positive?")
    rt.add_argument("--generated", required=True)
    rt.add_argument("--runs", nargs="+", required=True, help="the ensemble members' candidate runs of the generated queries")
    rt.add_argument("--train", required=True, help="train.jsonl of the training queries")
    rt.add_argument("--method", choices=[m.value for m in FusionMethod], default=FusionMethod.RRF.value)
    rt.add_argument("--rrf-k", type=float, default=60.0)
    rt.add_argument("--k", type=int, default=DEFAULT_ROUNDTRIP_K)
    rt.add_argument("--lang", required=True)
    rt.add_argument("--out", required=True)
    rt.add_argument("--log", default=None)

    fn = sub.add_parser("falsenegatives", help="planted false negatives among generated negatives (synthetic only)")
    fn.add_argument("--judged", required=True, help="final pool with judged top-up")
    fn.add_argument("--unjudged", required=True, help="final pool with unjudged top-up")
    fn.add_argument("--truth", required=True, help="synthetic-truth/{lang}.train.complete-qrels.tsv")
    fn.add_argument("--lang", required=True)
    fn.add_argument("--out", required=True)
    fn.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .judge import parse_keep

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    if args.command == "candidates":
        cands = map_candidates(args.generated, args.fused, args.stage1, args.train)
        write_candidates(args.out, args.provenance, cands)
        log.info("%d new candidates for %d training queries", len(cands), len({c.qid for c in cands}))
    elif args.command == "pool":
        if args.no_generation and (args.candidates or args.verdicts):
            parser.error("--no-generation takes no --candidates or --verdicts")
        if not args.no_generation and not args.candidates:
            parser.error("give --candidates (or --no-generation)")
        judged = not (args.no_judge or args.no_generation)
        if judged and not args.verdicts:
            parser.error("the judged top-up needs --verdicts (or --no-judge)")
        candidates = None if args.no_generation else read_candidates(args.candidates)
        verdicts = read_verdicts(args.verdicts) if judged else None
        records, stats = top_up(
            read_negatives(args.pool), candidates, args.pool_size, args.source, parse_keep(args.keep) if judged else None, verdicts
        )
        write_negatives(args.out, records)
        write_json(args.stats, {"lang": args.lang, "pool": stats})
        log.info(
            "%s: %d queries, %d below N=%d; %d negatives from stage 1, %d from stage 2; %d queries short by %d in all",
            args.lang, stats["queries"], stats["below_pool_size"], args.pool_size, stats["from_stage1"],
            stats["from_stage2"], stats["queries_with_shortfall"], stats["shortfall"],
        )  # fmt: skip
    elif args.command == "roundtrip":
        settings = FusionSettings(FusionMethod(args.method), args.k, args.rrf_k)
        stats = round_trip(args.generated, args.runs, args.train, settings, args.k)
        write_json(args.out, {"lang": args.lang, "roundtrip": stats})
        log.info("%s: round trip %s of %d generated queries at k=%d", args.lang, stats["round_trip_share"], stats["generated_queries"], args.k)
    else:
        stats = false_negative_shares(args.judged, args.unjudged, args.truth)
        write_json(args.out, {"lang": args.lang, "false_negatives": stats})
        log.info("%s: %s", args.lang, stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
