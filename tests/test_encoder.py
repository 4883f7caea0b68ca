"""Encoder: pooling, normalisation, prefixes, settings round trip and errors, order after length sorting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boostmdr.encoder import SETTINGS_FILE, Encoder, EncoderSettings, pool, resolve_settings


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from boostmdr.demo.tiny_models import train_tokenizer

    d = tmp_path_factory.mktemp("data")
    corpus = d / "corpus.jsonl"
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()
    rng = np.random.default_rng(0)
    with open(corpus, "w") as fh:
        for i in range(60):
            text = " ".join(rng.choice(words, size=int(rng.integers(2, 30))))
            fh.write(json.dumps({"docid": f"d{i}", "title": "", "text": text}) + "\n")
    return train_tokenizer([corpus], vocab_size=200, out=d / "tok", min_frequency=1)


def make_encoder(tokenizer, settings: EncoderSettings, seed: int = 0) -> Encoder:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Encoder(BertModel(config).eval(), tokenizer, settings, device="cpu")


# ---------------------------------------------------------------------------------------- pooling


def test_mean_pooling_ignores_padding_positions():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = pool(hidden, mask, "mean")
    assert torch.allclose(out, torch.tensor([[2.0, 3.0], [7.0, 8.0]]))


def test_cls_pooling_takes_position_zero():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    out = pool(hidden, torch.tensor([[1, 0], [1, 1]]), "cls")
    assert torch.equal(out, torch.tensor([[1.0, 2.0], [5.0, 6.0]]))


def test_pool_rejects_unknown_mode():
    with pytest.raises(ValueError, match="valid choices are cls, mean"):
        pool(torch.zeros(1, 2, 2), torch.ones(1, 2), "max")


def test_normalize_gives_unit_vectors_and_off_does_not(tiny_tokenizer):
    texts = ["alpha beta", "gamma delta epsilon zeta", "eta"]
    on = make_encoder(tiny_tokenizer, EncoderSettings(pooling="mean", normalize=True)).encode_passages(texts)
    off = make_encoder(tiny_tokenizer, EncoderSettings(pooling="mean", normalize=False)).encode_passages(texts)
    assert on.dtype == np.float32 and on.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(on, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(np.linalg.norm(off, axis=1), 1.0, rtol=1e-3)
    # same weights (same seed): normalising the unnormalised vectors gives the normalised ones
    np.testing.assert_allclose(off / np.linalg.norm(off, axis=1, keepdims=True), on, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------- prefixes, lengths


def test_prefixes_reach_the_tokenizer(tiny_tokenizer):
    enc = make_encoder(tiny_tokenizer, EncoderSettings(query_prefix="kappa ", passage_prefix="lambda mu "))
    q = enc.tokenize(["alpha"], "query")["input_ids"][0].tolist()
    p = enc.tokenize(["alpha"], "passage")["input_ids"][0].tolist()
    tok = tiny_tokenizer
    assert tok.convert_ids_to_tokens(q) == ["[CLS]", "kappa", "alpha", "[SEP]"]
    assert tok.convert_ids_to_tokens(p) == ["[CLS]", "lambda", "mu", "alpha", "[SEP]"]
    # and the encoded vector of a query equals that of the prefixed text encoded without a prefix
    plain = make_encoder(tiny_tokenizer, EncoderSettings())
    np.testing.assert_allclose(enc.encode_queries(["alpha"]), plain.encode_queries(["kappa alpha"]), atol=1e-6)


def test_max_lengths_truncate_each_side(tiny_tokenizer):
    enc = make_encoder(tiny_tokenizer, EncoderSettings(q_max_len=4, p_max_len=6))
    long_text = " ".join(["alpha"] * 20)
    assert enc.tokenize([long_text], "query")["input_ids"].shape == (1, 4)
    assert enc.tokenize([long_text], "passage")["input_ids"].shape == (1, 6)


def test_max_length_beyond_model_positions_is_rejected(tiny_tokenizer):
    with pytest.raises(ValueError, match="p_max_len=1000 exceeds what the model accepts"):
        make_encoder(tiny_tokenizer, EncoderSettings(p_max_len=1000))


# ------------------------------------------------------------------------------------- encode order


def test_length_sorting_restores_input_order(tiny_tokenizer):
    enc = make_encoder(tiny_tokenizer, EncoderSettings(pooling="mean", normalize=True))
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "theta", "pi"]
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 40, size=23)]
    batched = enc.encode_passages(texts, batch_size=4)
    one_by_one = np.vstack([enc.encode_passages([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # token-budget batches (short texts in bigger batches) give the same rows
    np.testing.assert_allclose(enc.encode(texts, "passage", batch_size=16, max_tokens=40), batched, atol=1e-5)
    # chunked tokenisation (chunks smaller than the input) gives the same rows
    enc.chunk_size = 8
    np.testing.assert_allclose(enc.encode_passages(texts, batch_size=4), batched, atol=1e-6)


def test_token_budget_batches_respect_both_limits():
    from boostmdr.encoder import _batches

    lengths = np.array([30, 20, 10, 10, 5, 5, 5, 5, 5, 2])
    assert _batches(lengths, 4, None) == [(0, 4), (4, 8), (8, 10)]
    # 30 tokens wide: 1 fits in 40; 20 wide: 2; 5 wide: 8, capped at batch_size 4
    assert _batches(lengths, 4, 40) == [(0, 1), (1, 3), (3, 7), (7, 10)]


def test_embed_keeps_gradients_and_matches_encode(tiny_tokenizer):
    enc = make_encoder(tiny_tokenizer, EncoderSettings(pooling="cls", normalize=True))
    texts = ["alpha beta gamma", "delta"]
    reps = enc.embed(enc.tokenize(texts, "passage"))
    assert reps.requires_grad
    reps.sum().backward()
    assert enc.model.embeddings.word_embeddings.weight.grad is not None
    np.testing.assert_allclose(reps.detach().numpy(), enc.encode_passages(texts), atol=1e-5)


def test_encode_empty_input_has_model_dimension(tiny_tokenizer):
    enc = make_encoder(tiny_tokenizer, EncoderSettings())
    assert enc.encode_passages([]).shape == (0, 32)


# ------------------------------------------------------------------------------------------ settings


def test_settings_round_trip(tmp_path):
    s = EncoderSettings(
        pooling="mean", normalize=True, query_prefix="query: ", passage_prefix="passage: ", q_max_len=32, p_max_len=200
    )
    s.save(tmp_path)
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["query_prefix"] == "query: "
    assert EncoderSettings.load(tmp_path) == s


def test_bad_pooling_lists_the_valid_choices():
    with pytest.raises(ValueError, match=r"unknown encoder pooling 'max'; valid choices are cls, mean"):
        EncoderSettings(pooling="max")


@pytest.mark.parametrize("field,value", [("q_max_len", 0), ("p_max_len", "256"), ("normalize", "yes")])
def test_bad_setting_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EncoderSettings(**{field: value})


def test_unknown_settings_key_in_file_is_an_error(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"pooling": "cls", "normalise": True}))
    with pytest.raises(ValueError, match=r"unknown encoder setting\(s\) \['normalise'\]"):
        EncoderSettings.load(tmp_path)


def test_saved_settings_win_and_disagreement_names_the_fields(tmp_path):
    saved = EncoderSettings(pooling="mean", normalize=True, p_max_len=128)
    saved.save(tmp_path)
    assert resolve_settings(tmp_path) == saved
    assert resolve_settings(tmp_path, EncoderSettings(pooling="mean", normalize=True, p_max_len=128)) == saved
    assert resolve_settings(tmp_path, overrides={"pooling": "mean"}) == saved
    with pytest.raises(ValueError, match=r"normalize: saved True vs given False.*pooling: saved 'mean' vs given 'cls'"):
        resolve_settings(tmp_path, EncoderSettings(pooling="cls", normalize=False, p_max_len=128))
    with pytest.raises(ValueError, match=r"p_max_len: saved 128 vs given 256"):
        resolve_settings(tmp_path, overrides={"p_max_len": 256})


def test_model_without_saved_settings_needs_a_pooling(tmp_path):
    with pytest.raises(ValueError, match=r"has no boostmdr_encoder.json.*--pooling"):
        resolve_settings(tmp_path)
    assert resolve_settings(tmp_path, overrides={"pooling": "mean", "normalize": True}) == EncoderSettings(
        pooling="mean", normalize=True
    )


def test_from_pretrained_reads_saved_settings_and_rejects_mismatch(tiny_tokenizer, tmp_path):
    enc = make_encoder(tiny_tokenizer, EncoderSettings(pooling="mean", normalize=True, query_prefix="pi "))
    enc.save(tmp_path / "ckpt")
    loaded = Encoder.from_pretrained(tmp_path / "ckpt", device="cpu")
    assert loaded.settings == enc.settings
    texts = ["alpha beta", "gamma"]
    np.testing.assert_allclose(loaded.encode_queries(texts), enc.encode_queries(texts), atol=1e-6)
    with pytest.raises(ValueError, match="query_prefix: saved 'pi ' vs given ''"):
        Encoder.from_pretrained(tmp_path / "ckpt", EncoderSettings(pooling="mean", normalize=True))
