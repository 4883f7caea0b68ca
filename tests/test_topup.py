"""Stage 2's top-up on hand-worked examples: new candidates mapped back to their training query (positives and
every stage-1 candidate skipped), pools topped up to exactly N with provenance, shortfalls recorded and never
padded, pools above N cut, the round-trip check and the planted-false-negative analysis."""

from __future__ import annotations

import json

import pytest

from boostmdr.formats import (
    GeneratedQuery,
    Hit,
    LabelledQuery,
    Negative,
    NegativesRecord,
    read_negatives,
    write_generated_queries,
    write_negatives,
    write_qrels,
    write_run,
    write_train,
)
from boostmdr.fusion import FusionMethod, FusionSettings
from boostmdr.topup import NewCandidate, false_negative_shares, main, map_candidates, round_trip, top_up


def _gq(gid, qid, source="p1", status="ok", query="new query"):
    return GeneratedQuery(gid, qid, "sw", "pdbg", source, "a summary", query if status == "ok" else None, status)


def _neg(docid, source="stage1:e"):
    return Negative(docid, 1.0, 1, source, {"verdict": 0})


def test_new_candidates_skip_positives_and_everything_stage1_saw_and_merge_generated_queries(tmp_path):
    write_train(tmp_path / "train.jsonl", [LabelledQuery("q1", "first", ("p1",)), LabelledQuery("q2", "second", ("p2",)),
                                           LabelledQuery("q3", "third", ("p3",))])  # fmt: skip
    write_generated_queries(tmp_path / "gen.jsonl", [
        _gq("q1.g0", "q1"), _gq("q2.g0", "q2"), _gq("q2.g1", "q2"), _gq("q3.g0", "q3", status="summary_failed"),
    ])  # fmt: skip
    # q1's generated query retrieved a stage-1 candidate (s1, kept or removed alike) and the positive p1 (a
    # second copy of it: the fuse rule removes positives, this checks the mapping does not rely on it).
    write_run(tmp_path / "fused.trec", {
        "q1.g0": [Hit("s1", 0.9), Hit("n1", 0.8), Hit("p1", 0.7), Hit("n2", 0.6)],
        "q2.g0": [Hit("a", 0.9), Hit("b", 0.8)],
        "q2.g1": [Hit("b", 0.9), Hit("c", 0.8)],
    }, tag="t")  # fmt: skip
    write_run(tmp_path / "stage1.trec", {"q1": [Hit("s1", 1.0), Hit("s2", 0.5)], "q2": [Hit("x", 1.0)]}, tag="t")
    cands = map_candidates(tmp_path / "gen.jsonl", tmp_path / "fused.trec", tmp_path / "stage1.trec", tmp_path / "train.jsonl")
    q1 = [(c.docid, c.rank, c.gid, c.generated_rank) for c in cands if c.qid == "q1"]
    assert q1 == [("n1", 1, "q1.g0", 2), ("n2", 2, "q1.g0", 4)]
    # q2: RRF over its two generated queries (k = 60): b = 1/62 + 1/61 > a = 1/61 > c = 1/62; b's best rank is in g1.
    q2 = [(c.docid, c.rank, c.gid, c.generated_rank) for c in cands if c.qid == "q2"]
    assert q2 == [("b", 1, "q2.g1", 1), ("a", 2, "q2.g0", 1), ("c", 3, "q2.g1", 2)]
    assert [c for c in cands if c.qid == "q3"] == []  # its generation failed: no candidates


