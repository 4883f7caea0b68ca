"""The judge cascade: the escalation rule on a hand-worked example, the merge of the two judges' verdicts
(and its refusals), and a cascade end to end on the toy data: a first judge on every query, the second on
the escalated ones (the CLI's --escalated-by), the merged verdict file pooled like any judge's."""

from __future__ import annotations

import json

import pytest
from judge_fixtures import PROMPT, random_tiny_lm, write_toy_data

from boostmdr.cascade import Escalation, escalation, escalations, merge
from boostmdr.formats import read_jsonl, read_verdicts
from boostmdr.judge import JudgeSettings, build_pool, load_judge_template, run_cascade, run_verdicts, verdict_stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rec(qid, docid, verdict, scores, **extra):
    return {"qid": qid, "docid": docid, "verdict": verdict, "votes": {}, "samples": [{"score": s} for s in scores],
            "prompt_tokens": 10, "prefilled_tokens": 4, "generated_tokens": 3, **extra}


# A hand-worked example: four queries judged by the first judge (four samples each).
FIRST = [
    _rec("q1", "a", 0, [0, 0, 0, 0]), _rec("q1", "b", 0, [0, 0, None, 0]),  # unanimous 0s (one unparsed): kept
    _rec("q2", "c", 0, [0, 0, 0, 0]), _rec("q2", "d", 2, [2, 2, 2, 2]),      # flags d
    _rec("q3", "e", 0, [0, 2, 0, 0]),                                        # its samples disagree
    _rec("q4", "f", None, [None, None, None, None]), _rec("q4", "g", 1, [1, 1, 1, 1]),  # undecided and flagged
]


def test_escalation_rule_on_a_hand_worked_example():
    assert escalations(FIRST) == {
        "q1": Escalation(False, ()),
        "q2": Escalation(True, ("flagged",)),
        "q3": Escalation(True, ("disagreement",)),
        "q4": Escalation(True, ("flagged", "undecided")),
    }
    # an unparsed sample among agreeing ones is no disagreement; a flag of grade 1 counts like 2
    assert escalation([_rec("x", "y", 0, [0, None])]) == Escalation(False, ())
    assert escalation([_rec("x", "y", 1, [1, 1])]).reasons == ("flagged",)


def test_merge_takes_the_second_judge_on_escalated_queries_and_keeps_the_first_judges_cost():
    second = [_rec("q2", "c", 0, [0]), _rec("q2", "d", 0, [0]), _rec("q3", "e", 2, [2]),
              _rec("q4", "f", 0, [0]), _rec("q4", "g", None, [None])]
    out = merge(["q1", "q2", "q3", "q4", "q5"], FIRST, second, "small", "big")
    got = {(r["qid"], r["docid"]): (r["verdict"], r["decided_by"], r["cascade"]["escalated"]) for r in out}
    assert got == {
        ("q1", "a"): (0, "small", False), ("q1", "b"): (0, "small", False),
        ("q2", "c"): (0, "big", True), ("q2", "d"): (0, "big", True),  # the big judge overrules the flag
        ("q3", "e"): (2, "big", True),
        ("q4", "f"): (0, "big", True), ("q4", "g"): (None, "big", True),  # its null stands: the pool leaves g out
    }
    d = next(r for r in out if r["docid"] == "d")
    assert d["cascade"] == {"escalated": True, "reasons": ["flagged"], "first_verdict": 2, "first_votes": {},
                            "first_tokens": {"prompt_tokens": 10, "prefilled_tokens": 4, "generated_tokens": 3,
                                             "cached_generated_tokens": 0}}
    assert [r["qid"] for r in out] == ["q1", "q1", "q2", "q2", "q3", "q4", "q4"]  # the chunk's order


def test_merge_refuses_an_escalated_query_the_second_judge_did_not_judge():
    with pytest.raises(ValueError, match=r"query 'q3' was escalated \(disagreement\) but the second judge has no verdict for 1"):
        merge(["q3"], FIRST, [], "small", "big")


def test_merge_refuses_second_verdicts_for_a_query_that_was_not_escalated():
    with pytest.raises(ValueError, match=r"the second judge judged 1 queries the first did not escalate, e.g. \['q1'\]"):
        merge(["q1"], FIRST, [_rec("q1", "a", 0, [0]), _rec("q1", "b", 0, [0])], "small", "big")


