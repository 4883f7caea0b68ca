"""The synthetic benchmark: layout, exact counts, determinism, planted false negatives, scripts."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from boostmdr.demo import synthetic
from boostmdr.formats import read_qrels, read_topics, shard_bounds
from boostmdr.demo.synthetic import (
    COARSE_LABELS,
    FINE_LABELS,
    LANGS,
    SCRIPTS,
    TOPIC_LABELS,
    TOPICS,
    generate,
    make_plan,
    raw_paths,
)

ARGS = dict(
    seed=7, passages=1500, train_queries=60, dev_queries=20, false_negative_rate=0.5, corpus_shards=3,
    no_positive_rate=0.1, max_planted=3, judged_negatives=6,
)
PLAN_ARGS = {k: v for k, v in ARGS.items() if k != "corpus_shards"}


def corpus_lines(raw: Path, lang: str) -> list[str]:
    lines: list[str] = []
    for shard in sorted((raw / f"miracl-corpus-v1.0-{lang}").glob("docs-*.jsonl.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as fh:
            lines.extend(fh)
    return lines


def gzip_payload(data: bytes) -> bytes:
    """A gzip member without its header (whose mtime and file name say when and where it was written)."""
    assert data[:2] == b"\x1f\x8b"
    flags, pos = data[3], 10
    if flags & 4:
        pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
    for bit in (8, 16):
        if flags & bit:
            pos = data.index(b"\0", pos) + 1
    if flags & 2:
        pos += 2
    return data[pos:]


@pytest.fixture(scope="module")
def sw(tmp_path_factory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    return raw, generate("sw", raw, **ARGS)


def test_writes_exactly_the_raw_miracl_layout(sw):
    raw, _ = sw
    files = sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())
    assert files == [
        "miracl-corpus-v1.0-sw/docs-00.jsonl.gz",
        "miracl-corpus-v1.0-sw/docs-01.jsonl.gz",
        "miracl-corpus-v1.0-sw/docs-02.jsonl.gz",
        "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv",
        "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-train.tsv",
        "miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-dev.tsv",
        "miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-train.tsv",
        "synthetic-truth/sw.doc-topics.tsv",
        "synthetic-truth/sw.train.complete-qrels.tsv",
    ]


def test_corpus_counts_docids_and_shards(sw):
    raw, _ = sw
    shards = sorted((raw / "miracl-corpus-v1.0-sw").glob("docs-*.jsonl.gz"))
    sizes = [sum(1 for _ in gzip.open(s, "rt", encoding="utf-8")) for s in shards]
    assert sizes == [b - a for a, b in (shard_bounds(1500, k, 3) for k in range(3))]
    docs = [json.loads(line) for line in corpus_lines(raw, "sw")]
    assert len(docs) == 1500
    assert len({d["docid"] for d in docs}) == 1500
    assert all(re.fullmatch(r"\d+#\d+", d["docid"]) for d in docs)
    assert all(list(d) == ["docid", "title", "text"] and d["title"] and d["text"] for d in docs)
    # Passages of an article are consecutive and numbered from 0; an article has one title.
    first = docs[0]["docid"]
    assert first == "0#0"
    titles: dict[str, str] = {}
    for prev, cur in zip(docs, docs[1:]):
        (pa, pp), (ca, cp) = (map(int, d["docid"].split("#")) for d in (prev, cur))
        assert (ca, cp) in ((pa, pp + 1), (pa + 1, 0))
    for d in docs:
        assert titles.setdefault(d["docid"].split("#")[0], d["title"]) == d["title"]


def test_corpus_lines_are_canonical_json(sw):
    raw, _ = sw
    for line in corpus_lines(raw, "sw"):
        assert line == json.dumps(json.loads(line), ensure_ascii=False) + "\n"


def test_queries_and_judgements_have_exact_counts(sw):
    raw, summary = sw
    p = raw_paths(raw, "sw")
    train, dev = read_topics(p["train_topics"]), read_topics(p["dev_topics"])
    assert list(train) == [str(i) for i in range(60)]
    assert list(dev) == [str(i) for i in range(60, 80)]
    tq, dq = read_qrels(p["train_qrels"]), read_qrels(p["dev_qrels"])
    assert set(tq) == set(train) and set(dq) == set(dev)
    no_positive = [q for q, docs in tq.items() if 1 not in docs.values()]
    assert len(no_positive) == round(0.1 * 60) == summary["train_no_positive"] == 6
    assert all(1 in docs.values() for docs in dq.values())
    for qrels in (tq, dq):
        for docs in qrels.values():
            assert sorted(set(docs.values())) in ([0], [0, 1])
            assert list(docs.values()).count(0) == 6  # judged_negatives
            assert list(docs.values()).count(1) <= 3  # positive + 0..2 labelled copies, or none
    assert summary["judged_negatives"] == 6 * 80


def test_planted_false_negatives_are_in_truth_and_not_in_qrels(sw):
    raw, summary = sw
    p = raw_paths(raw, "sw")
    labelled, truth = read_qrels(p["train_qrels"]), read_qrels(p["truth_qrels"])
    assert set(truth) == set(labelled)
    planted: dict[str, list[str]] = {}
    for qid, docs in truth.items():
        for docid, rel in labelled[qid].items():
            assert docs[docid] == rel  # every labelled judgement is kept
        extra = [d for d in docs if d not in labelled[qid]]
        assert all(docs[d] == 1 for d in extra)
        if extra:
            planted[qid] = extra
    with_positive = sum(1 in docs.values() for docs in labelled.values())
    assert with_positive == 54
    assert len(planted) == round(0.5 * 54) == summary["train_with_planted"] == 27
    assert all(1 <= len(v) <= 3 for v in planted.values())
    assert sum(map(len, planted.values())) == summary["planted_false_negatives"]
    # A planted passage is no query's labelled positive (it may be another query's judged rel-0 passage).
    positives = {d for docs in labelled.values() for d, rel in docs.items() if rel == 1}
    assert not positives & {d for v in planted.values() for d in v}


def test_relevant_copies_carry_the_positive_names_and_facts(sw):
    raw, _ = sw
    plan = make_plan("sw", **PLAN_ARGS)
    docs = {json.loads(line)["docid"]: json.loads(line) for line in corpus_lines(raw, "sw")}
    vocab = plan.vocab
    checked = 0
    for q in plan.train + plan.dev:
        if not q.positives:
            continue
        pos = q.positives[0]
        main = vocab.words[plan.main_name(plan.passage_article[pos])]
        pos_pairs = sorted(int(f - vocab.fact) // 2 for f in plan.facts[pos])
        for copy in q.positives[1:] + q.planted:
            assert plan.passage_article[copy] != plan.passage_article[pos]
            assert sorted(int(f - vocab.fact) // 2 for f in plan.facts[copy]) == pos_pairs
            words = docs[plan.docid(copy)]["text"].split()
            assert main in words
            assert all(vocab.words[f] in words for f in plan.facts[copy])
            checked += 1
        # Judged non-relevant passages lack the positive's facts.
        for neg in q.negatives:
            neg_pairs = {int(f - vocab.fact) // 2 for f in plan.facts[neg]}
            assert len(neg_pairs & set(pos_pairs)) < 2
    assert checked > 30


def test_same_arguments_give_identical_files(tmp_path, sw):
    raw, _ = sw
    again = tmp_path / "again"
    generate("sw", again, **ARGS)
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        a, b = path.read_bytes(), (again / path.relative_to(raw)).read_bytes()
        if path.suffix == ".gz":
            # formats.atomic_write stamps the gzip header with the time and the temporary file name.
            assert gzip.decompress(a) == gzip.decompress(b)
            assert gzip_payload(a) == gzip_payload(b)
        else:
            assert a == b, path


def test_corpus_does_not_depend_on_shard_count(tmp_path, sw):
    raw, _ = sw
    generate("sw", tmp_path, **{**ARGS, "corpus_shards": 1})
    assert corpus_lines(tmp_path, "sw") == corpus_lines(raw, "sw")
    assert (tmp_path / "synthetic-truth/sw.doc-topics.tsv").read_bytes() == (
        raw / "synthetic-truth/sw.doc-topics.tsv"
    ).read_bytes()


def test_other_seed_or_language_gives_other_data(tmp_path, sw):
    raw, _ = sw
    generate("sw", tmp_path / "seed8", **{**ARGS, "seed": 8})
    generate("id", tmp_path / "id", **ARGS)
    sw_topics = read_topics(raw_paths(raw, "sw")["train_topics"])
    assert read_topics(raw_paths(tmp_path / "seed8", "sw")["train_topics"]) != sw_topics
    id_words = {w for q in read_topics(raw_paths(tmp_path / "id", "id")["train_topics"]).values() for w in q.split()}
    sw_words = {w for q in sw_topics.values() for w in q.split()}
    assert len(id_words & sw_words) < 0.05 * len(sw_words)


def test_zero_rate_plants_none(tmp_path):
    generate("fi", tmp_path, **{**ARGS, "false_negative_rate": 0.0})
    p = raw_paths(tmp_path, "fi")
    assert p["truth_qrels"].read_bytes() == p["train_qrels"].read_bytes()


def test_rate_one_plants_for_every_labelled_query(tmp_path):
    summary = generate("fi", tmp_path, **{**ARGS, "false_negative_rate": 1.0})
    assert summary["train_with_planted"] == 54


def test_max_planted_bounds_each_query_and_sets_the_mean(tmp_path):
    # The default config's calibration (every labelled query gets 1..max_planted, uniformly) at max_planted 9:
    # counts stay within 1..9 and average about 5 over 54 queries (standard error 2.6 / sqrt(54) = 0.35).
    summary = generate("fi", tmp_path, **{**ARGS, "false_negative_rate": 1.0, "max_planted": 9})
    p = raw_paths(tmp_path, "fi")
    labelled = {(q, d) for q, d, _ in _rows(p["train_qrels"])}
    counts: dict[str, int] = {}
    for q, d, rel in _rows(p["truth_qrels"]):
        if (q, d) not in labelled:
            assert rel == "1"
            counts[q] = counts.get(q, 0) + 1
    assert len(counts) == summary["train_with_planted"] == 54
    assert min(counts.values()) >= 1 and max(counts.values()) <= 9
    assert 3.9 < sum(counts.values()) / 54 < 6.1 and summary["planted_false_negatives"] == sum(counts.values())


def test_corpus_must_hold_the_expected_relevant_passages(tmp_path):
    # 54 labelled train + 20 dev queries take 74 x 1.6 = 118.4 passages as positives and labelled copies; 54 queries
    # with 1..21 planted take 54 x 11 = 594 more: 712.4 passages, more than two thirds of 1,000, not of 1,100.
    with pytest.raises(ValueError, match=r"1000 passages are too few .* max_planted 21: .* about 712 passages, more "
                                         r"than two thirds of the corpus"):
        generate("sw", tmp_path, **{**ARGS, "passages": 1000, "false_negative_rate": 1.0, "max_planted": 21})
    summary = generate("sw", tmp_path, **{**ARGS, "passages": 1100, "false_negative_rate": 1.0, "max_planted": 21})
    assert summary["train_with_planted"] == 54


def _rows(path):
    return [tuple(line.split()[i] for i in (0, 2, 3)) for line in open(path, encoding="utf-8")]


def test_doc_topics_are_consistent_with_the_topic_table(sw):
    raw, _ = sw
    rows = [line.rstrip("\n").split("\t") for line in open(raw / "synthetic-truth/sw.doc-topics.tsv", encoding="utf-8")]
    docids = [json.loads(line)["docid"] for line in corpus_lines(raw, "sw")]
    assert [r[0] for r in rows] == docids
    allowed = {pair for pairs in TOPIC_LABELS.values() for pair in pairs}
    assert all(len(r) == 3 and (r[1], r[2]) in allowed for r in rows)
    by_article: dict[str, tuple[str, str]] = {}
    for docid, fine, coarse in rows:
        assert by_article.setdefault(docid.split("#")[0], (fine, coarse)) == (fine, coarse)
    # Geography dominates Swahili in Table 13 (789 of 1,901): the synthetic articles follow it.
    geo = {pair for pair in TOPIC_LABELS["GE"]}
    share = sum(v in geo for v in by_article.values()) / len(by_article)
    assert 0.3 < share < 0.55


def test_topic_table_covers_all_labels_without_ambiguity():
    pairs = [pair for t in TOPICS for pair in TOPIC_LABELS[t]]
    assert len(pairs) == len(set(pairs))  # a (fine, coarse) pair names one topic
    assert {f for f, _ in pairs} == set(FINE_LABELS) and len(FINE_LABELS) == 14
    assert {c for _, c in pairs} == set(COARSE_LABELS) and len(COARSE_LABELS) == 10
    assert list(TOPIC_LABELS) == list(TOPICS) and len(TOPICS) == 12


@pytest.mark.parametrize("lang", LANGS)
def test_each_language_writes_in_its_own_script(tmp_path, lang):
    generate(lang, tmp_path, seed=3, passages=200, train_queries=10, dev_queries=5, false_negative_rate=0.5)
    script = SCRIPTS[lang]
    p = raw_paths(tmp_path, lang)
    texts = [t for path in (p["train_topics"], p["dev_topics"]) for t in read_topics(path).values()]
    for line in corpus_lines(tmp_path, lang):
        doc = json.loads(line)
        texts += [doc["title"], doc["text"]]
    chars = {c for t in texts for c in t if c != " "}
    bad = sorted(c for c in chars if not script.allows(c))
    assert not bad, f"{lang}: characters outside {script.name}: {bad[:10]}"
    assert len(chars) >= 15
    assert all("  " not in t and t == t.strip() for t in texts)  # words separated by single spaces


def test_unknown_language_lists_supported_codes(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported language code 'de'; supported: ar, bn, en, es, fa, fi, fr, hi, "
                                         r"id, ja, ko, ru, sw, te, th, zh"):
        generate("de", tmp_path, **ARGS)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"false_negative_rate must be in \[0, 1\], got 1.5"):
        generate("sw", tmp_path, **{**ARGS, "false_negative_rate": 1.5})
    with pytest.raises(ValueError, match=r"100 passages are too few for 60 train and 20 dev queries"):
        generate("sw", tmp_path, **{**ARGS, "passages": 100})
    with pytest.raises(ValueError, match=r"corpus_shards must be between 1 and the number of passages, got 0"):
        generate("sw", tmp_path, **{**ARGS, "corpus_shards": 0})


def test_cli_writes_files_and_log(tmp_path):
    log = tmp_path / "logs" / "sw.log"
    rc = synthetic.main([
        "--lang", "sw", "--out-dir", str(tmp_path / "raw"), "--seed", "1", "--passages", "300",
        "--train-queries", "12", "--dev-queries", "4", "--false-negative-rate", "0.25", "--corpus-shards", "2",
        "--log", str(log),
    ])
    assert rc == 0
    assert len(corpus_lines(tmp_path / "raw", "sw")) == 300
    assert "wrote sw under" in log.read_text(encoding="utf-8")
    assert len(read_topics(raw_paths(tmp_path / "raw", "sw")["train_topics"])) == 12
