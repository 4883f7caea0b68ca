"""nDCG@10, R@100 and MRR@10 with trec_eval -c semantics: hand-computed values, ties, missing and unjudgeable
queries, and MRR@10 against the trec_eval binary itself."""

from __future__ import annotations

import json
import math
import random

import pytest
import pytrec_eval

from boostmdr.evaluate import EvaluationError, evaluate_run, main, paired_ttest
from boostmdr.formats import EvalResult, Hit, read_eval, read_run, write_run

from conftest import trec_eval_binary


def log2(x: float) -> float:
    return math.log(x, 2)


def run_of(**queries: list[tuple[str, float]]) -> dict[str, list[Hit]]:
    return {q: [Hit(d, s) for d, s in hits] for q, hits in queries.items()}


def test_ndcg_and_recall_by_hand():
    # relevant a, b; c judged non-relevant; x unjudged. Ranking x, a, c, b -> gains at ranks 2 and 4.
    qrels = {"q": {"a": 1, "b": 1, "c": 0}}
    run = run_of(q=[("x", 4.0), ("a", 3.0), ("c", 2.0), ("b", 1.0)])
    agg, per_query = evaluate_run(qrels, run)
    dcg = 1 / log2(3) + 1 / log2(5)
    idcg = 1 + 1 / log2(3)
    assert per_query["q"]["ndcg_cut_10"] == pytest.approx(dcg / idcg, abs=1e-12)  # 0.650921...
    assert per_query["q"]["ndcg_cut_10"] == pytest.approx(0.6509209298071326, abs=1e-12)
    assert per_query["q"]["recall_100"] == 1.0
    assert per_query["q"]["mrr_cut_10"] == 0.5  # first relevant document (a) at rank 2
    assert agg == per_query["q"]


def test_cutoffs_only_count_the_top_10_and_top_100():
    qrels = {"q": {"r": 1, "s": 1}}
    # r at rank 11 (outside nDCG@10), s at rank 101 (outside R@100)
    hits = [(f"n{i:03d}", 1000.0 - i) for i in range(10)] + [("r", 500.0)]
    hits += [(f"m{i:03d}", 400.0 - i) for i in range(89)] + [("s", 1.0)]
    agg, _ = evaluate_run(qrels, run_of(q=hits))
    assert agg == {"ndcg_cut_10": 0.0, "recall_100": 0.5, "mrr_cut_10": 0.0}  # r at rank 11: outside MRR@10


def test_score_ties_are_broken_by_docid_descending_like_trec_eval(tmp_path):
    # a (relevant) and b tie. trec_eval orders ties by docid descending: b first, a second.
    qrels = {"q": {"a": 1}}
    run = run_of(q=[("a", 1.0), ("b", 1.0)])
    direct = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate({"q": {"a": 1.0, "b": 1.0}})
    assert direct["q"]["ndcg_cut_10"] == pytest.approx(1 / log2(3))
    # Our writer puts a at rank 1 (docid ascending), but the rank column does not change the metric.
    path = tmp_path / "tie.trec"
    write_run(path, run, tag="t")
    assert path.read_text().splitlines()[0] == "q Q0 a 1 1.000000 t"
    _, per_query = evaluate_run(qrels, read_run(path))
    assert per_query["q"]["ndcg_cut_10"] == pytest.approx(1 / log2(3))


def test_missing_query_and_rel_zero_only_query_score_zero_and_count_in_the_mean():
    qrels = {
        "found": {"a": 1},
        "missing": {"b": 1},           # not in the run -> 0 (trec_eval -c)
        "unjudgeable": {"c": 0},       # only rel 0 -> 0, still averaged in
    }
    run = run_of(found=[("a", 2.0)], unjudgeable=[("c", 1.0)], extra=[("z", 1.0)])  # extra: not judged, ignored
    agg, per_query = evaluate_run(qrels, run)
    assert list(per_query) == ["found", "missing", "unjudgeable"]
    assert per_query["found"] == {"ndcg_cut_10": 1.0, "recall_100": 1.0, "mrr_cut_10": 1.0}
    assert per_query["missing"] == {"ndcg_cut_10": 0.0, "recall_100": 0.0, "mrr_cut_10": 0.0}
    assert per_query["unjudgeable"] == {"ndcg_cut_10": 0.0, "recall_100": 0.0, "mrr_cut_10": 0.0}
    third = pytest.approx(1 / 3)
    assert agg == {"ndcg_cut_10": third, "recall_100": third, "mrr_cut_10": third}