def test_stats_of_a_cascade_count_both_judges_tokens_and_the_escalation(tmp_path):
    from boostmdr.formats import write_jsonl

    second = [_rec("q2", "c", 0, [0]), _rec("q2", "d", 0, [0]), _rec("q3", "e", 2, [2]),
              _rec("q4", "f", 0, [0]), _rec("q4", "g", None, [None])]
    path = tmp_path / "v.jsonl"
    write_jsonl(path, merge(["q1", "q2", "q3", "q4"], FIRST, second, "small", "big"))
    stats = verdict_stats([path], "xx")
    assert stats["decided_by"] == {"big": 5, "small": 2}
    assert stats["escalated_queries"] == 3 and stats["escalation_rate"] == pytest.approx(3 / 4)
    # 7 records of the deciding judge (3 generated each) + the first judge's 3 on each of the 5 escalated records
    assert stats["generated_tokens"] == 7 * 3 + 5 * 3


# ---------------------------------------------------------------------------------- end to end, toy


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade-toy")
    return write_toy_data(root / "data", n_queries=8, n_candidates=3), random_tiny_lm(root)


def test_cascade_end_to_end_on_the_toy_data(toy, tmp_path):
    from boostmdr.llm import get_backend

    data, model = toy
    args = (data["candidates"], data["train"], data["corpus"], "xx")
    template = load_judge_template(PROMPT)
    # the cheap judge: one structured sample per candidate; the expensive judge: the authors' four samples
    cheap = JudgeSettings(samples=((0.9, 1.0),), max_new_tokens=32, seed=1, structured_output=True)
    dear = JudgeSettings(max_new_tokens=32, seed=2, structured_output=True)
    first = [tmp_path / f"first-{i}.jsonl" for i in range(2)]
    with get_backend("transformers", model=str(model), device="cpu") as b:
        for i, path in enumerate(first):
            run_verdicts(*args, b, template, cheap, path, chunk=i, num_chunks=2)
        escalated = tmp_path / "escalated-0.jsonl"
        counts = run_verdicts(*args, b, template, dear, escalated, chunk=0, num_chunks=2, escalated_by=first,
                              summary_path=tmp_path / "escalated-0.summary.json")
    chunk0 = [str(q) for q in range(4)]
    # one sample per candidate cannot disagree with itself: a query is escalated iff a candidate's verdict is not 0
    wanted = sorted({r["qid"] for r in read_verdicts(first).values() if r["verdict"] != 0 and r["qid"] in chunk0})
    assert 0 < len(wanted) < 4  # (seeds chosen so that both kinds occur)
    esc_recs = [r for _, r in read_jsonl(escalated)]
    assert sorted({r["qid"] for r in esc_recs}) == sorted(wanted)
    assert counts["generated"] == 3 * 4 * len(wanted)
    summary = json.loads((tmp_path / "escalated-0.summary.json").read_text())
    assert summary["escalation"]["queries"] == 4 and summary["escalation"]["escalated"] == len(wanted)

    out = tmp_path / "cascade-0.jsonl"
    records = run_cascade(data["train"], first, [escalated], "cheap", "dear", out, chunk=0, num_chunks=2)
    assert len(records) == 4 * 3 and {r["qid"] for r in records} == set(chunk0)
    for r in records:
        assert r["decided_by"] == ("dear" if r["qid"] in wanted else "cheap")
        assert len(r["samples"]) == (4 if r["qid"] in wanted else 1)
    # the merged file is a verdict file: the pool reads it (chunk 0's queries only)
    pool = build_pool(data["candidates"], data["train"], "xx", "stage1:toy", frozenset({0}), [out, first[1]])
    assert len(pool) == 8


def test_cascade_cli_refuses_a_chunk_out_of_range(tmp_path):
    from boostmdr.judge import main

    with pytest.raises(SystemExit) as exc:
        main(["cascade", "--train", "t", "--first", "f", "--first-name", "a", "--second-name", "b",
              "--chunk", "3", "--num-chunks", "2", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
