"""The MIRACL loader: a round trip on synthetic data, and one test per validation error."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from boostmdr import miracl
from boostmdr.formats import FormatError, read_jsonl, read_qrels, read_topics
from boostmdr.miracl import prepare
from boostmdr.demo.synthetic import generate, raw_paths

# ------------------------------------------------------------------------------------- round trip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    out = tmp_path_factory.mktemp("data") / "ko"
    generate("ko", raw, seed=5, passages=800, train_queries=40, dev_queries=12, false_negative_rate=0.4,
             corpus_shards=3, no_positive_rate=0.1)
    return raw, out, prepare(raw, "ko", out)


def test_round_trip_corpus_keeps_shard_order(prepared):
    raw, out, stats = prepared
    raw_docs = []
    for shard in sorted((raw / "miracl-corpus-v1.0-ko").glob("docs-*.jsonl.gz")):
        raw_docs += [json.loads(line) for line in gzip.open(shard, "rt", encoding="utf-8")]
    assert [rec for _, rec in read_jsonl(out / "corpus.jsonl")] == raw_docs
    assert stats["passages"] == len(raw_docs) == 800
    assert stats["corpus_shards"] == 3


def test_round_trip_train_queries_and_dropped_count(prepared):
    raw, out, stats = prepared
    p = raw_paths(raw, "ko")
    topics, qrels = read_topics(p["train_topics"]), read_qrels(p["train_qrels"])
    records = [rec for _, rec in read_jsonl(out / "train.jsonl")]
    answerable = [q for q in topics if 1 in qrels[q].values()]
    assert [r["qid"] for r in records] == answerable
    assert len(records) == 36 and stats["train_queries"] == 36 and stats["train_dropped_no_positive"] == 4
    for r in records:
        assert r["query"] == topics[r["qid"]]
        assert r["positives"] == [d for d, rel in qrels[r["qid"]].items() if rel == 1]
        assert r["negatives"] == [d for d, rel in qrels[r["qid"]].items() if rel == 0]
    assert read_topics(out / "train.topics.tsv") == {q: topics[q] for q in answerable}
    assert stats["train_positives"] == sum(len(r["positives"]) for r in records)


def test_round_trip_dev_files_are_the_raw_ones(prepared):
    raw, out, stats = prepared
    p = raw_paths(raw, "ko")
    assert (out / "dev.topics.tsv").read_bytes() == p["dev_topics"].read_bytes()
    assert (out / "dev.qrels.tsv").read_bytes() == p["dev_qrels"].read_bytes()
    assert stats["dev_queries"] == 12 and stats["eval_split"] == "dev"
    assert json.loads((out / "stats.json").read_text()) == stats


# ------------------------------------------------------------------------------------------ errors


def write_raw(
    root: Path,
    shards: list[list[str]] | None = None,
    train_qrels: str = "1 Q0 a#0 1\n1 Q0 a#1 0\n2 Q0 b#0 1\n",
    train_topics: str = "1\tfirst query\n2\tsecond query\n",
    dev_qrels: str = "9 Q0 b#1 1\n",
    dev_topics: str = "9\tdev query\n",
) -> Path:
    """A tiny raw MIRACL layout for language xx; arguments replace one file's content."""
    if shards is None:
        shards = [
            ['{"docid": "a#0", "title": "A", "text": "alpha"}', '{"docid": "a#1", "title": "A", "text": "beta"}'],
            ['{"docid": "b#0", "title": "B", "text": "gamma"}', '{"docid": "b#1", "title": "B", "text": "delta"}'],
        ]
    lang_dir = root / "miracl-v1.0-xx"
    for sub, name, content in (
        ("topics", "topics.miracl-v1.0-xx-train.tsv", train_topics),
        ("topics", "topics.miracl-v1.0-xx-dev.tsv", dev_topics),
        ("qrels", "qrels.miracl-v1.0-xx-train.tsv", train_qrels),
        ("qrels", "qrels.miracl-v1.0-xx-dev.tsv", dev_qrels),
    ):
        (lang_dir / sub).mkdir(parents=True, exist_ok=True)
        (lang_dir / sub / name).write_text(content, encoding="utf-8")
    corpus = root / "miracl-corpus-v1.0-xx"
    corpus.mkdir(parents=True, exist_ok=True)
    for k, lines in enumerate(shards):
        with gzip.open(corpus / f"docs-{k:02d}.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
    return root


def shard(root: Path, k: int) -> str:
    return re.escape(str(root / "miracl-corpus-v1.0-xx" / f"docs-{k:02d}.jsonl.gz"))


def qrels_file(root: Path, split: str = "train") -> str:
    return re.escape(str(root / "miracl-v1.0-xx" / "qrels" / f"qrels.miracl-v1.0-xx-{split}.tsv"))


def test_tiny_layout_prepares(tmp_path):
    stats = prepare(write_raw(tmp_path / "raw"), "xx", tmp_path / "out")
    assert (stats["passages"], stats["train_queries"], stats["dev_queries"]) == (4, 2, 1)
    assert [rec["docid"] for _, rec in read_jsonl(tmp_path / "out" / "corpus.jsonl")] == ["a#0", "a#1", "b#0", "b#1"]


def test_bad_json_in_corpus_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, shards=[['{"docid": "a#0", "title": "A", "text": "x"}', '{"docid": "a#1", "text": ']])
    with pytest.raises(FormatError, match=shard(raw, 0) + r":2: not valid JSON"):
        prepare(raw, "xx", tmp_path / "out")
    assert not (tmp_path / "out" / "corpus.jsonl").exists()


