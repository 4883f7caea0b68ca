"""The five baseline miners against a hand-worked example (expected docids written by hand), and the mixed
miner of the mined-share sweep (counts, exclusions, seeds, agreement with Naive Top-K at share 1)."""

from __future__ import annotations

import json
import logging

import pytest

from boostmdr.formats import FormatError, Hit, read_negatives
from boostmdr.miners import (
    MINERS,
    CorpusFile,
    DocidList,
    MinerMethod,
    MixedShare,
    NaiveTopK,
    QueryOutcome,
    ShiftedTopK,
    TopKAbs,
    TopKMarginPos,
    TopKPercPos,
    build_miner,
    main,
    parse_method,
    mine,
    positive_score_of,
)
from boostmdr.formats import LabelledQuery, write_corpus

# Query q1: positives p1 (scored 0.80) and p2 (0.90), so the positive score used is min = 0.80.
# Ranked candidate list (score desc, docid asc), rank in brackets:
#   [1] p2 .90  [2] a .85  [3] p1 .80  [4] b .72  [5] c .72  [6] d .65  [7] e .60  [8] f .55  [9] g .40
# Non-positive pool: a b c d e f g (b and c tie at .72; docid order puts b first).
Q1_CANDIDATES = [
    Hit("g", 0.40),
    Hit("c", 0.72),
    Hit("p1", 0.80),
    Hit("a", 0.85),
    Hit("b", 0.72),
    Hit("p2", 0.90),
    Hit("d", 0.65),
    Hit("e", 0.60),
    Hit("f", 0.55),
]
Q1_POSITIVES = ["p1", "p2"]
Q1_POS_SCORE = positive_score_of(Q1_POSITIVES, {"p1": 0.80, "p2": 0.90})


def docids(negs):
    return [n.docid for n in negs]


def test_positive_score_is_the_minimum_over_scored_positives():
    assert Q1_POS_SCORE == 0.80
    assert positive_score_of(["p1", "p2"], {"p2": 0.9}) == 0.9
    assert positive_score_of(["p1"], {}) is None


def test_naive_topk_takes_best_non_positives_with_ties_by_docid_and_original_ranks():
    negs, outcome = NaiveTopK(num_negatives=3).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["a", "b", "c"]
    assert [n.rank for n in negs] == [2, 4, 5]
    assert [n.score for n in negs] == [0.85, 0.72, 0.72]
    assert {n.source for n in negs} == {"miner:naive_topk"}
    assert outcome is QueryOutcome.FULL


def test_shifted_topk_skips_the_n_best_non_positives():
    negs, _ = ShiftedTopK(num_negatives=3, shift=2).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["c", "d", "e"]
    assert [n.rank for n in negs] == [5, 6, 7]
    # shift 0 is naive top-k
    negs0, _ = ShiftedTopK(num_negatives=3, shift=0).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs0) == ["a", "b", "c"]


def test_topk_abs_keeps_scores_at_or_below_the_threshold():
    negs, _ = TopKAbs(num_negatives=3, max_score=0.6).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["e", "f", "g"]  # e = 0.60 exactly is kept
    negs, _ = TopKAbs(num_negatives=3, max_score=0.72).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["b", "c", "d"]  # both tied candidates at the threshold are kept


def test_topk_margin_pos_is_strict_and_uses_the_weakest_positive():
    # threshold 0.80 - 0.15 = 0.65; d = 0.65 is not strictly below it
    negs, _ = TopKMarginPos(num_negatives=3, margin=0.15).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["e", "f", "g"]
    # with the stronger positive (0.90) the threshold would be 0.75 and b, c, d would pass
    negs_max, _ = TopKMarginPos(num_negatives=3, margin=0.15).select(Q1_CANDIDATES, Q1_POSITIVES, 0.90)
    assert docids(negs_max) == ["b", "c", "d"]
    negs, _ = TopKMarginPos(num_negatives=3, margin=0.1).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["d", "e", "f"]  # threshold 0.70


def test_topk_perc_pos_keeps_scores_at_or_below_the_percentage():
    # threshold 0.9 * 0.80 = 0.72; the tied b and c sit on it and are kept
    negs, outcome = TopKPercPos(num_negatives=3, percentage=0.9).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["b", "c", "d"]
    assert outcome is QueryOutcome.FULL
    negs, outcome = TopKPercPos(num_negatives=10, percentage=0.8).select(Q1_CANDIDATES, Q1_POSITIVES, Q1_POS_SCORE)
    assert docids(negs) == ["e", "f", "g"]  # threshold 0.64
    assert outcome is QueryOutcome.SHORT


