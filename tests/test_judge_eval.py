"""The judge evaluation: the seeded held-out sample, the labelled-pair and planted datasets built from hand-made
labels, precision/recall/kappa and the confusion matrix on hand-made verdicts, the measured cost, the dry
estimate against a hand count, the tables, and the whole chain on the toy data with the random tiny LM."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from judge_fixtures import PROMPT, random_tiny_lm, write_toy_data

from boostmdr.formats import Hit, LabelledQuery, read_jsonl, read_qrels, read_run, read_topics, write_jsonl, write_qrels
from boostmdr.judge import JudgeSettings, choose_reference, load_judge_template, run_verdicts
from boostmdr.judge_eval import (
    agreement,
    confusion,
    cost_table,
    estimate,
    holdout_queries,
    job_cost,
    label_sample,
    labels_table,
    main,
    planted_sample,
    write_tables,
)
from boostmdr.tables import to_markdown

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = {
    "A": LabelledQuery("A", "query a", ("p1", "p2", "p3"), ("n1",)),
    "B": LabelledQuery("B", "query b", ("p4",), ("n2", "n3")),  # a single positive
    "C": LabelledQuery("C", "query c", ("p5", "p6"), ()),
    "D": LabelledQuery("D", "query d", ("p7", "p8"), ("n4", "n5")),  # not held out
}


# ------------------------------------------------------------------------------------------ the sample


def test_holdout_is_a_seeded_sample_in_file_order():
    qids = [str(i) for i in range(50)]
    a = holdout_queries(qids, 10, seed=3)
    assert a == holdout_queries(qids, 10, seed=3) and a != holdout_queries(qids, 10, seed=4)
    assert len(a) == 10 and a == sorted(a, key=int)
    assert holdout_queries(qids[:4], 10, seed=3) == qids[:4]


def test_label_sample_refers_each_query_to_another_positive_and_skips_single_positive_queries():
    s = label_sample(TRAIN, ["A", "B", "C"], seed=0)
    ref_a, ref_c = choose_reference(["p1", "p2", "p3"], "A", 0), choose_reference(["p5", "p6"], "C", 0)
    assert [(q.qid, q.positives, q.negatives) for q in s.queries] == [("A", (ref_a,), ()), ("C", (ref_c,), ())]
    # every other labelled passage is a candidate, the reference never is, in a seeded order
    assert sorted(h.docid for h in s.run["A"]) == sorted({"p1", "p2", "p3", "n1"} - {ref_a})
    assert [h.docid for h in s.run["C"]] == [{"p5", "p6"}.difference({ref_c}).pop()]
    assert s.truth["A"] == {d: int(d.startswith("p")) for d in {"p1", "p2", "p3", "n1"} - {ref_a}}
    assert [h.score for h in s.run["A"]] == [3.0, 2.0, 1.0]
    assert s.info == {"dataset": "labels", "single_positive": "skip", "held_out_queries": 3, "queries": 2,
                      "skipped_queries": 1, "skipped_pairs": 3, "empty_reference_queries": 0, "pairs": 4,
                      "relevant_pairs": 3}
    orders = {tuple(h.docid for h in label_sample(TRAIN, ["A"], seed=k).run["A"]) for k in range(8)}
    assert len(orders) > 1  # the order depends on the seed, so it cannot give the labels away


def test_label_sample_with_empty_references_judges_single_positive_queries_whole():
    s = label_sample(TRAIN, ["B"], seed=0, single_positive="empty")
    assert s.queries == [LabelledQuery("B", "query b", (), ())]
    assert s.truth == {"B": {"p4": 1, "n2": 0, "n3": 0}}
    assert s.info["empty_reference_queries"] == 1 and s.info["skipped_queries"] == 0


def test_planted_sample_keeps_stage_one_candidates_against_the_complete_truth():
    run = {"A": [Hit("x", 3.0), Hit("p1", 2.5), Hit("y", 2.0)], "C": [], "D": [Hit("z", 1.0)]}
    truth = {"A": {"p1": 1, "p2": 1, "x": 1, "n1": 0}}
    s = planted_sample(TRAIN, ["A", "C"], run, truth)
    assert s.queries == [TRAIN["A"]]  # the real train record: stage 1's reference choice
    assert [h.docid for h in s.run["A"]] == ["x", "y"]  # labelled positives are never candidates
    assert s.truth == {"A": {"x": 1, "y": 0}}
    assert s.info == {"dataset": "planted", "held_out_queries": 2, "queries": 1, "skipped_queries": 1, "pairs": 2,
                      "relevant_pairs": 1}


def test_sample_cli_writes_the_files_the_judge_reads(tmp_path):
    from boostmdr.formats import write_topics, write_train

    write_train(tmp_path / "train.jsonl", TRAIN.values())
    write_topics(tmp_path / "held.tsv", {"A": "query a", "B": "query b"})
    out = {k: str(tmp_path / f"s.{k}") for k in ("train", "candidates", "truth", "info")}
    assert main(["sample", "--dataset", "labels", "--train", str(tmp_path / "train.jsonl"), "--holdout",
                 str(tmp_path / "held.tsv"), "--out-train", out["train"], "--out-candidates", out["candidates"],
                 "--out-truth", out["truth"], "--out-info", out["info"]]) == 0
    assert [r["qid"] for _, r in read_jsonl(out["train"])] == ["A"]
    assert len(read_run(out["candidates"])["A"]) == 3 and sum(read_qrels(out["truth"])["A"].values()) == 2
    write_topics(tmp_path / "bad.tsv", {"Z": "nope"})
    with pytest.raises(ValueError, match=r"bad\.tsv: 1 held-out queries are not in"):
        main(["sample", "--dataset", "labels", "--train", str(tmp_path / "train.jsonl"), "--holdout",
              str(tmp_path / "bad.tsv"), "--out-train", out["train"], "--out-candidates", out["candidates"],
              "--out-truth", out["truth"], "--out-info", out["info"]])


# ---------------------------------------------------------------------------------------- the measures

# Hand-made verdicts on eight labelled pairs.
LABELS = {"q": {"r1": 1, "r2": 1, "r3": 1, "r4": 1, "n1": 0, "n2": 0, "n3": 0, "n4": 0}}
VERDICTS = [("r1", 2), ("r2", 1), ("r3", 0), ("r4", None), ("n1", 0), ("n2", 0), ("n3", 0), ("n4", 2)]


def _records():
    return [{"qid": "q", "docid": d, "verdict": v, "samples": [{"score": v}]} for d, v in VERDICTS]


def test_confusion_matrix_and_agreement_on_hand_made_verdicts():
    m = confusion(_records(), LABELS)
    assert m == {"1": {"2": 1, "1": 1, "0": 1, "null": 1}, "0": {"2": 1, "1": 0, "0": 3, "null": 0}}
    a = agreement(m, frozenset({0}))
    # relevant = verdict 1 or 2: TP r1 r2, FN r3, FP n4, TN n1-n3; r4 has no verdict and is counted apart
    assert (a["true_positives"], a["false_negatives"], a["false_positives"], a["true_negatives"]) == (2, 1, 1, 3)
    assert a["precision"] == pytest.approx(2 / 3) and a["recall"] == pytest.approx(2 / 3)
    assert a["specificity"] == pytest.approx(3 / 4) and a["accuracy"] == pytest.approx(5 / 7)
    # kappa: observed 5/7, chance ((3*3) + (4*4)) / 49 = 25/49 -> (35 - 25) / (49 - 25) = 10/24
    assert a["kappa"] == pytest.approx(10 / 24) and a["null_verdicts"] == 1
    loose = agreement(m, frozenset({0, 1}))  # only verdict 2 predicts relevant
    assert loose["precision"] == pytest.approx(1 / 2) and loose["recall"] == pytest.approx(1 / 3)


def test_a_judged_pair_without_a_label_is_an_error_naming_the_file():
    with pytest.raises(ValueError, match=r"truth\.tsv: judged pair \(q, zz\) has no label"):
        confusion([{"qid": "q", "docid": "zz", "verdict": 0}], LABELS, "truth.tsv")


def test_cost_of_a_cascade_sums_both_jobs_and_reports_the_escalation():
    first = {"mode": "pointwise", "queries": 10, "candidates": 40, "prompts": 40, "samples_per_prompt": 1, "calls": 41,
             "cached_samples": 0, "unparsed_samples": 1, "prompt_tokens": 4100, "prefilled_tokens": 900,
             "generated_tokens": 500, "seconds": 1.5, "escalation": None}
    second = {"mode": "pointwise", "queries": 3, "candidates": 12, "prompts": 12, "samples_per_prompt": 4, "calls": 48,
              "cached_samples": 0, "unparsed_samples": 0, "prompt_tokens": 4800, "prefilled_tokens": 1000,
              "generated_tokens": 600, "seconds": 2.25, "escalation": {"queries": 10, "escalated": 3, "reasons": {}}}
    cost = job_cost([first, second])
    assert (cost["calls"], cost["prompt_tokens"], cost["generated_tokens"], cost["seconds"]) == (89, 8900, 1100, 3.75)
    assert cost["queries"] == 10 and cost["samples"] == 40 + 48 and cost["escalation_rate"] == pytest.approx(0.3)


def test_evaluate_cli_on_hand_made_files(tmp_path):
    write_jsonl(tmp_path / "v.jsonl", _records())
    write_qrels(tmp_path / "truth.tsv", LABELS)
    (tmp_path / "info.json").write_text(json.dumps({"dataset": "labels", "queries": 1}))
    (tmp_path / "s.json").write_text(json.dumps({"mode": "pointwise", "queries": 1, "candidates": 8, "prompts": 8,
                                                 "samples_per_prompt": 1, "calls": 8, "unparsed_samples": 1,
                                                 "prompt_tokens": 80, "generated_tokens": 16, "seconds": 0.5}))
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--verdicts", str(tmp_path / "v.jsonl"), "--truth", str(tmp_path / "truth.tsv"),
                 "--sample-info", str(tmp_path / "info.json"), "--summaries", str(tmp_path / "s.json"),
                 "--dataset", "labels", "--judge", "j", "--mode", "pointwise", "--lang", "xx", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert (rec["pairs"], rec["relevant_pairs"], rec["precision"], rec["cost"]["calls"]) == (8, 4, pytest.approx(2 / 3), 8)
    assert rec["unparsed_sample_rate"] == pytest.approx(1 / 8)
    write_qrels(tmp_path / "more.tsv", {"q": {**LABELS["q"], "extra": 1}})
    with pytest.raises(ValueError, match="1 sampled pairs have no verdict"):
        main(["evaluate", "--verdicts", str(tmp_path / "v.jsonl"), "--truth", str(tmp_path / "more.tsv"),
              "--sample-info", str(tmp_path / "info.json"), "--summaries", str(tmp_path / "s.json"),
              "--dataset", "labels", "--judge", "j", "--mode", "pointwise", "--lang", "xx", "--out", str(out)])


# ----------------------------------------------------------------------------------------- the estimate


def _estimate_data(tmp_path):
    from boostmdr.formats import write_run, write_train

    write_jsonl(tmp_path / "corpus.jsonl", [
        {"docid": "p", "title": "t0", "text": "bbbb"},
        {"docid": "d1", "title": "t1", "text": "aaaa"},
        {"docid": "d2", "title": "t2", "text": "cccc"},
    ])
    write_train(tmp_path / "train.jsonl", [LabelledQuery("q", "qq", ("p",), ())])
    write_run(tmp_path / "run.trec", {"q": [Hit("d1", 2.0), Hit("d2", 1.0), Hit("p", 0.5)]}, tag="t")
    (tmp_path / "point.txt").write_text("Q: {question}\nC: {candidate}\nR: {reference}")
    (tmp_path / "list.txt").write_text("Q: {question} R: {reference} C:\n{candidates}")
    return tmp_path


def test_dry_estimate_matches_a_hand_count(tmp_path):
    d = _estimate_data(tmp_path)
    args = (d / "run.trec", d / "train.jsonl", d / "corpus.jsonl")
    # "Q: qq\nC: t1 aaaa\nR: t0 bbbb" is 5 + 1 + 10 + 1 + 10 = 27 characters: ceil(27 / 4) = 7 tokens per prompt;
    # two candidates (the labelled positive p is never judged) x four samples = 8 calls of 7 tokens
    e = estimate(*args, d / "point.txt", JudgeSettings(), chars_per_token=4.0, price_input=2.5, price_output=10.0)
    assert (e["queries"], e["candidates"], e["prompts"], e["calls"]) == (1, 2, 2, 8)
    assert e["prompt_tokens"] == 8 * 7 and e["output_tokens_max"] == 8 * 32
    assert e["cost"] == pytest.approx(56 / 1e6 * 2.5 + 256 / 1e6 * 10.0)
    assert e["token_source"] == "4 characters per token"
    # listwise: one prompt "Q: qq R: t0 bbbb C:\n[1] t1 aaaa\n[2] t2 cccc" = 19 + 1 + 12 + 1 + 12 = 45 characters
    lw = estimate(*args, d / "list.txt", JudgeSettings(mode="listwise", samples=((1.0, 0.1),), max_new_tokens=64),
                  chars_per_token=3.0)
    assert (lw["prompts"], lw["calls"], lw["prompt_tokens"], lw["output_tokens_max"]) == (1, 1, 15, 64)
    assert lw["cost"] is None  # no price given


def test_dry_estimate_with_a_local_tokenizer_counts_what_the_model_sees(tmp_path):
    from transformers import AutoTokenizer

    d = _estimate_data(tmp_path)
    model = random_tiny_lm(tmp_path / "lm")
    e = estimate(d / "run.trec", d / "train.jsonl", d / "corpus.jsonl", d / "point.txt",
                 JudgeSettings(samples=((1.0, 0.0),)), tokenizer=str(model))
    tok = AutoTokenizer.from_pretrained(model)
    by_hand = sum(len(tok(p)["input_ids"]) for p in ("Q: qq\nC: t1 aaaa\nR: t0 bbbb", "Q: qq\nC: t2 cccc\nR: t0 bbbb"))
    assert e["prompt_tokens"] == by_hand and e["token_source"] == f"tokenizer {model}"
    with pytest.raises(ValueError, match="cannot be loaded offline"):
        estimate(d / "run.trec", d / "train.jsonl", d / "corpus.jsonl", d / "point.txt", JudgeSettings(),
                 tokenizer=str(tmp_path / "no-such-model"))


# ------------------------------------------------------------------------------------------- the tables


def _eval_record(precision_pairs, calls, seconds, escalated=None):
    verdicts = [("r1", 2), ("r2", 0), ("n1", 2 if precision_pairs else 0), ("n2", 0)]
    recs = [{"qid": "q", "docid": d, "verdict": v, "samples": [{"score": v}]} for d, v in verdicts]
    m = confusion(recs, {"q": {"r1": 1, "r2": 1, "n1": 0, "n2": 0}})
    cost = {"queries": 2, "calls": calls, "prompt_tokens": 10 * calls, "prefilled_tokens": calls, "generated_tokens": 2 * calls,
            "seconds": seconds, "unparsed_samples": 0, "samples": calls, "cached_samples": 0}
    if escalated is not None:
        cost.update(escalated_queries=escalated)
    return {"keep": [0], "sample": {"queries": 2, "skipped_queries": 1}, "pairs": 4, "relevant_pairs": 2,
            "confusion": m, **agreement(m), "unparsed_sample_rate": 0.0, "cost": cost}


def test_labels_and_cost_tables_from_evaluation_records():
    recs = {("pw", "sw"): _eval_record(True, 16, 1.0), ("pw", "ru"): _eval_record(False, 16, 1.0)}
    md = to_markdown(labels_table(recs, [("pw", "pw (pointwise)")], ["sw", "ru"], "T"))
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:6]] for line in md.splitlines()[4:]}
    assert rows["Precision of relevant (%)"] == ["75.0", "50.0", "100.0"]  # sw: 1 of 2 removed relevant; ru: 1 of 1
    assert rows["Recall of relevant (%)"] == ["50.0", "50.0", "50.0"]
    assert rows["Human 0 -> verdict 2 (%)"] == ["25.0", "50.0", "0.0"]
    cost = {("labels", "pw", lang): _eval_record(lang == "sw", 16, 1.25) for lang in ("sw", "ru")}
    cost.update({("labels", "cas", lang): _eval_record(True, 6, 0.5, escalated=1) for lang in ("sw", "ru")})
    t = cost_table(cost, ["labels"], [("pw", "pointwise"), ("cas", "cascade")], ["sw", "ru"], "C")
    by_label = {r.label: dict(zip(t.columns, r.cells)) for r in t.rows}
    assert by_label["pointwise"]["Calls"] == "32" and by_label["pointwise"]["Calls / query"] == "8.0"
    assert by_label["pointwise"]["Wall s"] == "2.5" and by_label["pointwise"]["Escalated (%)"] == "n/a"
    # precision pooled over languages: 2 relevant removed, 1 non-relevant removed
    assert by_label["pointwise"]["Precision (%)"] == "66.7" and by_label["pointwise"]["Recall (%)"] == "50.0"
    assert by_label["cascade"]["Escalated (%)"] == "50.0" and by_label["cascade"]["Prompt tokens"] == "120"


def test_table_script_refuses_a_file_that_is_not_an_input(tmp_path):
    smk = SimpleNamespace(
        input=[], output=[str(tmp_path / "t.md")], log=[],
        params=SimpleNamespace(languages=["sw"], spec={"kind": "labels", "title": "T", "judges": [{"name": "j", "label": "j"}],
                                                       "datasets": [], "pattern": "results/x/{judge}/{lang}.json"}),
    )
    with pytest.raises(ValueError, match=r"results/x/j/sw\.json is not an input of the rule"):
        write_tables(smk)


# ------------------------------------------------------------------------------------ the chain, toy data


def test_held_out_labels_judged_and_evaluated_end_to_end_on_the_toy_data(tmp_path):
    from boostmdr.llm import get_backend

    data = write_toy_data(tmp_path / "data", n_queries=8, n_candidates=2)
    model = random_tiny_lm(tmp_path)
    held = tmp_path / "held.tsv"
    assert main(["holdout", "--train", str(data["train"]), "--size", "5", "--seed", "1", "--out", str(held)]) == 0
    assert len(read_topics(held)) == 5
    s = {k: tmp_path / f"sample.{k}" for k in ("train", "trec", "truth", "info")}
    assert main(["sample", "--dataset", "labels", "--train", str(data["train"]), "--holdout", str(held),
                 "--out-train", str(s["train"]), "--out-candidates", str(s["trec"]), "--out-truth", str(s["truth"]),
                 "--out-info", str(s["info"])]) == 0
    info = json.loads(s["info"].read_text())
    with get_backend("transformers", model=str(model), device="cpu") as b:
        run_verdicts(s["trec"], s["train"], data["corpus"], "xx", b, load_judge_template(PROMPT),
                     JudgeSettings(max_new_tokens=32, retries=0, structured_output=True), tmp_path / "v.jsonl",
                     summary_path=tmp_path / "summary.json")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--verdicts", str(tmp_path / "v.jsonl"), "--truth", str(s["truth"]), "--sample-info",
                 str(s["info"]), "--summaries", str(tmp_path / "summary.json"), "--dataset", "labels", "--judge", "j",
                 "--mode", "pointwise", "--lang", "xx", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    # every sampled labelled pair was judged once with four samples; the matrix covers them all
    assert rec["pairs"] == info["pairs"] == sum(sum(row.values()) for row in rec["confusion"].values())
    assert rec["relevant_pairs"] == info["relevant_pairs"] and rec["cost"]["calls"] == 4 * info["pairs"]
    assert rec["unparsed_sample_rate"] == 0.0 and math.isfinite(rec["cost"]["seconds"])
    truth = read_qrels(s["truth"])
    verdicts = [r for _, r in read_jsonl(tmp_path / "v.jsonl")]
    assert all(r["docid"] != r["reference_docid"] for r in verdicts)
    tp = sum(r["verdict"] != 0 and truth[r["qid"]][r["docid"]] == 1 for r in verdicts)
    assert rec["true_positives"] == tp
