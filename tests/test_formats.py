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
