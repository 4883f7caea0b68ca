"""Evaluation of TREC runs with trec_eval's semantics and ``-c`` (docs/formats.md, "Runs and evaluation"):
nDCG@10, Recall@100 and MRR@10 per query.

Per-query values come from pytrec_eval, which is trec_eval's own C code, so every detail of a
measure is trec_eval's:

* the rank column of the run is ignored; documents are ordered by score descending, and ties by docid
  *descending* (trec_eval's ``comp_sim_docno``). Our run writer breaks ties by docid ascending, so the
  order written in a file can differ from the order trec_eval scores under exact score ties; the
  metric is trec_eval's either way, and therefore comparable with Pyserini's published numbers;
* a document counts as relevant when its judgement is >= 1; nDCG gains are the judgement values;
* a query judged with rel 0 only has no relevant document: trec_eval computes it (nDCG's ideal gain
  is 0, so nDCG is left at 0; recall has no relevant document, so recall is 0) and averages it in, with
  or without ``-c``. pytrec_eval returns the same zeros, and so does this module.

MRR@10 (``mrr_cut_10``; any ``mrr_cut_K``) is what ``trec_eval -c -M 10 -m recip_rank`` reports, the way
MS MARCO-style MRR@10 is computed with trec_eval: trec_eval's ``recip_rank`` has no cut-off, so ``-M 10``
keeps only the first 10 documents of each query *in trec_eval's own order* (score descending, ties by docid
descending) and ``recip_rank`` is 1 / rank of the first relevant one among them, else 0. pytrec_eval has no
``-M``; this module cuts the run to the top K in that same order and asks pytrec_eval for ``recip_rank``.
(ir_measures' ``RR@10`` goes through the MS MARCO script instead, which breaks score ties by docid
*ascending*: the two differ only under exact score ties at the cut.) tests/test_evaluate.py checks the values
against the trec_eval binary itself.

What pytrec_eval leaves out is ``-c``: it only reports queries present in the run. We complete it as
trec_eval does: the mean runs over every query of the qrels (every query with at least one judgement
line), and a query missing from the run scores 0 on every measure. Queries of the run that the
qrels do not judge are ignored (as trec_eval ignores them) and logged; a non-empty run that shares
no query with the qrels is an error, since that is always a mix-up of files.

:func:`paired_ttest` compares two evaluations query by query (for the significance marks of tables).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from boostmdr import formats
from boostmdr.formats import EvalResult, Run, read_eval, write_eval
from boostmdr.utils import setup_logging

logger = logging.getLogger(__name__)

MEASURES: tuple[str, ...] = ("ndcg_cut_10", "recall_100", "mrr_cut_10")
"""The measures every evaluation file holds: the paper's two (named as pytrec_eval reports them) and MRR@10."""

RR_CUT_PREFIX = "mrr_cut_"
"""``mrr_cut_K``: trec_eval's ``recip_rank`` on the run cut to its top K (``trec_eval -M K``)."""


class EvaluationError(ValueError):
    """Evaluation cannot proceed (empty qrels, disjoint run, unknown measure, mismatched files)."""


def rr_cutoff(measure: str) -> int | None:
    """K of an ``mrr_cut_K`` measure, ``None`` for any other measure."""
    if not measure.startswith(RR_CUT_PREFIX):
        return None
    k = measure[len(RR_CUT_PREFIX):]
    if not k.isdigit() or int(k) < 1:
        raise EvaluationError(f"unknown measure {measure!r}: write MRR at a cut-off K >= 1 as mrr_cut_K, e.g. mrr_cut_10")
    return int(k)