def test_missing_text_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, shards=[[], ['{"docid": "a#0", "text": "x"}', '{"docid": "a#1", "title": "A"}']])
    with pytest.raises(FormatError, match=shard(raw, 1) + r":2: missing 'text' \(a string\) for docid 'a#1'"):
        prepare(raw, "xx", tmp_path / "out")


def test_missing_docid_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, shards=[['{"title": "A", "text": "x"}']])
    with pytest.raises(FormatError, match=shard(raw, 0) + r":1: missing or empty 'docid'"):
        prepare(raw, "xx", tmp_path / "out")


def test_duplicate_docid_names_both_lines(tmp_path):
    raw = write_raw(tmp_path, shards=[
        ['{"docid": "a#0", "title": "A", "text": "x"}', '{"docid": "a#1", "title": "A", "text": "y"}'],
        ['{"docid": "b#0", "title": "B", "text": "z"}', '{"docid": "b#1", "title": "B", "text": "w"}',
         '{"docid": "a#1", "title": "A", "text": "again"}'],
    ])
    with pytest.raises(FormatError, match=shard(raw, 1) + r":3: duplicate docid 'a#1' \(first at " + shard(raw, 0) + r":2\)"):
        prepare(raw, "xx", tmp_path / "out")
    assert not (tmp_path / "out" / "corpus.jsonl").exists()


def test_qrels_wrong_field_count_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, train_qrels="1 Q0 a#0 1\n1 Q0 a#1\n")
    with pytest.raises(FormatError, match=qrels_file(raw) + r":2: expected 'qid Q0 docid rel', got 3 fields"):
        prepare(raw, "xx", tmp_path / "out")


def test_qrels_non_integer_relevance_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, dev_qrels="9 Q0 b#1 yes\n")
    with pytest.raises(FormatError, match=qrels_file(raw, "dev") + r":1: relevance 'yes' is not an integer"):
        prepare(raw, "xx", tmp_path / "out")


def test_qrels_relevance_outside_0_1_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, train_qrels="1 Q0 a#0 1\n2 Q0 b#0 2\n")
    with pytest.raises(FormatError, match=qrels_file(raw) + r":2: relevance 2 is not 0 or 1"):
        prepare(raw, "xx", tmp_path / "out")


def test_qrels_duplicate_judgement_names_both_lines(tmp_path):
    raw = write_raw(tmp_path, train_qrels="1 Q0 a#0 1\n2 Q0 b#0 1\n1 Q0 a#0 0\n")
    with pytest.raises(FormatError, match=qrels_file(raw) + r":3: duplicate judgement .* \(first at line 1\)"):
        prepare(raw, "xx", tmp_path / "out")


def test_qrels_unknown_query_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, train_qrels="1 Q0 a#0 1\n2 Q0 b#0 1\n3 Q0 b#1 0\n")
    with pytest.raises(FormatError, match=qrels_file(raw) + r":3: judgement of unknown query '3'"):
        prepare(raw, "xx", tmp_path / "out")


def test_qrels_unknown_document_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, dev_qrels="9 Q0 b#1 1\n9 Q0 zz#4 0\n")
    with pytest.raises(FormatError, match=qrels_file(raw, "dev") + r":2: judgement of unknown document 'zz#4'"):
        prepare(raw, "xx", tmp_path / "out")
    assert not (tmp_path / "out" / "corpus.jsonl").exists()