def test_empty_run_scores_zero_over_all_qrels_queries():
    agg, per_query = evaluate_run({"1": {"a": 1}, "2": {"b": 1}}, {})
    assert agg == {"ndcg_cut_10": 0.0, "recall_100": 0.0, "mrr_cut_10": 0.0}
    assert len(per_query) == 2


def test_mrr_at_10_cuts_the_run_in_trec_evals_order_before_recip_rank():
    # Nine documents above, then the relevant a and the non-relevant b tie at ranks 10 and 11. trec_eval orders
    # ties by docid descending, so b takes rank 10 and a falls to rank 11: outside the cut, RR@10 = 0 (trec_eval
    # -M 10 agrees: tests below), although our run writer would print a at rank 10 (docid ascending).
    higher = [(f"h{i}", 10.0 - i) for i in range(9)]
    qrels = {"tie": {"a": 1}, "third": {"r": 1}, "absent": {"z": 1}, "eleventh": {"m": 1}}
    run = run_of(
        tie=[*higher, ("a", 0.5), ("b", 0.5)],
        third=[("x", 3.0), ("y", 2.0), ("r", 1.0)],
        eleventh=[(f"n{i:02d}", 100.0 - i) for i in range(10)] + [("m", 1.0)],
    )
    agg, per_query = evaluate_run(qrels, run, ["mrr_cut_10", "recip_rank"])
    assert {q: v["mrr_cut_10"] for q, v in per_query.items()} == {"tie": 0.0, "third": 1 / 3, "absent": 0.0,
                                                                  "eleventh": 0.0}
    # without the cut, trec_eval's recip_rank counts ranks 11 and beyond
    assert per_query["tie"]["recip_rank"] == pytest.approx(1 / 11)
    assert per_query["eleventh"]["recip_rank"] == pytest.approx(1 / 11)
    assert agg["mrr_cut_10"] == pytest.approx((1 / 3) / 4)  # -c: the absent query counts, as 0
    _, cut5 = evaluate_run(qrels, run, ["mrr_cut_5"])
    assert cut5["third"]["mrr_cut_5"] == pytest.approx(1 / 3)
    with pytest.raises(EvaluationError, match="mrr_cut_K"):
        evaluate_run(qrels, run, ["mrr_cut_0"])


def test_mrr_at_10_equals_trec_eval_dash_M_10_recip_rank(tmp_path):
    import subprocess

    trec_eval = trec_eval_binary(tmp_path)
    rng = random.Random(11)
    docs = [f"d{i:02d}" for i in range(40)]
    qrels = {f"q{i}": {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 6))} for i in range(40)}
    run = {  # few distinct scores: many ties, several across the cut at 10; the last 5 queries are absent
        q: [Hit(d, float(rng.randint(0, 4))) for d in rng.sample(docs, rng.randint(1, 30))] for q in list(qrels)[:35]
    }
    qrels_path, run_path = tmp_path / "qrels", tmp_path / "run"
    qrels_path.write_text("".join(f"{q} 0 {d} {r}\n" for q, ds in qrels.items() for d, r in ds.items()))
    write_run(run_path, run, tag="t")
    out = subprocess.run([str(trec_eval), "-c", "-q", "-M", "10", "-m", "recip_rank", str(qrels_path), str(run_path)],
                         capture_output=True, text=True, check=True).stdout
    expected = {q: float(v) for _, q, v in (line.split() for line in out.splitlines())}
    agg, per_query = evaluate_run(qrels, read_run(run_path), ["mrr_cut_10"])
    assert agg["mrr_cut_10"] == pytest.approx(expected.pop("all"), abs=5e-5)  # trec_eval prints 4 decimals
    assert len(expected) == 35  # trec_eval -q lists the queries of the run only; -c averages over all 40
    for q, value in expected.items():
        assert per_query[q]["mrr_cut_10"] == pytest.approx(value, abs=5e-5), q
    assert sum(1 for q in qrels if q not in expected and per_query[q]["mrr_cut_10"] == 0.0) == 5


def test_run_disjoint_from_qrels_is_an_error():
    with pytest.raises(EvaluationError, match="shares no query with the qrels"):
        evaluate_run({"1": {"a": 1}}, run_of(other=[("a", 1.0)]))