def test_topk_perc_pos_with_a_negative_positive_score_stays_below_the_positive():
    # positive -0.20, 90 %: threshold -0.20 - 0.1 * 0.20 = -0.22 (0.9 * -0.20 = -0.18 would admit x)
    cands = [Hit("x", -0.21), Hit("y", -0.22), Hit("z", -0.30)]
    negs, _ = TopKPercPos(num_negatives=5, percentage=0.9).select(cands, ["p"], -0.20)
    assert docids(negs) == ["y", "z"]


def test_candidate_equal_to_a_positive_is_removed_by_every_miner():
    cands = [Hit("p", 0.30), Hit("n", 0.20)]
    for cls in MINERS.values():
        miner = cls(num_negatives=5, shift=0) if cls is ShiftedTopK else cls(num_negatives=5)
        negs, _ = miner.select(cands, ["p"], 0.9)
        assert docids(negs) == ["n"], cls.__name__
        assert negs[0].rank == 2


def test_query_whose_candidates_all_fail_the_filter_gets_an_empty_list():
    cands = [Hit("h", 0.9), Hit("i", 0.8)]
    for miner in (TopKAbs(max_score=0.6), TopKMarginPos(margin=0.15), TopKPercPos(percentage=0.9),
                  ShiftedTopK(shift=10)):
        negs, outcome = miner.select(cands, ["p"], 0.5)
        assert negs == [] and outcome is QueryOutcome.EMPTY_FILTERED, miner


def test_missing_positive_score_empties_only_the_positive_relative_miners():
    cands = [Hit("h", 0.3), Hit("i", 0.2)]
    assert TopKMarginPos().select(cands, ["p"], None) == ([], QueryOutcome.EMPTY_NO_POSITIVE_SCORE)
    assert TopKPercPos().select(cands, ["p"], None) == ([], QueryOutcome.EMPTY_NO_POSITIVE_SCORE)
    negs, outcome = TopKAbs().select(cands, ["p"], None)
    assert docids(negs) == ["h", "i"] and outcome is QueryOutcome.SHORT


def test_no_candidates_or_only_positives():
    assert NaiveTopK().select([], ["p"], 0.5) == ([], QueryOutcome.EMPTY_NO_CANDIDATES)
    assert NaiveTopK().select([Hit("p", 0.9)], ["p"], 0.5) == ([], QueryOutcome.EMPTY_NO_CANDIDATES)


@pytest.mark.parametrize(
    "method, settings, message",
    [
        ("topk_perc_pos", {"percentage": 0.0}, r"percentage=0\.0 is invalid: expected a number in \(0, 1\]"),
        ("topk_perc_pos", {"percentage": 1.5}, r"percentage=1\.5 is invalid"),
        ("topk_margin_pos", {"margin": -0.1}, r"margin=-0\.1 is invalid: expected a finite number >= 0"),
        ("topk_abs", {"max_score": float("nan")}, r"max_score=nan is invalid"),
        ("shifted_topk", {"shift": -1}, r"shift=-1 is invalid: expected an integer >= 0"),
        ("shifted_topk", {"shift": 2.5}, r"shift=2\.5 is invalid"),
        ("naive_topk", {"num_negatives": 0}, r"num_negatives=0 is invalid: expected an integer >= 1"),
        ("naive_topk", {"num_negatives": True}, r"num_negatives=True is invalid"),
        ("naive_topk", {"margin": 0.1}, r"naive_topk does not take setting\(s\) margin"),
        ("mixed", {"mined_share": 1.25}, r"mined_share=1\.25 is invalid: expected a number in \[0, 1\]"),
        ("mixed", {"seed": -1}, r"seed=-1 is invalid: expected an integer >= 0"),
    ],
)
def test_settings_are_validated_at_construction(method, settings, message):
    with pytest.raises(ValueError, match=message):
        build_miner(method, **settings)


def test_paper_defaults_and_unknown_method():
    assert build_miner("shifted_topk").shift == 10
    assert build_miner("topk_abs").max_score == 0.6
    assert build_miner("topk_margin_pos").margin == 0.15
    assert build_miner("topk_perc_pos").percentage == 0.9
    assert build_miner("naive_topk").num_negatives == 30
    with pytest.raises(ValueError, match="unknown miner method 'topk'; valid methods: naive_topk, shifted_topk"):
        parse_method("topk")
    assert set(MINERS) == set(MinerMethod)


# ---------------------------------------------------------------------------------- mixed (the sweep)

# Corpus of 16 passages: the positives, the seven non-positive candidates of q1, and 7 passages no retriever
# returned (r0..r6).
CORPUS = ["p1", "p2", "a", "b", "c", "d", "e", "f", "g", "r0", "r1", "r2", "r3", "r4", "r5", "r6"]
Q1 = {"q1": LabelledQuery("q1", "first", tuple(Q1_POSITIVES))}