def test_top_up_reaches_exactly_n_with_provenance_records_shortfall_and_cuts_long_pools():
    pool = [
        NegativesRecord("q1", "first", "sw", ["p1"], [_neg("a"), _neg("b"), _neg("c")]),
        NegativesRecord("q2", "second", "sw", ["p2"], [_neg("d")]),
        NegativesRecord("q3", "third", "sw", ["p3"], [_neg(x) for x in "efghij"]),
    ]
    new = {
        "q1": [NewCandidate("q1", d, r, -r, "q1.g0", r + 1) for r, d in enumerate(["n1", "b", "n2", "n3", "n4", "n5"], 1)],
        "q2": [NewCandidate("q2", "m1", 1, -1.0, "q2.g0", 3)],
    }
    verdicts = {
        ("q1", "n1"): {"verdict": 2, "votes": {"2": 4}},  # a false negative: removed
        ("q1", "n2"): {"verdict": None},  # no parsed sample: left out
        ("q1", "n3"): {"verdict": 0, "votes": {"0": 3, "1": 1}},
        ("q1", "n4"): {"verdict": 0, "votes": {"0": 4}},
        ("q1", "n5"): {"verdict": 0, "votes": {"0": 4}},
        ("q2", "m1"): {"verdict": 1, "votes": {"1": 4}},
    }
    out, stats = top_up(pool, new, 5, "stage2:e", frozenset({0}), verdicts)
    q1, q2, q3 = out
    assert [n.docid for n in q1.negatives] == ["a", "b", "c", "n3", "n4"]  # b is in the pool already: skipped
    assert [n.source for n in q1.negatives] == ["stage1:e"] * 3 + ["stage2:e"] * 2
    assert q1.negatives[3].extra == {"gid": "q1.g0", "generated_rank": 5, "judged": True, "verdict": 0, "votes": {"0": 3, "1": 1}}
    assert (q1.meta["from_stage1"], q1.meta["from_stage2"], q1.meta["shortfall"]) == (3, 2, 0)
    assert (q1.meta["new_considered"], q1.meta["new_removed_by_judge"], q1.meta["new_unjudged"]) == (4, 1, 1)
    assert [n.docid for n in q2.negatives] == ["d"] and q2.meta["shortfall"] == 4  # never padded
    assert [n.docid for n in q3.negatives] == list("efghi") and q3.meta["dropped_over_pool_size"] == 1
    assert stats["from_stage1"] == 3 + 1 + 5 and stats["from_stage2"] == 2 and stats["negatives"] == 11
    assert stats["from_llm_share"] == pytest.approx(2 / 11) and stats["from_retrieval_share"] == pytest.approx(9 / 11)
    assert (stats["queries_with_shortfall"], stats["shortfall"], stats["below_pool_size"]) == (1, 4, 2)
    assert stats["new_removed_share"] == pytest.approx(2 / 4)  # n1 (2) and m1 (1) of the four judged (n2 is null)

    unjudged, _ = top_up(pool, new, 5, "stage2:e")
    assert [n.docid for n in unjudged[0].negatives] == ["a", "b", "c", "n1", "n2"]
    assert unjudged[0].negatives[3].extra == {"gid": "q1.g0", "generated_rank": 2, "judged": False}
    none, s = top_up(pool, None, 5, "stage2:e")
    assert [len(r.negatives) for r in none] == [3, 1, 5] and s["from_stage2"] == 0 and s["shortfall"] == 6


def test_top_up_refuses_candidates_without_a_verdict():
    pool = [NegativesRecord("q1", "first", "sw", ["p1"], [])]
    new = {"q1": [NewCandidate("q1", "n1", 1, -1.0, "q1.g0", 1)]}
    with pytest.raises(ValueError, match=r"1 new candidates have no verdict, e\.g\. \[\('q1', 'n1'\)\].*judge_generated"):
        top_up(pool, new, 2, "stage2:e", frozenset({0}), {})


