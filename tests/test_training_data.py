"""Training groups: loading negatives files and corpora, positive rotation, negative windows, skips."""

from __future__ import annotations

import json

import pytest

from boostmdr.formats import FormatError, Negative, NegativesRecord, write_jsonl, write_negatives
from boostmdr.training_data import GroupDataset, PoolQuery, load_queries, parse_corpus_args


def _rec(qid, lang, positives, negatives):
    return NegativesRecord(qid, f"query {qid}", lang, positives, [Negative(d, 0.5, i + 1, "miner:test") for i, d in enumerate(negatives)])


def _texts(lang, docids):
    return {lang: {d: f"text of {d}" for d in docids}}


def test_positive_rotates_through_all_positives_by_epoch():
    q = PoolQuery("q1", "x", "sw", ("p1", "p2", "p3"), ("n1",))
    ds = GroupDataset([q], _texts("sw", ["p1", "p2", "p3", "n1"]), group_size=2, seed=3)
    firsts = [ds.group(0, e).docids[0] for e in range(6)]
    assert sorted(firsts[:3]) == ["p1", "p2", "p3"]
    assert firsts[3:] == firsts[:3]


def test_negative_windows_cover_the_pool_once_per_pass_without_repeats():
    negs = tuple(f"n{i}" for i in range(10))
    q = PoolQuery("q1", "x", "sw", ("p",), negs)
    ds = GroupDataset([q], _texts("sw", ["p", *negs]), group_size=4, seed=0)
    groups = [ds.group(0, e).docids[1:] for e in range(8)]  # 3 negatives per group, 4 windows per pass
    for g in groups:
        assert len(g) == 3 and len(set(g)) == 3 and set(g) <= set(negs)
    assert {d for g in groups[:4] for d in g} == set(negs)  # first pass: every negative used
    assert {d for g in groups[4:] for d in g} == set(negs)  # second pass too
    assert groups[:4] != groups[4:]  # with a new order
    again = GroupDataset([q], _texts("sw", ["p", *negs]), group_size=4, seed=0)
    assert [again.group(0, e).docids[1:] for e in (5, 0, 7)] == [groups[5], groups[0], groups[7]]


def test_too_few_negatives_uses_all_then_samples_with_replacement():
    q = PoolQuery("q1", "x", "sw", ("p",), ("a", "b"))
    ds = GroupDataset([q], _texts("sw", ["p", "a", "b"]), group_size=8, seed=0)
    for epoch in range(3):
        g = ds.group(0, epoch)
        assert g.docids[0] == "p" and len(g.docids) == 8
        assert set(g.docids[1:]) == {"a", "b"}
        assert g.passages == tuple(f"text of {d}" for d in g.docids)


def test_load_counts_and_skips(tmp_path):
    path = tmp_path / "neg.jsonl"
    write_negatives(
        path,
        [
            _rec("1", "sw", ["p1"], ["n1", "n2", "p1", "n1"]),  # p1 dropped as positive, n1 duplicate
            _rec("2", "sw", ["p2"], []),  # no negatives: skipped
            _rec("3", "sw", [], ["n1"]),  # no positives: skipped
            _rec("4", "te", ["p4"], [f"m{i}" for i in range(9)]),
        ],
    )
    queries, stats = load_queries([path], group_size=8)
    assert [q.qid for q in queries] == ["1", "4"]
    assert queries[0].negatives == ("n1", "n2")
    assert (stats.records, stats.kept, stats.skipped_no_negatives, stats.skipped_no_positives) == (4, 2, 1, 1)
    assert (stats.negatives_dropped_as_positive, stats.duplicate_negatives_dropped, stats.too_few_negatives) == (1, 1, 1)
    assert stats.per_lang == {"sw": 1, "te": 1}


def test_from_files_reads_only_needed_passages_per_language(tmp_path):
    write_negatives(tmp_path / "sw.jsonl", [_rec("1", "sw", ["39#0"], ["7#1"])])
    write_negatives(tmp_path / "te.jsonl", [_rec("1", "te", ["39#0"], ["8#0"])])  # same ids, other language
    write_jsonl(tmp_path / "sw.corpus.jsonl", [{"docid": d, "title": "T", "text": f"sw {d}"} for d in ["39#0", "7#1", "9#9"]])
    write_jsonl(tmp_path / "te.corpus.jsonl", [{"docid": d, "title": "", "text": f"te {d}"} for d in ["8#0", "39#0"]])
    corpora = parse_corpus_args([f"sw={tmp_path / 'sw.corpus.jsonl'}", f"te={tmp_path / 'te.corpus.jsonl'}"])
    ds, stats = GroupDataset.from_files([tmp_path / "sw.jsonl", tmp_path / "te.jsonl"], corpora, group_size=2, seed=0)
    assert ds.texts == {"sw": {"39#0": "T sw 39#0", "7#1": "T sw 7#1"}, "te": {"39#0": "te 39#0", "8#0": "te 8#0"}}
    assert ds.group(1, 0).passages == ("te 39#0", "te 8#0")
    assert stats.kept == 2


def test_missing_docid_language_or_duplicate_query_is_named(tmp_path):
    write_negatives(tmp_path / "a.jsonl", [_rec("1", "sw", ["p"], ["gone"])])
    write_jsonl(tmp_path / "c.jsonl", [{"docid": "p", "title": "", "text": "x"}])
    with pytest.raises(FormatError, match=r"c\.jsonl: 1 docid\(s\) used by the sw training queries are not in this corpus, e\.g\. \['gone'\]"):
        GroupDataset.from_files([tmp_path / "a.jsonl"], {"sw": tmp_path / "c.jsonl"}, 2, 0)
    with pytest.raises(ValueError, match=r"no corpus given for language\(s\) \['sw'\]; pass --corpus LANG=PATH"):
        GroupDataset.from_files([tmp_path / "a.jsonl"], {"te": tmp_path / "c.jsonl"}, 2, 0)
    write_negatives(tmp_path / "b.jsonl", [_rec("1", "sw", ["p"], ["n"])])
    with pytest.raises(FormatError, match=r"query '1' \(sw\) also appears in .*a\.jsonl"):
        load_queries([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], 2)
    with pytest.raises(ValueError, match="--corpus expects LANG=PATH, got 'sw'"):
        parse_corpus_args(["sw"])


def test_fingerprint_changes_with_data_and_seed():
    q = PoolQuery("q1", "x", "sw", ("p",), ("n",))
    base = GroupDataset([q], _texts("sw", ["p", "n"]), 2, 0).fingerprint()
    assert base == GroupDataset([q], _texts("sw", ["p", "n"]), 2, 0).fingerprint()
    assert base != GroupDataset([q], _texts("sw", ["p", "n"]), 2, 1).fingerprint()
    changed = {"sw": {"p": "text of p", "n": "edited"}}
    assert base != GroupDataset([q], changed, 2, 0).fingerprint()
    assert json.dumps(base)  # a plain hex string