def mixed(share, n=4, seed=0, train=Q1, candidates=None, corpus=CORPUS):
    records, stats = mine(MixedShare(num_negatives=n, mined_share=share, seed=seed), train,
                          candidates or {"q1": Q1_CANDIDATES}, {}, "sw", DocidList(corpus))
    return records, stats


def test_mixed_shares_round_half_up():
    assert [MixedShare(mined_share=s).num_mined for s in (0, 0.25, 0.5, 0.75, 1)] == [0, 8, 15, 23, 30]
    assert [MixedShare(num_negatives=4, mined_share=s).num_mined for s in (0.25, 0.5, 0.6)] == [1, 2, 2]


def test_mixed_half_mined_half_random_never_a_positive_or_a_top_candidate():
    (rec,), stats = mixed(0.5)
    mined = [n for n in rec.negatives if n.extra == {"origin": "mined"}]
    drawn = [n for n in rec.negatives if n.extra == {"origin": "random"}]
    # 2 of q1's Naive Top-4 (a, b, c, d), in rank order, with their scores and ranks
    assert len(mined) == 2 and set(docids(mined)) <= {"a", "b", "c", "d"}
    assert [n.rank for n in mined] == sorted(n.rank for n in mined) and all(n.score is not None for n in mined)
    # 2 random passages, never a positive or one of the Naive Top-4, without score or rank
    assert len(drawn) == 2 and len(set(docids(drawn))) == 2
    assert not set(docids(drawn)) & {"p1", "p2", "a", "b", "c", "d"}
    assert all(n.score is None and n.rank is None for n in drawn)
    assert {n.source for n in rec.negatives} == {"miner:mixed"} and rec.meta["mined"] == 2
    assert stats.outcomes[QueryOutcome.FULL] == 1
    # seeded per query: the same seed draws the same, the draws do not depend on the other queries
    assert docids(mixed(0.5)[0][0].negatives) == docids(rec.negatives)
    two = {"q0": LabelledQuery("q0", "zeroth", ("p1",)), **Q1}  # another query drawn first
    records, _ = mixed(0.5, train=two, candidates={"q1": Q1_CANDIDATES, "q0": [Hit("a", 0.5)]})
    assert docids(records[1].negatives) == docids(rec.negatives)
    seeds = {tuple(docids(mixed(0.5, seed=s)[0][0].negatives)) for s in range(8)}
    assert len(seeds) > 1


def test_mixed_at_share_one_is_naive_topk_and_at_zero_all_random():
    (full,), _ = mixed(1.0)
    naive, _ = NaiveTopK(num_negatives=4).select(Q1_CANDIDATES, Q1_POSITIVES, None)
    assert [(n.docid, n.score, n.rank) for n in full.negatives] == [(n.docid, n.score, n.rank) for n in naive]
    (none,), _ = mixed(0.0)
    assert len(none.negatives) == 4 and all(n.extra == {"origin": "random"} for n in none.negatives)
    assert set(docids(none.negatives)) <= {"e", "f", "g", "r0", "r1", "r2", "r3", "r4", "r5", "r6"}


def test_mixed_short_when_the_corpus_has_too_few_other_passages():
    # only r0 lies outside the positives and the Naive Top-4: one random negative instead of two
    (rec,), stats = mixed(0.5, corpus=["p1", "p2", "a", "b", "c", "d", "r0"])
    assert [n.docid for n in rec.negatives if n.extra["origin"] == "random"] == ["r0"]
    assert len(rec.negatives) == 3 and stats.outcomes[QueryOutcome.SHORT] == 1
    with pytest.raises(ValueError, match="miner mixed draws random negatives from the corpus"):
        mine(MixedShare(), Q1, {"q1": Q1_CANDIDATES}, {}, "sw")


