"""Sharded exact search: equals unsharded search, deterministic ties, positive scores, CLIs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boostmdr.formats import (
    FormatError,
    Hit,
    read_positive_scores,
    read_run,
    read_shard,
    shard_bounds,
    write_positive_scores,
    write_run,
    write_shard,
)
from boostmdr.search import merge_hits, search_shard, search_shards, topk_inner_product


def brute_force(q_emb, emb, ids, depth):
    """Reference ranking: every score, sorted by (-score, docid), cut at depth. The scores are elementwise
    products summed in float64, so identical passage vectors get identical scores: a BLAS matrix product may
    compute two equal columns with different kernels (measured: 1 ulp apart on an AMD EPYC's OpenBLAS), which
    would break a tie by score rather than by docid."""
    scores = (q_emb.astype(np.float64)[:, None, :] * emb.astype(np.float64)[None, :, :]).sum(axis=-1)
    out = []
    for row in scores:
        hits = sorted(((-float(s), d) for s, d in zip(row, ids, strict=True)))[:depth]
        out.append([(d, -s) for s, d in hits])
    return out


@pytest.fixture
def corpus(tmp_path):
    """60 passages, 8-d, with groups of identical vectors (exact ties) and shuffled docids."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((20, 8)).astype(np.float32)
    emb = base[rng.integers(0, 20, size=60)]  # many exact duplicates -> tied scores
    ids = [f"doc{i}" for i in rng.permutation(60)]
    q_emb = rng.standard_normal((9, 8)).astype(np.float32)
    qids = [f"q{i}" for i in range(9)]
    return tmp_path, emb, ids, q_emb, qids


def shard_files(tmp_path, emb, ids, num_shards):
    paths = []
    for s in range(num_shards):
        a, b = shard_bounds(len(ids), s, num_shards)
        p = tmp_path / f"n{num_shards}.s{s}.npz"
        write_shard(p, emb[a:b], ids[a:b])
        paths.append(p)
    return paths


def test_shard_file_round_trip(tmp_path):
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    write_shard(tmp_path / "a.npz", emb, ["x#0", "y#1", "z#2"])
    emb2, ids2 = read_shard(tmp_path / "a.npz")
    assert emb2.dtype == np.float32 and np.array_equal(emb2, emb) and ids2 == ["x#0", "y#1", "z#2"]
    write_shard(tmp_path / "empty.npz", np.zeros((0, 2), np.float32), [])
    emb3, ids3 = read_shard(tmp_path / "empty.npz")
    assert emb3.shape == (0, 2) and ids3 == []


def test_malformed_shard_names_the_file(tmp_path):
    np.savez(tmp_path / "bad.npz", emb=np.zeros((2, 3), np.float32))
    with pytest.raises(FormatError, match=r"bad\.npz: shard file lacks the array\(s\) \['ids'\]"):
        read_shard(tmp_path / "bad.npz")


def test_single_shard_search_matches_brute_force_with_docid_tie_break(corpus):
    _, emb, ids, q_emb, _ = corpus
    got = search_shard(q_emb, emb, ids, depth=10)
    want = brute_force(q_emb, emb, ids, 10)
    for hits, ref in zip(got, want, strict=True):
        assert [h.docid for h in hits] == [d for d, _ in ref]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in ref], rtol=1e-5)


def test_boundary_ties_are_widened_until_every_tied_row_is_seen():
    emb = np.ones((30, 4), dtype=np.float32)  # every passage scores the same
    ids = [f"d{i:02d}" for i in range(29, -1, -1)]  # docids in descending order
    ((scores, rows),) = topk_inner_product(np.ones((1, 4), np.float32), emb, depth=3)
    assert len(rows) == 30 and np.all(scores == 4.0)
    hits = search_shard(np.ones((1, 4), np.float32), emb, ids, depth=3)[0]
    assert [h.docid for h in hits] == ["d00", "d01", "d02"]


@pytest.mark.parametrize("num_shards", [2, 3, 7])
def test_sharded_search_writes_the_same_run_as_unsharded(corpus, num_shards):
    tmp_path, emb, ids, q_emb, qids = corpus
    one = search_shards(q_emb, qids, shard_files(tmp_path, emb, ids, 1), depth=12, show_progress=False)
    many = search_shards(q_emb, qids, shard_files(tmp_path, emb, ids, num_shards), depth=12, show_progress=False)
    write_run(tmp_path / "one.trec", one.run, "t")
    write_run(tmp_path / "many.trec", many.run, "t")
    assert (tmp_path / "one.trec").read_text() == (tmp_path / "many.trec").read_text()
    ref = brute_force(q_emb, emb, ids, 12)
    assert [[h.docid for h in many.run[q]] for q in qids] == [[d for d, _ in r] for r in ref]