def test_topics_wrong_field_count_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path, train_topics="1\tfirst query\n2 second query\n")
    topics = re.escape(str(raw / "miracl-v1.0-xx" / "topics" / "topics.miracl-v1.0-xx-train.tsv"))
    with pytest.raises(FormatError, match=topics + r":2: expected 'qid<TAB>query'"):
        prepare(raw, "xx", tmp_path / "out")


def test_not_a_gzip_file_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path)
    (raw / "miracl-corpus-v1.0-xx" / "docs-01.jsonl.gz").write_bytes(b'{"docid": "b#0"}\n')
    with pytest.raises(FormatError, match=shard(raw, 1) + r":1: unreadable after line 0: cannot read \(BadGzipFile"):
        prepare(raw, "xx", tmp_path / "out")


def test_truncated_gzip_names_file_and_line(tmp_path):
    lines = [json.dumps({"docid": f"a#{i}", "title": "A", "text": f"passage number {i} " * 20}) for i in range(400)]
    raw = write_raw(tmp_path, shards=[lines])
    path = raw / "miracl-corpus-v1.0-xx" / "docs-00.jsonl.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=shard(raw, 0) + r":(\d+): unreadable after line \d+: .*EOFError") as err:
        prepare(raw, "xx", tmp_path / "out")
    assert 1 < err.value.line < 400


def test_corrupt_gzip_data_names_file_and_line(tmp_path):
    raw = write_raw(tmp_path)
    lines = "".join(json.dumps({"docid": f"a#{i}", "title": "A", "text": f"text {i}"}) + "\n" for i in range(50))
    good = gzip.compress(lines.encode(), mtime=0)
    # A second gzip member whose first deflate block has the invalid block type 3: zlib fails there.
    bad = bytearray(gzip.compress(b'{"docid": "b#0", "title": "B", "text": "t"}\n', mtime=0))
    bad[10] |= 0b110
    (raw / "miracl-corpus-v1.0-xx" / "docs-00.jsonl.gz").write_bytes(good + bytes(bad))
    with pytest.raises(FormatError, match=shard(raw, 0) + r":51: unreadable after line 50.*invalid block type"):
        prepare(raw, "xx", tmp_path / "out")


def test_missing_file_names_expected_path(tmp_path):
    raw = write_raw(tmp_path)
    dev = raw / "miracl-v1.0-xx" / "qrels" / "qrels.miracl-v1.0-xx-dev.tsv"
    dev.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(dev)) + r": missing dev qrels"):
        prepare(raw, "xx", tmp_path / "out")


def test_missing_corpus_names_expected_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "miracl-v1.0-yy"))):
        prepare(tmp_path, "yy", tmp_path / "out")
    raw = write_raw(tmp_path, shards=[])
    with pytest.raises(FileNotFoundError, match=re.escape(str(raw / "miracl-corpus-v1.0-xx")) + r": no corpus files"):
        prepare(raw, "xx", tmp_path / "out")


def test_query_without_positive_is_dropped_and_counted(tmp_path):
    raw = write_raw(tmp_path, train_qrels="1 Q0 a#0 1\n2 Q0 b#0 0\n", train_topics="1\tq one\n2\tq two\n3\tq three\n")
    stats = prepare(raw, "xx", tmp_path / "out")
    assert stats["train_queries"] == 1 and stats["train_dropped_no_positive"] == 2
    assert [rec["qid"] for _, rec in read_jsonl(tmp_path / "out" / "train.jsonl")] == ["1"]
    assert (tmp_path / "out" / "train.topics.tsv").read_text(encoding="utf-8") == "1\tq one\n"


def test_cli_prepare_writes_files_and_log(tmp_path):
    raw = write_raw(tmp_path / "raw")
    log = tmp_path / "logs" / "prepare.log"
    out = tmp_path / "results" / "data" / "xx"
    assert miracl.main(["prepare", "--raw-dir", str(raw), "--lang", "xx", "--out-dir", str(out), "--log", str(log)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "corpus.jsonl", "dev.qrels.tsv", "dev.topics.tsv", "stats.json", "train.jsonl", "train.topics.tsv",
    ]
    assert "prepared xx" in log.read_text(encoding="utf-8")
