"""The shared run/qrels/topics readers and writers of boostmdr.formats: round trips, tie order, bad lines."""

from __future__ import annotations

import pytest

from boostmdr.formats import (
    FormatError,
    Hit,
    atomic_write,
    read_qrels,
    read_run,
    read_topics,
    write_qrels,
    write_run,
    write_topics,
)


def test_run_round_trip_sorts_by_score_and_cuts_at_depth(tmp_path):
    run = {"q1": [Hit("d3", 1.5), Hit("d1", 3.0), Hit("d2", 2.25)], "q2": [Hit("x", 0.5)]}
    path = tmp_path / "run.trec"
    write_run(path, run, tag="t", depth=2)
    assert path.read_text().splitlines() == [
        "q1 Q0 d1 1 3.000000 t",
        "q1 Q0 d2 2 2.250000 t",
        "q2 Q0 x 1 0.500000 t",
    ]
    assert read_run(path) == {"q1": [Hit("d1", 3.0), Hit("d2", 2.25)], "q2": [Hit("x", 0.5)]}


def test_run_ties_are_written_by_docid_ascending(tmp_path):
    path = tmp_path / "run.trec"
    write_run(path, {"q": [Hit("b", 1.0), Hit("c", 2.0), Hit("a", 1.0), Hit("10", 1.0)]}, tag="t")
    # string order: "10" < "a" < "b"
    assert [line.split()[2:4] for line in path.read_text().splitlines()] == [
        ["c", "1"], ["10", "2"], ["a", "3"], ["b", "4"]
    ]


def test_read_run_orders_by_score_not_by_rank_column(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q Q0 low 1 0.1 t\nq Q0 high 2 0.9 t\n")
    assert [h.docid for h in read_run(path)["q"]] == ["high", "low"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("q Q0 d 1 0.5", "expected 'qid Q0 docid rank score tag', got 5 fields"),
        ("q Q0 d 1 high t", "score 'high' is not a number"),
    ],
)
def test_malformed_run_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.trec"
    path.write_text(f"q Q0 ok 1 1.0 t\n{line}\n")
    with pytest.raises(FormatError) as err:
        read_run(path)
    assert str(err.value) == f"{path}:2: {message}"


def test_duplicate_document_in_run_is_an_error(tmp_path):
    path = tmp_path / "dup.trec"
    path.write_text("q Q0 d 1 1.0 t\nq Q0 d 2 0.5 t\n")
    with pytest.raises(FormatError, match=r"dup.trec:2: document 'd' appears twice for query 'q'"):
        read_run(path)


def test_qrels_round_trip_keeps_rel_zero(tmp_path):
    qrels = {"1": {"a": 1, "b": 0}, "2": {"c": 0}}
    path = tmp_path / "qrels.tsv"
    write_qrels(path, qrels)
    assert read_qrels(path) == qrels


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 Q0 a", "expected 'qid Q0 docid rel', got 3 fields"),
        ("1 Q0 a yes", "relevance 'yes' is not an integer"),
        ("1 Q0 x 1", "duplicate judgement for query '1', document 'x'"),
    ],
)
def test_malformed_qrels_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.qrels"
    path.write_text(f"1 Q0 x 1\n{line}\n")
    with pytest.raises(FormatError) as err:
        read_qrels(path)
    assert str(err.value) == f"{path}:2: {message}"


def test_topics_round_trip_and_errors(tmp_path):
    path = tmp_path / "t.tsv"
    write_topics(path, {"1": "simba ni mnyama", "2": "чай"})
    assert read_topics(path) == {"1": "simba ni mnyama", "2": "чай"}
    path.write_text("1\tfirst\n1\tagain\n")
    with pytest.raises(FormatError, match=r"t.tsv:2: duplicate query id '1'"):
        read_topics(path)
    path.write_text("1 no tab here\n")
    with pytest.raises(FormatError, match=r"t.tsv:1: expected 'qid<TAB>query', got 1 tab-separated fields"):
        read_topics(path)


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    path = tmp_path / "out.trec"
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- train.jsonl, corpus.jsonl, verdicts


def test_train_round_trip_keeps_order_and_refuses_a_duplicate_query(tmp_path):
    from boostmdr.formats import LabelledQuery, read_train, write_train

    records = [LabelledQuery("q2", "b", ("d1",), ("d9",)), LabelledQuery("q1", "a", ("d2", "d3"))]
    write_train(tmp_path / "train.jsonl", records)
    back = read_train(tmp_path / "train.jsonl")
    assert list(back) == ["q2", "q1"] and list(back.values()) == records
    (tmp_path / "dup.jsonl").write_text(
        '{"qid": "q1", "query": "a", "positives": ["d"]}\n{"qid": "q1", "query": "b", "positives": ["e"]}\n'
    )
    with pytest.raises(FormatError, match=r"dup.jsonl:2: duplicate query id 'q1'"):
        read_train(tmp_path / "dup.jsonl")
    (tmp_path / "nopos.jsonl").write_text('{"qid": "q1", "query": "a"}\n')
    with pytest.raises(FormatError, match=r"nopos.jsonl:1: train record lacks field 'positives'"):
        read_train(tmp_path / "nopos.jsonl")