def test_depth_larger_than_corpus_returns_everything(corpus):
    tmp_path, emb, ids, q_emb, qids = corpus
    res = search_shards(q_emb, qids, shard_files(tmp_path, emb, ids, 4), depth=500, show_progress=False)
    assert all(len(res.run[q]) == 60 for q in qids)


def test_merge_breaks_score_ties_by_docid():
    a = [Hit("b", 0.9), Hit("d", 0.5)]
    b = [Hit("a", 0.9), Hit("c", 0.5), Hit("e", 0.1)]
    assert [h.docid for h in merge_hits([a, b], depth=4)] == ["a", "b", "c", "d"]
    assert [h.docid for h in merge_hits([b, a], depth=None)] == ["a", "b", "c", "d", "e"]


def test_positive_scores_come_from_whichever_shard_holds_the_passage(corpus):
    tmp_path, emb, ids, q_emb, qids = corpus
    positives = {"q0": [ids[0], ids[59]], "q3": [ids[30]]}
    res = search_shards(
        q_emb, qids, shard_files(tmp_path, emb, ids, 3), depth=5, positives=positives, show_progress=False
    )
    expected = [
        ("q0", ids[0], q_emb[0] @ emb[0]),
        ("q0", ids[59], q_emb[0] @ emb[59]),
        ("q3", ids[30], q_emb[3] @ emb[30]),
    ]
    assert [(q, d) for q, d, _ in res.positive_scores] == [(q, d) for q, d, _ in expected]
    np.testing.assert_allclose([s for *_, s in res.positive_scores], [s for *_, s in expected], rtol=1e-5)
    write_positive_scores(tmp_path / "pos.tsv", res.positive_scores)
    back = read_positive_scores(tmp_path / "pos.tsv")
    assert set(back) == {"q0", "q3"} and back["q3"][ids[30]] == pytest.approx(float(expected[2][2]), abs=1e-6)


def test_positive_missing_from_every_shard_is_an_error(corpus):
    tmp_path, emb, ids, q_emb, qids = corpus
    with pytest.raises(ValueError, match=r"1 labelled positive\(s\) are in none of the 2 shards.*'nope#0'"):
        search_shards(
            q_emb, qids, shard_files(tmp_path, emb, ids, 2), depth=5, positives={"q1": ["nope#0"]}, show_progress=False
        )