def test_round_trip_finds_the_source_positive_in_the_fused_top_k(tmp_path):
    write_train(tmp_path / "train.jsonl", [LabelledQuery("q1", "a", ("p1", "p9")), LabelledQuery("q2", "b", ("p2",))])
    write_generated_queries(tmp_path / "gen.jsonl", [_gq("q1.g0", "q1", "p1"), _gq("q2.g0", "q2", "p2"), _gq("q1.g1", "q1", "p1")])
    write_run(tmp_path / "a.trec", {"q1.g0": [Hit("x", 3), Hit("p1", 2)], "q2.g0": [Hit("y", 3), Hit("z", 2), Hit("p2", 1)],
                                     "q1.g1": [Hit("p9", 3)]}, tag="a")  # fmt: skip
    write_run(tmp_path / "b.trec", {"q1.g0": [Hit("p1", 3)], "q2.g0": [Hit("p2", 3)], "q1.g1": [Hit("w", 3)]}, tag="b")
    rrf = FusionSettings(FusionMethod.RRF, 2, 60.0)
    out = round_trip(tmp_path / "gen.jsonl", [tmp_path / "a.trec", tmp_path / "b.trec"], tmp_path / "train.jsonl", rrf, 2)
    # q1.g0: p1 = 1/62 + 1/61 first. q2.g0: p2 = 1/63 + 1/61 > y = 1/61 > z: p2 first. q1.g1: p9 and w only.
    assert out["source_positive_rank"] == {"q1.g0": 1, "q2.g0": 1, "q1.g1": None}
    assert out["round_trip_share"] == pytest.approx(2 / 3) and out["any_positive_share"] == 1.0
    single = round_trip(tmp_path / "gen.jsonl", [tmp_path / "a.trec"], tmp_path / "train.jsonl", rrf, 2)
    assert single["source_positive_rank"] == {"q1.g0": 2, "q2.g0": None, "q1.g1": None}


def test_false_negative_shares_count_planted_documents_per_source(tmp_path):
    judged = [NegativesRecord("q1", "a", "sw", ["p1"], [_neg("s1"), _neg("s2"), _neg("g1", "stage2:e"), _neg("g2", "stage2:e")])]
    unjudged = [NegativesRecord("q1", "a", "sw", ["p1"], [_neg("s1"), _neg("s2"), _neg("g3", "stage2:e"), _neg("g4", "stage2:e")])]
    write_negatives(tmp_path / "j.jsonl", judged)
    write_negatives(tmp_path / "u.jsonl", unjudged)
    write_qrels(tmp_path / "truth.tsv", {"q1": {"p1": 1, "s2": 1, "g3": 1, "g4": 1, "g1": 0}})
    out = false_negative_shares(tmp_path / "j.jsonl", tmp_path / "u.jsonl", tmp_path / "truth.tsv")
    assert out["stage2_judged"] == {"negatives": 2, "false_negatives": 0, "share": 0.0}
    assert out["stage2_unjudged"] == {"negatives": 2, "false_negatives": 2, "share": 1.0}
    assert out["stage1"] == {"negatives": 2, "false_negatives": 1, "share": 0.5}


def test_cli_pool_without_generation_writes_the_w_o_stage_2_pool_and_its_stats(tmp_path):
    write_negatives(tmp_path / "pool.jsonl", [NegativesRecord("q1", "a", "sw", ["p1"], [_neg(x) for x in "abc"])])
    main(["pool", "--pool", str(tmp_path / "pool.jsonl"), "--no-generation", "--pool-size", "2", "--source", "stage2:e",
          "--lang", "sw", "--out", str(tmp_path / "final.jsonl"), "--stats", str(tmp_path / "stats.json")])  # fmt: skip
    (rec,) = read_negatives(tmp_path / "final.jsonl")
    assert [n.docid for n in rec.negatives] == ["a", "b"] and rec.meta["dropped_over_pool_size"] == 1
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["lang"] == "sw" and stats["pool"]["from_llm_share"] == 0.0 and stats["pool"]["generation"] is False
    with pytest.raises(SystemExit):
        main(["pool", "--pool", str(tmp_path / "pool.jsonl"), "--candidates", "x", "--pool-size", "2", "--source", "s",
              "--lang", "sw", "--out", str(tmp_path / "o.jsonl"), "--stats", str(tmp_path / "s.json")])  # fmt: skip