def test_corpus_file_reads_only_the_drawn_lines_like_the_list(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_corpus(path, [(d, "", f"text of {d}") for d in CORPUS])
    on_disk = CorpusFile(path)
    assert len(on_disk) == 16 and on_disk.at({0, 9, 15}) == {0: "p1", 9: "r0", 15: "r6"}
    assert mixed(0.5, corpus=CORPUS)[0][0].negatives == mine(
        MixedShare(num_negatives=4, mined_share=0.5), Q1, {"q1": Q1_CANDIDATES}, {}, "sw", on_disk)[0][0].negatives


# ----------------------------------------------------------------------------------------- files


def write_inputs(tmp_path, extra_score_line=""):
    train = tmp_path / "train.jsonl"
    rows = [
        {"qid": "q1", "query": "first", "positives": Q1_POSITIVES, "negatives": ["g"]},
        {"qid": "q2", "query": "second", "positives": ["p3"], "negatives": []},
        {"qid": "q3", "query": "third", "positives": ["p4"], "negatives": []},
    ]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cand = tmp_path / "cand.trec"
    lines = [f"q1 Q0 {h.docid} 0 {h.score:.6f} bge" for h in Q1_CANDIDATES]
    lines += ["q2 Q0 h 1 0.900000 bge", "q2 Q0 i 2 0.800000 bge", "q3 Q0 j 1 0.300000 bge"]
    cand.write_text("\n".join(lines) + "\n")
    pos = tmp_path / "cand.positives.tsv"
    pos.write_text("q1\tp1\t0.80\nq1\tp2\t0.90\nq2\tp3\t0.5\n" + extra_score_line)
    return train, cand, pos


def run_cli(tmp_path, train, cand, pos, *settings):
    out = tmp_path / "negs.jsonl"
    log = tmp_path / "mine.log"
    main([*settings, "--candidates", str(cand), "--positive-scores", str(pos), "--train", str(train),
          "--lang", "sw", "--num-negatives", "3", "--out", str(out), "--log", str(log)])
    return out, log


def test_cli_writes_every_query_in_the_shared_format(tmp_path):
    train, cand, pos = write_inputs(tmp_path)
    out, log = run_cli(tmp_path, train, cand, pos, "--method", "topk_margin_pos", "--margin", "0.15")
    first = json.loads(out.read_text().splitlines()[0])
    assert first == {
        "qid": "q1", "query": "first", "lang": "sw", "positives": ["p1", "p2"],
        "negatives": [
            {"docid": "e", "score": 0.6, "rank": 7, "source": "miner:topk_margin_pos"},
            {"docid": "f", "score": 0.55, "rank": 8, "source": "miner:topk_margin_pos"},
            {"docid": "g", "score": 0.4, "rank": 9, "source": "miner:topk_margin_pos"},
        ],
        "meta": {"positive_score": 0.8},
    }
    records = read_negatives(out)
    assert [r.qid for r in records] == ["q1", "q2", "q3"]
    assert records[1].negatives == [] and records[1].meta == {"positive_score": 0.5}  # all filtered
    assert records[2].negatives == [] and records[2].meta == {"positive_score": None}  # no positive score
    text = log.read_text()
    assert "3 queries, 1.00 negatives per query on average; 1 full (3 negatives), 0 short, 2 empty" in text
    assert "1 queries lost every candidate to the topk_margin_pos filter" in text
    assert "1 queries have no positive score" in text


def test_cli_ignores_settings_of_other_methods_with_a_warning(tmp_path):
    train, cand, pos = write_inputs(tmp_path)
    out, log = run_cli(tmp_path, train, cand, pos, "--method", "naive_topk", "--margin", "0.2")
    assert [docids(r.negatives) for r in read_negatives(out)] == [["a", "b", "c"], ["h", "i"], ["j"]]
    assert "--margin is not a setting of naive_topk; ignored" in log.read_text()


def test_positive_score_for_a_non_positive_is_an_error_naming_file_and_line(tmp_path):
    train, cand, pos = write_inputs(tmp_path, extra_score_line="q2\tzz\t0.4\n")
    with pytest.raises(FormatError, match=r"cand\.positives\.tsv:4: document 'zz' is not a labelled positive"):
        run_cli(tmp_path, train, cand, pos, "--method", "naive_topk")
    assert not (tmp_path / "negs.jsonl").exists()


def test_cli_mixed_needs_the_corpus_and_at_share_one_writes_naive_topks_negatives(tmp_path):
    train, cand, pos = write_inputs(tmp_path)
    with pytest.raises(SystemExit):
        run_cli(tmp_path, train, cand, pos, "--method", "mixed", "--mined-share", "0.5")
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, [(d, "", d) for d in CORPUS + ["h", "i", "j", "p3", "p4"]])
    out, log = run_cli(tmp_path, train, cand, pos, "--method", "mixed", "--mined-share", "1", "--seed", "3",
                       "--corpus", str(corpus))
    assert [docids(r.negatives) for r in read_negatives(out)] == [["a", "b", "c"], ["h", "i"], ["j"]]
    out, _ = run_cli(tmp_path, train, cand, pos, "--method", "mixed", "--mined-share", "0.34", "--corpus", str(corpus))
    # 0.34 x 3 = 1.02 -> 1 mined and 2 random per query
    assert [[n.extra["origin"] for n in r.negatives] for r in read_negatives(out)] == [["mined", "random", "random"]] * 3


def test_run_query_missing_from_train_is_an_error(tmp_path):
    train, cand, pos = write_inputs(tmp_path)
    with cand.open("a") as fh:
        fh.write("q9 Q0 k 1 0.1 bge\n")
    with pytest.raises(ValueError, match=r"cand\.trec: 1 query id\(s\) not in .*train\.jsonl \(e\.g\. 'q9'\)"):
        run_cli(tmp_path, train, cand, pos, "--method", "naive_topk")


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)