def test_encode_and_search_clis_end_to_end(tmp_path, capsys):
    """Tiny random encoder saved to disk -> 1 and 3 encoded shards -> identical runs; positives scored."""
    import torch
    from transformers import BertConfig, BertModel

    from boostmdr import encode, search
    from boostmdr.encoder import Encoder, EncoderSettings
    from boostmdr.demo.tiny_models import train_tokenizer

    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w") as fh:
        for i in range(25):
            fh.write(
                json.dumps({"docid": f"{i}#0", "title": f"t{i % 5}", "text": " ".join(rng.choice(words, 12))}) + "\n"
            )
    (tmp_path / "stats.json").write_text(json.dumps({"lang": "xx", "passages": 25}))
    tok = train_tokenizer([corpus], vocab_size=120, out=tmp_path / "tok", min_frequency=1)
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            pad_token_id=tok.pad_token_id,
        )
    )
    Encoder(model, tok, EncoderSettings(pooling="mean", normalize=True), device="cpu").save(tmp_path / "m")
    topics = tmp_path / "train.topics.tsv"
    topics.write_text("a\tw1 w2 w3\nb\tt3 w7\n")
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"qid": "a", "query": "w1 w2 w3", "positives": ["24#0"], "negatives": []}) + "\n")

    for n in (1, 3):
        shards = []
        for s in range(n):
            out = tmp_path / f"e{n}.{s}.npz"
            encode.main(
                [
                    "--model",
                    str(tmp_path / "m"),
                    "--corpus",
                    str(corpus),
                    "--stats",
                    str(tmp_path / "stats.json"),
                    "--shard",
                    str(s),
                    "--num-shards",
                    str(n),
                    "--batch-size",
                    "4",
                    "--out",
                    str(out),
                    "--threads",
                    "1",
                ]
            )
            shards.append(str(out))
        search.main(
            [
                "--model",
                str(tmp_path / "m"),
                "--topics",
                str(topics),
                "--shards",
                *shards,
                "--depth",
                "10",
                "--tag",
                "tiny",
                "--out",
                str(tmp_path / f"run{n}.trec"),
                "--positives",
                str(train),
                "--positive-scores-out",
                str(tmp_path / f"pos{n}.tsv"),
                "--threads",
                "1",
            ]
        )
    assert read_shard(tmp_path / "e3.2.npz")[1] == ["17#0", "18#0", "19#0", "20#0", "21#0", "22#0", "23#0", "24#0"]
    run1 = (tmp_path / "run1.trec").read_text()
    assert run1 == (tmp_path / "run3.trec").read_text()
    lines = run1.splitlines()
    assert len(lines) == 20 and lines[0].split()[0] == "a" and lines[0].split()[3] == "1" and lines[0].endswith(" tiny")
    assert len(read_run(tmp_path / "run1.trec")["b"]) == 10
    pos = read_positive_scores(tmp_path / "pos3.tsv")
    assert list(pos) == ["a"] and list(pos["a"]) == ["24#0"]
    assert (tmp_path / "pos1.tsv").read_text() == (tmp_path / "pos3.tsv").read_text()
    # --corpus: the same encoding and search in one process, no shard file: the same run and positive scores
    common = ["--model", str(tmp_path / "m"), "--topics", str(topics), "--depth", "10", "--tag", "tiny",
              "--positives", str(train), "--threads", "1"]  # fmt: skip
    search.main([*common, "--corpus", str(corpus), "--stats", str(tmp_path / "stats.json"), "--batch-size", "4",
                 "--out", str(tmp_path / "run0.trec"), "--positive-scores-out", str(tmp_path / "pos0.tsv")])  # fmt: skip
    assert (tmp_path / "run0.trec").read_text() == run1
    assert (tmp_path / "pos0.tsv").read_text() == (tmp_path / "pos1.tsv").read_text()
    with pytest.raises(SystemExit):  # one of --shards and --corpus
        search.main([*common, "--corpus", str(corpus), "--shards", str(tmp_path / "e1.0.npz"), "--out", "x"])
    # several corpora in one process, each with its own topics, stats and run, in order: the runs of one-corpus calls
    (tmp_path / "dev.topics.tsv").write_text("c\tw5 w9\nd\tt1 w2 w3\n")
    one = ["--model", str(tmp_path / "m"), "--depth", "10", "--tag", "tiny", "--threads", "1", "--batch-size", "4"]
    search.main([*one, "--topics", str(tmp_path / "dev.topics.tsv"), "--corpus", str(corpus), "--out", str(tmp_path / "d.trec")])
    stats = str(tmp_path / "stats.json")
    search.main([*one, "--topics", str(topics), str(tmp_path / "dev.topics.tsv"), "--corpus", str(corpus), str(corpus),
                 "--stats", stats, stats, "--out", str(tmp_path / "m1.trec"), str(tmp_path / "m2.trec")])  # fmt: skip
    assert (tmp_path / "m1.trec").read_text() == run1
    assert (tmp_path / "m2.trec").read_text() == (tmp_path / "d.trec").read_text() != run1
    # ... and the positives' scores of each set, into the file at its position
    (tmp_path / "dev.train.jsonl").write_text(json.dumps({"qid": "d", "query": "t1 w2 w3", "positives": ["3#0"], "negatives": []}) + "\n")
    search.main([*one, "--topics", str(topics), str(tmp_path / "dev.topics.tsv"), "--corpus", str(corpus), str(corpus),
                 "--out", str(tmp_path / "m1.trec"), str(tmp_path / "m2.trec"),
                 "--positives", str(train), str(tmp_path / "dev.train.jsonl"),
                 "--positive-scores-out", str(tmp_path / "p1.tsv"), str(tmp_path / "p2.tsv")])  # fmt: skip
    assert (tmp_path / "p1.tsv").read_text() == (tmp_path / "pos1.tsv").read_text()
    assert list(read_positive_scores(tmp_path / "p2.tsv")) == ["d"]
    for bad, message in (
        (["--topics", str(topics), "--corpus", str(corpus), str(corpus), "--out", "a", "b"], "--topics: 1 given for 2 --corpus"),
        (["--topics", str(topics), "--shards", str(tmp_path / "e1.0.npz"), "--out", "a", "b"], "--out: 2 given for --shards"),
        (["--topics", str(topics), str(topics), "--corpus", str(corpus), str(corpus), "--out", "a", "a"], "the same output file is given twice"),
        (["--topics", str(topics), str(topics), "--corpus", str(corpus), str(corpus), "--out", "a", "b",
          "--positives", str(train), "--positive-scores-out", "p"], "--positives: 1 given for 2 --corpus"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            search.main([*one, *bad])
        assert message in capsys.readouterr().err
    # the positive's score is the same model's inner product, wherever it ranks
    enc = Encoder.from_pretrained(tmp_path / "m", device="cpu")
    q = enc.encode_queries(["w1 w2 w3"])[0]
    emb, ids = read_shard(tmp_path / "e1.0.npz")
    assert pos["a"]["24#0"] == pytest.approx(float(q @ emb[ids.index("24#0")]), abs=2e-6)
    # a settings override that disagrees with the saved checkpoint is refused
    with pytest.raises(ValueError, match="pooling: saved 'mean' vs given 'cls'"):
        encode.main(
            [
                "--model",
                str(tmp_path / "m"),
                "--corpus",
                str(corpus),
                "--shard",
                "0",
                "--num-shards",
                "1",
                "--out",
                str(tmp_path / "x.npz"),
                "--pooling",
                "cls",
            ]
        )