def test_read_corpus_names_the_line_of_a_bad_record_and_write_corpus_leaves_nothing_on_error(tmp_path):
    from boostmdr.formats import read_corpus, write_corpus

    docs = [(f"{i}#0", "t", f"text {i}") for i in range(4)]
    write_corpus(tmp_path / "corpus.jsonl", docs)
    assert [d["docid"] for d in read_corpus(tmp_path / "corpus.jsonl", 1, 3)] == ["1#0", "2#0"]
    lines = (tmp_path / "corpus.jsonl").read_text().splitlines()
    (tmp_path / "bad.jsonl").write_text("\n".join(lines + ['{"docid": "a b", "text": "x"}']) + "\n")
    with pytest.raises(FormatError, match=r"bad.jsonl:5: corpus record needs a non-empty 'docid'"):
        list(read_corpus(tmp_path / "bad.jsonl"))
    (tmp_path / "broken.jsonl").write_text("\n".join(lines[:2] + ["{not json"]) + "\n")
    with pytest.raises(FormatError, match=r"broken.jsonl:3: not valid JSON"):
        list(read_corpus(tmp_path / "broken.jsonl"))

    def failing():
        yield "1#0", "", "one"
        raise FormatError("raw.jsonl.gz", 2, "boom")

    with pytest.raises(FormatError, match="boom"):
        write_corpus(tmp_path / "half.jsonl", failing())
    assert not (tmp_path / "half.jsonl").exists()


def test_read_verdicts_refuses_a_second_verdict_and_a_grade_outside_0_1_2(tmp_path):
    from boostmdr.formats import read_verdicts, write_verdicts

    write_verdicts(tmp_path / "a.jsonl", [{"qid": "q", "docid": "d", "verdict": 0}, {"qid": "q", "docid": "e", "verdict": None}])
    write_verdicts(tmp_path / "b.jsonl", [{"qid": "q", "docid": "d", "verdict": 2}])
    assert {k: r["verdict"] for k, r in read_verdicts([tmp_path / "a.jsonl"]).items()} == {("q", "d"): 0, ("q", "e"): None}
    with pytest.raises(FormatError, match=r"b.jsonl:1: second verdict for query 'q', document 'd'"):
        read_verdicts([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    write_verdicts(tmp_path / "c.jsonl", [{"qid": "q", "docid": "d", "verdict": 3}])
    with pytest.raises(FormatError, match=r"c.jsonl:1: verdict must be 0, 1, 2 or null, got 3"):
        read_verdicts([tmp_path / "c.jsonl"])


def test_topic_labels_round_trip_and_a_second_line_for_a_query_names_its_line(tmp_path):
    from boostmdr.formats import ClassifierLabel, TopicRecord, read_topic_labels, write_topic_labels

    records = [
        TopicRecord("q1", "sw", "GE", "3#0", "dbpedia", {"yahoo_answers": ClassifierLabel(1, "Society & Culture", 0.61),
                                                         "dbpedia": ClassifierLabel(9, "Village", 0.93)}),
        TopicRecord("q2", "sw", "OT", None, "fallback"),
    ]
    path = tmp_path / "sw.jsonl"
    write_topic_labels(path, records)
    assert read_topic_labels(path) == records
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    with pytest.raises(FormatError, match=r"sw.jsonl:3: query 'q1' \(sw\) has a second topic line"):
        read_topic_labels(path)
    path.write_text('{"qid": "q1", "lang": "sw"}\n')
    with pytest.raises(FormatError, match=r"sw.jsonl:1: not a topic record"):
        read_topic_labels(path)
def test_instructions_read_from_a_json_list_or_json_lines_with_errors_naming_the_place(tmp_path):
    import json

    from boostmdr.formats import Instruction, read_instructions, write_instructions

    (tmp_path / "alpaca.json").write_text(json.dumps([
        {"instruction": "Summarize.", "input": "text", "output": "short"},
        {"instruction": "Name one.", "output": "x"},
    ]))  # fmt: skip
    assert read_instructions(tmp_path / "alpaca.json") == [
        Instruction("Summarize.", "text", "short", 0), Instruction("Name one.", "", "x", 1),
    ]  # fmt: skip
    write_instructions(tmp_path / "sw.jsonl", [Instruction("Fupisha.", "", "fupi", 7, "sw")])
    assert read_instructions(tmp_path / "sw.jsonl") == [Instruction("Fupisha.", "", "fupi", 7, "sw")]
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "a", "output": "b"}, {"input": "c"}]))
    with pytest.raises(FormatError, match=r"bad\.json: record 1: Alpaca record lacks \['instruction', 'output'\]"):
        read_instructions(tmp_path / "bad.json")
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n')
    with pytest.raises(FormatError, match=r"bad\.jsonl:2: record: field\(s\) \['instruction'\] must be strings"):
        read_instructions(tmp_path / "bad.jsonl")


def test_generated_queries_round_trip_and_refuse_inconsistent_records(tmp_path):
    import json

    from boostmdr.formats import GeneratedQuery, read_generated_queries, write_generated_queries

    records = [
        GeneratedQuery("12.g0", "12", "sw", "pdbg", "39#0", "a summary", "a new query", "ok", {"summary": ["a summary"]}),
        GeneratedQuery("13.g0", "13", "sw", "pdbg", "40#1", None, None, "summary_failed"),
    ]
    write_generated_queries(tmp_path / "q.jsonl", records)
    assert read_generated_queries(tmp_path / "q.jsonl") == records
    bad = records[0].to_json() | {"status": "query_failed"}
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(FormatError, match=r"bad\.jsonl:1: status 'query_failed' but query 'a new query'"):
        read_generated_queries(tmp_path / "bad.jsonl")
    (tmp_path / "dup.jsonl").write_text((json.dumps(records[1].to_json()) + "\n") * 2)
    with pytest.raises(FormatError, match=r"dup\.jsonl:2: duplicate gid '13\.g0'"):
        read_generated_queries(tmp_path / "dup.jsonl")