def _reference_ndcg10_recall100(judged: dict[str, int], scores: dict[str, float]) -> tuple[float, float, float]:
    """Independent re-implementation: sort by score desc, ties by docid desc; gains = judgements; MRR@10 is
    1 / rank of the first relevant document within the top 10."""
    ranked = [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
    dcg = sum(max(judged.get(d, 0), 0) / log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)
    idcg = sum(g / log2(i + 2) for i, g in enumerate(ideal[:10]))
    relevant = {d for d, g in judged.items() if g >= 1}
    recall = len(relevant & set(ranked[:100])) / len(relevant) if relevant else 0.0
    rr = next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if d in relevant), 0.0)
    return (dcg / idcg if idcg > 0 else 0.0), recall, rr


def test_random_runs_with_many_ties_match_an_independent_implementation():
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(60)]
    qrels = {f"q{i}": {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 12))} for i in range(30)}
    run = {
        q: [Hit(d, float(rng.randint(0, 5))) for d in rng.sample(docs, rng.randint(0, 40))]  # few distinct scores
        for q in list(qrels)[:25]
    }
    agg, per_query = evaluate_run(qrels, run)
    expected = {}
    for q, judged in qrels.items():
        scores = {h.docid: h.score for h in run.get(q, [])}
        expected[q] = _reference_ndcg10_recall100(judged, scores) if scores else (0.0, 0.0, 0.0)
        assert per_query[q]["ndcg_cut_10"] == pytest.approx(expected[q][0], abs=1e-9), q
        assert per_query[q]["recall_100"] == pytest.approx(expected[q][1], abs=1e-9), q
        assert per_query[q]["mrr_cut_10"] == pytest.approx(expected[q][2], abs=1e-12), q
    assert agg["ndcg_cut_10"] == pytest.approx(sum(v[0] for v in expected.values()) / 30, abs=1e-12)


def test_cli_writes_the_documented_json(tmp_path):
    (tmp_path / "dev.qrels.tsv").write_text("1 Q0 a 1\n1 Q0 b 0\n2 Q0 c 1\n")
    (tmp_path / "run.trec").write_text("1 Q0 b 1 2.0 t\n1 Q0 a 2 1.0 t\n")
    out = tmp_path / "eval" / "sw.json"
    assert main(["--qrels", str(tmp_path / "dev.qrels.tsv"), "--run", str(tmp_path / "run.trec"),
                 "--out", str(out), "--log", str(tmp_path / "eval.log")]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["run", "qrels", "num_queries", "aggregate", "per_query"]
    assert data["num_queries"] == 2
    assert data["per_query"] == {
        "1": {"ndcg_cut_10": pytest.approx(1 / log2(3)), "recall_100": 1.0, "mrr_cut_10": 0.5},
        "2": {"ndcg_cut_10": 0.0, "recall_100": 0.0, "mrr_cut_10": 0.0},
    }
    assert data["aggregate"]["recall_100"] == 0.5
    assert read_eval(out).per_query["1"]["recall_100"] == 1.0


def _eval(values: list[float]) -> EvalResult:
    pq = {f"q{i}": {"ndcg_cut_10": v} for i, v in enumerate(values)}
    return EvalResult("r", "q", len(pq), {"ndcg_cut_10": sum(values) / len(values)}, pq)


def test_paired_ttest_matches_closed_form_for_two_degrees_of_freedom():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3.
    # Student t with 2 df: CDF(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2).
    res = paired_ttest(_eval([0.5, 0.5, 0.5]), _eval([0.6, 0.7, 0.8]), "ndcg_cut_10")
    t = 2 * math.sqrt(3)
    assert res.t == pytest.approx(t)
    assert res.p == pytest.approx(1 - t / math.sqrt(2 + t * t))  # 0.07418
    assert res.difference == pytest.approx(0.2)
    assert not res.significant(0.05) and res.significant(0.1)


def test_paired_ttest_identical_runs_and_mismatched_queries():
    same = paired_ttest(_eval([0.1, 0.4]), _eval([0.1, 0.4]), "ndcg_cut_10")
    assert (same.t, same.p) == (0.0, 1.0)
    other = EvalResult("r2", "q", 2, {"ndcg_cut_10": 0.0}, {"q0": {"ndcg_cut_10": 0.0}, "zz": {"ndcg_cut_10": 0.0}})
    with pytest.raises(EvaluationError, match="different query sets"):
        paired_ttest(_eval([0.1, 0.4]), other, "ndcg_cut_10")
