"""BM25 through Pyserini's Lucene, run as the CLI (each Lucene step starts its own JVM, 2-9 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from boostmdr.bm25 import (
    ENGLISH_ANALYZER_CLASS,
    INDEX_META,
    WHITESPACE_ANALYZER_CLASS,
    BM25Error,
    resolve_analyzer_language,
)
from boostmdr.evaluate import evaluate_run
from boostmdr.formats import read_run

SW_DOCS = [
    {"docid": "1#0", "title": "Simba", "text": "simba ni mnyama mkubwa wa porini anayekula nyama"},
    {"docid": "1#1", "title": "Simba", "text": "simba huishi katika makundi yanayoitwa familia"},
    {"docid": "2#0", "title": "Chakula", "text": "wali na maharage ni chakula kitamu cha mchana"},
    {"docid": "3#0", "title": "Mto Nile", "text": "mto nile ni mto mrefu zaidi barani afrika"},
    {"docid": "4#0", "title": "", "text": "mvua kubwa ilinyesha jana jioni mjini"},
]
SW_TOPICS = "q1\tsimba familia makundi\nq2\tchakula cha mchana\nq3\tmto mrefu afrika\nq4\tzzzz\n"

RU_DOCS = [
    {"docid": "10#0", "title": "Кошки", "text": "домашние кошки любят спать на солнце"},
    {"docid": "11#0", "title": "Реки", "text": "волга самая длинная река европы"},
    {"docid": "12#0", "title": "Чай", "text": "горячий чай пьют с лимоном"},
]
# "кошка" and "кошки", "рекой" and "река" meet only through the Russian stemmer.
RU_TOPICS = "r1\tкошка на солнце\nr2\tдлинной рекой\n"


def bm25(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "boostmdr.bm25", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"boostmdr.bm25 {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def write_corpus(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.mark.slow
def test_swahili_index_and_search_rank_the_matching_passage_first(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", SW_DOCS)
    (tmp_path / "dev.topics.tsv").write_text(SW_TOPICS, encoding="utf-8")
    index, run_path = tmp_path / "index" / "sw", tmp_path / "runs" / "sw.trec"
    bm25("index", "--corpus", str(corpus), "--language", "sw", "--index", str(index), "--threads", "1",
         "--log", str(tmp_path / "index.log"))
    meta = json.loads((index / INDEX_META).read_text())
    assert (meta["language"], meta["analyzer"], meta["documents"], meta["indexed"]) == (
        "sw", WHITESPACE_ANALYZER_CLASS, 5, 5)
    assert not [p for p in tmp_path.joinpath("index").iterdir() if p.name != "sw"]  # no temporary left over

    bm25("search", "--index", str(index), "--topics", str(tmp_path / "dev.topics.tsv"), "--language", "sw",
         "--k1", "0.9", "--b", "0.4", "--depth", "3", "--tag", "bm25", "--out", str(run_path), "--threads", "1")
    lines = [line.split() for line in run_path.read_text().splitlines()]
    assert all(len(f) == 6 and f[1] == "Q0" and f[5] == "bm25" for f in lines)
    run = read_run(run_path)
    assert set(run) == {"q1", "q2", "q3"}  # q4 matches nothing and is absent
    assert [h.docid for h in run["q1"]] == ["1#1", "1#0"]  # both Simba passages; the one with all terms first
    assert run["q2"][0].docid == "2#0" and run["q3"][0].docid == "3#0"
    for qid in run:
        ranks = [int(f[3]) for f in lines if f[0] == qid]
        assert ranks == list(range(1, len(ranks) + 1))
        assert all(a.score >= b.score > 0 for a, b in zip(run[qid], run[qid][1:]))

    qrels = {"q1": {"1#1": 1}, "q2": {"2#0": 1}, "q3": {"3#0": 1}, "q4": {"4#0": 1}}
    agg, _ = evaluate_run(qrels, run)
    assert agg == {"ndcg_cut_10": 0.75, "recall_100": 0.75, "mrr_cut_10": 0.75}  # q1-q3 found first, q4 not at all


@pytest.mark.slow
def test_russian_uses_the_russian_stemmer(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", RU_DOCS)
    (tmp_path / "topics.tsv").write_text(RU_TOPICS, encoding="utf-8")
    index, run_path = tmp_path / "ru", tmp_path / "ru.trec"
    bm25("index", "--corpus", str(corpus), "--language", "ru", "--index", str(index))
    assert json.loads((index / INDEX_META).read_text())["analyzer"] == "org.apache.lucene.analysis.ru.RussianAnalyzer"
    bm25("search", "--index", str(index), "--topics", str(tmp_path / "topics.tsv"), "--language", "ru",
         "--out", str(run_path))
    run = read_run(run_path)
    assert [h.docid for h in run["r1"]] == ["10#0"]
    assert [h.docid for h in run["r2"]] == ["11#0"]


def test_language_without_analyzer_fails_listing_the_supported_codes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", SW_DOCS[:1])
    proc = bm25("index", "--corpus", str(corpus), "--language", "xx", "--index", str(tmp_path / "xx"), check=False)
    assert proc.returncode == 1
    assert "language 'xx' has no Lucene analyzer in Anserini" in proc.stderr
    codes = "ar bn da de en es fa fi fr ha hi hu id it ja ko nl no pl pt ru so sv sw te th tr uk yo zh"
    assert f"supported codes: {codes}" in proc.stderr
    assert "--analyzer-language" in proc.stderr
    assert list(tmp_path.iterdir()) == [corpus]

    bm25("index", "--corpus", str(corpus), "--language", "xx", "--analyzer-language", "en", "--index",
         str(tmp_path / "xx"))
    meta = json.loads((tmp_path / "xx" / INDEX_META).read_text())
    assert (meta["language"], meta["analyzer_language"], meta["analyzer"]) == ("xx", "en", ENGLISH_ANALYZER_CLASS)


def test_resolve_analyzer_language_without_a_jvm():
    supported = ["en", "ru", "sw"]
    assert resolve_analyzer_language("ru", None, supported) == "ru"
    assert resolve_analyzer_language("am", "sw", supported) == "sw"
    with pytest.raises(BM25Error, match="--analyzer-language 'am' has no Lucene analyzer in Anserini; "
                                        "supported codes: en ru sw"):
        resolve_analyzer_language("am", "am", supported)


def test_search_refuses_an_index_of_another_language(tmp_path):
    index = tmp_path / "sw"
    index.mkdir()
    (index / INDEX_META).write_text(json.dumps({
        "format": "boostmdr-bm25-index/1", "language": "sw", "analyzer_language": "sw",
        "analyzer": WHITESPACE_ANALYZER_CLASS, "corpus": "c", "corpus_bytes": 1, "documents": 1, "indexed": 1,
        "empty": 0, "contents": "title + ' ' + text", "anserini_jar": "a", "pyserini": "1.6.0"}))
    (tmp_path / "t.tsv").write_text("1\tsimba\n")
    proc = bm25("search", "--index", str(index), "--topics", str(tmp_path / "t.tsv"), "--language", "ru",
                "--out", str(tmp_path / "run.trec"), check=False)
    assert proc.returncode == 1
    assert f"--language 'ru' but the index {index} was built for 'sw'" in proc.stderr
    assert not (tmp_path / "run.trec").exists()