def trec_eval_order(docs: Mapping[str, float]) -> list[str]:
    """Docids in trec_eval's order: score descending, ties by docid descending (``comp_sim_docno``)."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def cut_run(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    """The run that ``trec_eval -M k`` scores: each query's first ``k`` documents in trec_eval's order."""
    return {q: {d: docs[d] for d in trec_eval_order(docs)[:k]} for q, docs in run.items()}


def trec_eval_name(measure: str) -> str:
    """pytrec_eval's request name for a reported measure: ``ndcg_cut_10`` -> ``ndcg_cut.10``, ``map`` -> ``map``,
    ``mrr_cut_10`` -> ``recip_rank`` (asked on the run cut to 10, see :func:`cut_run`)."""
    import pytrec_eval

    if rr_cutoff(measure) is not None:
        return "recip_rank"
    if measure in pytrec_eval.supported_measures:
        return measure
    head, sep, cutoff = measure.rpartition("_")
    if sep and cutoff.isdigit() and head in pytrec_eval.supported_measures:
        return f"{head}.{cutoff}"
    raise EvaluationError(
        f"unknown measure {measure!r}: use a trec_eval measure name as pytrec_eval reports it, e.g. "
        f"{', '.join(MEASURES)}, map, P_10 (and mrr_cut_K: recip_rank of each query's top K)"
    )


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Run,
    measures: Sequence[str] = MEASURES,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """trec_eval ``-c`` values of ``run``: ``(aggregate, per_query)``, per_query in qrels order.

    Pure function; see the module docstring for the semantics.
    """
    import pytrec_eval

    if not qrels:
        raise EvaluationError("the qrels hold no judgements")
    measures = tuple(dict.fromkeys(measures))
    plain = [m for m in measures if rr_cutoff(m) is None]
    requests = {trec_eval_name(m) for m in plain}
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if docs}
    scored = {q: {h.docid: float(h.score) for h in hits} for q, hits in run.items() if hits and q in judged}

    unjudged = [q for q, hits in run.items() if hits and q not in judged]
    if unjudged:
        if not scored:
            raise EvaluationError(
                f"the run shares no query with the qrels ({len(unjudged)} run queries, e.g. {unjudged[:3]}; "
                f"qrels queries e.g. {list(judged)[:3]}): wrong run or qrels file?"
            )
        logger.warning("%d run queries are not in the qrels and are ignored (e.g. %s)", len(unjudged), unjudged[:3])

    # {measure: {qid: value}} for the queries of the run; a judged query absent from it scores 0 (-c)
    found: dict[str, dict[str, float]] = {m: {} for m in measures}
    if scored:
        if requests:
            evaluated = pytrec_eval.RelevanceEvaluator(judged, requests).evaluate(scored)
            for qid, got in evaluated.items():
                for m in plain:
                    if m not in got:
                        raise EvaluationError(f"pytrec_eval did not report {m!r} for query {qid!r}")
                    found[m][qid] = float(got[m])
        for m in measures:
            k = rr_cutoff(m)
            if k is not None:
                evaluated = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(cut_run(scored, k))
                found[m] = {qid: float(got["recip_rank"]) for qid, got in evaluated.items()}
    per_query = {qid: {m: found[m].get(qid, 0.0) for m in measures} for qid in judged}
    n = len(per_query)
    aggregate = {m: math.fsum(v[m] for v in per_query.values()) / n for m in measures}
    missing = n - len(scored)
    if missing:
        logger.info("%d of %d judged queries are absent from the run and score 0", missing, n)
    no_relevant = sum(1 for docs in judged.values() if not any(r >= 1 for r in docs.values()))
    if no_relevant:
        logger.info("%d of %d judged queries have no relevant document (rel 0 only) and score 0", no_relevant, n)
    return aggregate, per_query


def evaluate_files(
    qrels_path: str | os.PathLike, run_path: str | os.PathLike, measures: Sequence[str] = MEASURES
) -> EvalResult:
    qrels = formats.read_qrels(qrels_path)
    run = formats.read_run(run_path)
    aggregate, per_query = evaluate_run(qrels, run, measures)
    return EvalResult(run=str(run_path), qrels=str(qrels_path), num_queries=len(per_query),
                      aggregate=aggregate, per_query=per_query)


# ------------------------------------------------------------------------------------ significance


@dataclass(frozen=True)
class PairedTTest:
    """Two-sided paired t-test of ``b - a`` over the queries both evaluations share (all of them)."""

    measure: str
    num_queries: int
    mean_a: float
    mean_b: float
    t: float
    p: float

    @property
    def difference(self) -> float:
        return self.mean_b - self.mean_a

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p < alpha


def paired_ttest(a: EvalResult, b: EvalResult, measure: str) -> PairedTTest:
    """Per-query paired t-test between two evaluations of the same qrels.

    Both must cover the same queries (same qrels). When every per-query difference is 0 the test is
    undefined; it is reported as t = 0, p = 1 (no evidence of a difference).
    """
    from scipy import stats

    if set(a.per_query) != set(b.per_query):
        only_a = sorted(set(a.per_query) - set(b.per_query))[:3]
        only_b = sorted(set(b.per_query) - set(a.per_query))[:3]
        raise EvaluationError(
            f"cannot pair {a.run} and {b.run}: different query sets (only in first e.g. {only_a}, "
            f"only in second e.g. {only_b}); evaluate both runs against the same qrels"
        )
    if len(a.per_query) < 2:
        raise EvaluationError(f"a paired t-test needs at least 2 queries, have {len(a.per_query)}")
    qids = list(a.per_query)
    xa, xb = a.values(measure, qids), b.values(measure, qids)
    mean_a, mean_b = math.fsum(xa) / len(qids), math.fsum(xb) / len(qids)
    if all(x == y for x, y in zip(xa, xb)):
        return PairedTTest(measure, len(qids), mean_a, mean_b, 0.0, 1.0)
    res = stats.ttest_rel(xb, xa)
    t, p = float(res.statistic), float(res.pvalue)
    if math.isnan(p):  # constant non-zero difference: infinitely significant
        t, p = math.copysign(math.inf, mean_b - mean_a), 0.0
    return PairedTTest(measure, len(qids), mean_a, mean_b, t, p)


def paired_ttest_files(path_a: str | os.PathLike, path_b: str | os.PathLike, measure: str) -> PairedTTest:
    return paired_ttest(read_eval(path_a), read_eval(path_b), measure)


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m boostmdr.evaluate",
                                description="Evaluate a TREC run like `trec_eval -c` (nDCG@10, R@100, MRR@10).")
    p.add_argument("--qrels", required=True, help="TREC qrels (qid Q0 docid rel)")
    p.add_argument("--run", required=True, help="TREC run (qid Q0 docid rank score tag)")
    p.add_argument("--out", required=True, help="evaluation JSON to write")
    p.add_argument("--measures", nargs="+", default=list(MEASURES), help=f"default: {' '.join(MEASURES)}")
    p.add_argument("--threads", type=int, default=1, help="accepted for uniformity; evaluation is single-threaded")
    p.add_argument("--log", default=None)
    args = p.parse_args(argv)
    setup_logging(args.log)
    result = evaluate_files(args.qrels, args.run, args.measures)
    write_eval(args.out, result)
    logger.info("%s: %d queries, %s", args.run, result.num_queries,
                ", ".join(f"{m} {v:.4f}" for m, v in result.aggregate.items()))
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
