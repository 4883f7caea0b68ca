"""Tiny, self-made training fixtures for the trainer tests: a WordPiece tokenizer, a 2-layer BERT and a
two-language toy dataset in the project's file formats (negatives files + prepared corpora)."""

from __future__ import annotations

import random
from pathlib import Path

from boostmdr.formats import Negative, NegativesRecord, write_jsonl, write_negatives

SYLLABLES = ["ka", "mi", "to", "ra", "ne", "su", "lo", "pe", "di", "ba", "zu", "fo", "gi", "ha", "we", "yo"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(_word(rng) for _ in range(n))


def make_tiny_model(directory: Path, dropout: float = 0.0, seed: int = 0) -> Path:
    """A WordPiece tokenizer trained on toy text and a randomly initialised 2-layer BERT (hidden 32)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    rng = random.Random(seed)
    lines = [_sentence(rng, 12) for _ in range(200)]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def make_toy_data(directory: Path, queries_per_lang: int = 12, passage_words: int = 30, seed: int = 0) -> dict:
    """Two languages (sw, te), one negatives file each, corpora with the same docid scheme in both.

    Query 0 of each language has no negatives (skipped), query 1 has only two (completed with replacement).
    Returns ``{"negatives": [paths], "corpus": ["sw=path", "te=path"]}``.
    """
    rng = random.Random(seed)
    out: dict = {"negatives": [], "corpus": []}
    for lang in ("sw", "te"):
        docs = [{"docid": f"{i}#0", "title": _word(rng), "text": _sentence(rng, passage_words)} for i in range(40)]
        write_jsonl(directory / lang / "corpus.jsonl", docs)
        records = []
        for q in range(queries_per_lang):
            pos = rng.sample(range(40), 2 if q % 3 == 0 else 1)
            others = [i for i in range(40) if i not in pos]
            n_neg = 0 if q == 0 else 2 if q == 1 else 10
            negs = rng.sample(others, n_neg)
            records.append(
                NegativesRecord(
                    qid=str(q), query=_sentence(rng, 6), lang=lang, positives=[f"{i}#0" for i in pos],
                    negatives=[Negative(f"{i}#0", 0.5, r + 1, "miner:toy") for r, i in enumerate(negs)],
                )
            )
        write_negatives(directory / f"{lang}.negatives.jsonl", records)
        out["negatives"].append(str(directory / f"{lang}.negatives.jsonl"))
        out["corpus"].append(f"{lang}={directory / lang / 'corpus.jsonl'}")
    return out


def make_toy_manifest(directory: Path, data: dict, batch_size: int, group_size: int, epochs: int, seed: int,
                      *flags: str) -> Path:
    """Topic files for the toy data (topic = "ABC"[qid % 3]) and a batch manifest built from them by the batching
    CLI (same-language, topic-balanced, proportion weights unless ``flags`` say otherwise)."""
    from boostmdr import batching
    from boostmdr.formats import TopicRecord, read_negatives, write_topic_labels

    topics = []
    for path in data["negatives"]:
        records = read_negatives(path)
        out = directory / f"{records[0].lang}.topics.jsonl"
        write_topic_labels(out, [TopicRecord(r.qid, r.lang, "ABC"[int(r.qid) % 3], None, "fallback") for r in records])
        topics.append(str(out))
    manifest = directory / "batches.jsonl.gz"
    batching.main(["--negatives", *data["negatives"], "--topics", *topics, "--batch-size", str(batch_size),
                   "--group-size", str(group_size), "--epochs", str(epochs), "--seed", str(seed), *flags,
                   "--out", str(manifest), "--stats", str(directory / "batches.stats.json")])  # fmt: skip
    return manifest
