"""Tiny local models: tokenizer over several scripts, warmed-up encoder that reloads everywhere."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from boostmdr.demo import tiny_models

ALPHABETS = {
    "xx": [chr(c) for c in range(0x61, 0x61 + 26)],
    "ru": [chr(c) for c in range(0x430, 0x430 + 32)],
    # Telugu consonants plus vowel signs and the virama (combining marks)
    "te": [chr(c) for c in range(0xC15, 0xC15 + 20)] + ["\u0c3e", "\u0c3f", "\u0c47", "\u0c4d"],
}


def write_corpus(path, script, n=80, seed=0):
    """Topic-structured pseudo-word passages in one script (like the synthetic benchmark)."""
    rng = random.Random(seed)
    alphabet = ALPHABETS[script]

    def word():
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 5)))

    topics = [[word() for _ in range(15)] for _ in range(6)]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            t = topics[rng.randrange(6)]
            text = " ".join(rng.choice(t) for _ in range(rng.randint(8, 24)))
            fh.write(json.dumps({"docid": f"{i}#0", "title": "", "text": text}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    corpora = [str(write_corpus(d / f"{s}.jsonl", s, seed=i)) for i, s in enumerate(ALPHABETS)]
    tiny_models.main(
        [
            "tokenizer",
            "--corpus",
            *corpora,
            "--vocab-size",
            "400",
            "--min-frequency",
            "1",
            "--out",
            str(d / "tok"),
            "--log",
            str(d / "tok.log"),
            "--threads",
            "1",
        ]
    )
    tiny_models.main(
        [
            "encoder",
            "--tokenizer",
            str(d / "tok"),
            "--corpus",
            *corpora,
            "--hidden",
            "32",
            "--layers",
            "1",
            "--heads",
            "2",
            "--intermediate",
            "64",
            "--seed",
            "3",
            "--warmup-steps",
            "60",
            "--batch-size",
            "16",
            "--lr",
            "2e-3",
            "--pooling",
            "mean",
            "--normalize",
            "--query-prefix",
            "q: ",
            "--p-max-len",
            "64",
            "--q-max-len",
            "16",
            "--max-position",
            "128",
            "--out",
            str(d / "enc"),
            "--log",
            str(d / "enc.log"),
            "--threads",
            "1",
        ]
    )
    return d, corpora


def test_tokenizer_loads_with_autotokenizer_and_keeps_combining_marks(built):
    from transformers import AutoTokenizer

    d, _ = built
    tok = AutoTokenizer.from_pretrained(d / "tok")
    assert tok.convert_ids_to_tokens(tok("x")["input_ids"])[::2] == ["[CLS]", "[SEP]"]
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == 0 and tok.model_max_length == 512
    telugu = "\u0c15\u0c4d\u0c1a\u0c47"  # consonant, virama, consonant, vowel sign: accent stripping breaks it
    pieces = tok.convert_ids_to_tokens(tok(telugu, add_special_tokens=False)["input_ids"])
    assert "".join(p.removeprefix("##") for p in pieces) == telugu
    assert tok.decode(tok("ПРИВЕТ мир")["input_ids"], skip_special_tokens=True).replace(" ", "") == "приветмир"
    assert len(tok) == 400


def test_warm_up_lowers_its_own_loss(built):
    d, _ = built
    record = json.loads((d / "enc" / "warmup.json").read_text())
    assert len(record["loss"]) == 60 and record["seed"] == 3
    assert record["loss_first"] == pytest.approx(np.mean(record["loss"][:10]), abs=1e-4)
    # in-batch InfoNCE over 16 passages starts near ln(16) = 2.77 and must clearly fall
    assert record["loss"][0] > 2.0
    assert record["loss_last"] < 0.6 * record["loss_first"]


def test_tiny_encoder_reloads_with_automodel_and_sentence_transformers(built):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from boostmdr.encoder import Encoder, EncoderSettings

    d, corpora = built
    model = AutoModel.from_pretrained(d / "enc")
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.max_position_embeddings) == (
        32,
        1,
        128,
    )
    # built without dropout by default (boostmdr.demo.tiny_models.DROPOUT), and fine-tuning reads it from the config
    assert (model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob) == (0.0, 0.0)
    assert json.loads((d / "enc" / "warmup.json").read_text())["dropout"] == 0.0
    assert (d / "enc" / "model.safetensors").is_file()
    enc = Encoder.from_pretrained(d / "enc", device="cpu")
    assert enc.settings == EncoderSettings(
        pooling="mean", normalize=True, query_prefix="q: ", q_max_len=16, p_max_len=64
    )
    with open(corpora[2], encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh][:6]
    queries = [" ".join(t.split()[:3]) for t in texts]  # shorter than q_max_len (ST has one max length)
    ours_p, ours_q = enc.encode_passages(texts), enc.encode_queries(queries)
    # AutoModel weights are the ones the Encoder uses
    batch = enc.tokenize(texts[:1], "passage")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    ref = torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1).numpy()
    np.testing.assert_allclose(ref, ours_p[:1], atol=1e-5)
    # sentence-transformers reads the same pooling, normalisation and prompts
    st = SentenceTransformer(str(d / "enc"), device="cpu")
    np.testing.assert_allclose(st.encode_document(texts), ours_p, atol=1e-5)
    np.testing.assert_allclose(st.encode_query(queries), ours_q, atol=1e-5)
    assert not np.allclose(st.encode_document(queries), ours_q, atol=1e-3)  # the query prompt matters


def test_warm_up_improves_retrieving_a_passage_from_its_crop(built):
    """A query-like crop of a passage ranks that passage first more often after the warm-up than at init."""
    from boostmdr.encoder import Encoder

    d, corpora = built
    untrained = d / "enc0"
    enc = Encoder.from_pretrained(d / "enc", device="cpu")
    tiny_models.build_encoder(
        d / "tok",
        corpora,
        untrained,
        hidden=32,
        layers=1,
        heads=2,
        intermediate=64,
        seed=3,
        warmup_steps=0,
        batch_size=16,
        lr=2e-3,
        settings=enc.settings,
        max_position=128,
    )
    assert json.loads((untrained / "warmup.json").read_text())["loss"] == []
    with open(corpora[0], encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    queries = [" ".join(t.split()[:6]) for t in texts]

    def top1(model) -> float:
        scores = model.encode_queries(queries) @ model.encode_passages(texts).T
        return float(np.mean(scores.argmax(axis=1) == np.arange(len(texts))))

    before, after = top1(Encoder.from_pretrained(untrained, device="cpu")), top1(enc)
    assert after > before + 0.1, (before, after)


def test_dropout_reaches_the_saved_config_and_bad_values_are_rejected(tmp_path):
    from transformers import AutoConfig

    corpus = write_corpus(tmp_path / "c.jsonl", "xx", n=10)
    tiny_models.train_tokenizer([corpus], 100, tmp_path / "tok", min_frequency=1)
    shape = dict(hidden=8, layers=1, heads=2, intermediate=8, seed=0, warmup_steps=0, batch_size=4, lr=1e-3)
    tiny_models.build_encoder(tmp_path / "tok", [corpus], tmp_path / "enc", dropout=0.1, **shape)
    config = AutoConfig.from_pretrained(tmp_path / "enc")
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.1, 0.1)
    with pytest.raises(ValueError, match=r"--dropout must be in \[0, 1\), got 1.0"):
        tiny_models.build_encoder(tmp_path / "tok", [corpus], tmp_path / "bad", dropout=1.0, **shape)
    assert not (tmp_path / "bad").exists()


def test_bad_shape_is_rejected_before_training(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", "xx", n=10)
    tiny_models.train_tokenizer([corpus], 100, tmp_path / "tok", min_frequency=1)
    with pytest.raises(ValueError, match="--hidden 30 must be divisible by --heads 4"):
        tiny_models.build_encoder(
            tmp_path / "tok",
            [corpus],
            tmp_path / "enc",
            hidden=30,
            layers=1,
            heads=4,
            intermediate=8,
            seed=0,
            warmup_steps=1,
            batch_size=4,
            lr=1e-3,
        )
    assert not (tmp_path / "enc").exists()


def test_random_crop_stays_inside_the_passage():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    for _ in range(200):
        q, p = tiny_models.crop_pair(" ".join(words), rng)
        qw, pw = q.split(), p.split()
        assert 3 <= len(qw) <= 10 and 15 <= len(pw) <= 30
        i, j = words.index(qw[0]), words.index(pw[0])
        assert words[i : i + len(qw)] == qw and words[j : j + len(pw)] == pw


def test_tokenizer_vocabulary_is_identical_across_runs(tmp_path):
    """tokenizers' WordPieceTrainer breaks ties in hash order (huggingface/tokenizers#1794); ours must not."""
    import json as _json

    from boostmdr.demo.tiny_models import train_tokenizer

    corpus = tmp_path / "corpus.jsonl"
    words = ["zuyu", "musoso", "nafame", "nijachi", "mbingovike", "zuyi", "togashe", "chundimone"]
    corpus.write_text(
        "".join(_json.dumps({"docid": f"{i}#0", "title": "", "text": " ".join(words[j % 8] for j in range(i, i + 9))}) + "\n"
                for i in range(60)),
        encoding="utf-8",
    )
    a = train_tokenizer([corpus], 80, tmp_path / "a")
    b = train_tokenizer([corpus], 80, tmp_path / "b")
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (tmp_path / "b/tokenizer.json").read_bytes()
    assert a.get_vocab() == b.get_vocab() and len(a.get_vocab()) == 80
