"""What the checks run on, built locally with no download: backbone shapes with random weights, a
word-level tokenizer, synthetic text of the paper's lengths, training files in the project's formats, and
a tiny Llama.

Shapes. The paper's four fine-tuned backbones come in two shapes: BERT-base (mBERT, mDPR: 12 layers,
hidden 768, 12 heads, feed-forward 3072, vocabulary 119,547) and XLM-R-large (mE5-large, BGE-M3: 24
layers, hidden 1024, 16 heads, feed-forward 4096, vocabulary 250,002; BGE-M3 allows 8,192 positions,
which changes nothing at 256 tokens). Each is built from its ``transformers`` config with random weights
and saved with ``save_pretrained`` in float32 (as the hub checkpoints are), so the project loads it with
``from_pretrained`` exactly as it would load the real model. The encoder settings (pooling,
normalisation, prefixes) are those of mBERT and mE5-large in ``config/miracl.yaml``.

Tokenizer. A ``tokenizers`` word-level model over synthetic words (every word is one token), with the
special tokens of the shape's family in their real positions (``[PAD]`` 0 for BERT; ``<s>`` 0, ``<pad>`` 1,
``</s>`` 2 for XLM-R, whose position ids depend on the padding id). A text of ``k`` words is therefore
exactly ``k + 2`` tokens, so the token lengths the checks count are the lengths the model sees. The
model's embedding table keeps the real vocabulary size even though the tokenizer emits only low ids.

Lengths. Passage lengths are drawn from a log-normal distribution with median
``PASSAGE_MEDIAN_FRACTION * p_max_len`` (128 tokens at the paper's 256) and shape :data:`PASSAGE_SIGMA`,
and cut at ``p_max_len``, which leaves about 12% of passages at the cut (mean about 141 tokens); queries
have 6 to 30 tokens (cut at ``q_max_len``, 64). This is an assumption about MIRACL's Wikipedia passages
under multilingual sub-word tokenisers, not a measurement: set the two constants from lengths measured
on the real corpus for exact numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PASSAGE_MEDIAN_FRACTION = 0.5
PASSAGE_SIGMA = 0.6
QUERY_TOKENS = (6, 30)
SYLLABLES = ("ka", "mi", "to", "ra", "ne", "su", "lo", "pe", "di", "ba", "zu", "fo", "gi", "ha", "we", "yo")
PREFIX_WORDS = ("query:", "passage:")


@dataclass(frozen=True)
class Shape:
    """An encoder backbone's architecture and the encoder settings of the model it stands for."""

    key: str
    stands_for: str
    family: str
    """``bert`` or ``xlm-roberta``."""
    vocab_size: int | None
    """``None``: the tokenizer's size (tiny shapes)."""
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    pooling: str
    normalize: bool
    query_prefix: str = ""
    passage_prefix: str = ""


SHAPES: dict[str, Shape] = {
    "bert-base": Shape("bert-base", "mBERT, mDPR", "bert", 119547, 768, 12, 12, 3072, 512, "cls", False),
    "xlmr-large": Shape(
        "xlmr-large", "mE5-large, BGE-M3", "xlm-roberta", 250002, 1024, 24, 16, 4096, 514, "mean", True, "query: ",
        "passage: ",
    ),
}
"""The real shapes, by the names the checks carry."""

TINY_SHAPES: dict[str, Shape] = {
    "bert-base": Shape("tiny-bert", "BERT-base, tiny", "bert", None, 32, 2, 2, 64, 512, "cls", False),
    "xlmr-large": Shape(
        "tiny-xlmr", "XLM-R-large, tiny", "xlm-roberta", None, 32, 2, 2, 64, 514, "mean", True, "query: ", "passage: "
    ),
}
"""Their stand-ins in the CPU dry run (``--tiny``): same families and settings, 2 layers of width 32."""


def shape(key: str, tiny: bool) -> Shape:
    """The shape a check named after ``key`` runs at."""
    return (TINY_SHAPES if tiny else SHAPES)[key]


_SPECIALS = {
    # family -> (special tokens in id order, pad, unk, cls/bos, sep/eos, mask)
    "bert": (("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    "xlm-roberta": (("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "<pad>", "<unk>", "<s>", "</s>", "<mask>"),
}


# -------------------------------------------------------------------------------------------- text


def word(i: int) -> str:
    """The ``i``-th synthetic word: ``i`` written in base 16 with syllables as digits (4 syllables)."""
    digits = []
    for _ in range(4):
        i, r = divmod(i, len(SYLLABLES))
        digits.append(SYLLABLES[r])
    return "".join(reversed(digits))


def words(n: int) -> list[str]:
    if n > len(SYLLABLES) ** 4:
        raise ValueError(f"at most {len(SYLLABLES) ** 4} synthetic words, asked for {n}")
    return [word(i) for i in range(n)]


def passage_token_lengths(n: int, p_max_len: int, rng: random.Random) -> list[int]:
    """``n`` passage lengths in tokens (special tokens included), before the cut at ``p_max_len``."""
    mu = math.log(PASSAGE_MEDIAN_FRACTION * p_max_len)
    return [max(4, round(rng.lognormvariate(mu, PASSAGE_SIGMA))) for _ in range(n)]


def text_of(n_words: int, vocabulary: Sequence[str], rng: random.Random) -> str:
    return " ".join(rng.choices(vocabulary, k=max(1, n_words)))


def passages(n: int, vocabulary: Sequence[str], p_max_len: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` passages and their uncut token lengths (words + 2 special tokens; a prefix adds its own)."""
    rng = random.Random(seed)
    lengths = passage_token_lengths(n, p_max_len, rng)
    return [text_of(t - 2, vocabulary, rng) for t in lengths], lengths


# --------------------------------------------------------------------------------------- tokenizer


def build_tokenizer(family: str, n_words: int, model_max_length: int = 512) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over :func:`words` (plus the prefix words), with the
    special tokens and single-text template of ``family``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials, pad, unk, cls, sep, mask = _SPECIALS[family]
    vocab = {t: i for i, t in enumerate([*specials, *PREFIX_WORDS, *words(n_words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    names = {"pad_token": pad, "unk_token": unk, "cls_token": cls, "sep_token": sep, "mask_token": mask}
    if family == "xlm-roberta":
        names |= {"bos_token": cls, "eos_token": sep}
        inputs = ["input_ids", "attention_mask"]
    else:
        inputs = ["input_ids", "token_type_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length, model_input_names=inputs, **names
    )


# ----------------------------------------------------------------------------------------- encoder


def build_encoder(shape: Shape, n_words: int, directory: Path, device: str, seed: int = 0) -> Path:
    """Random weights at ``shape``, saved with its tokenizer to ``directory`` (Hugging Face layout).

    The weights are initialised on ``device`` (seconds on a GPU for XLM-R-large's 560M parameters,
    where the CPU takes minutes) and saved in float32.
    """
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    # XLM-R's positions start after the padding id, so its 514 positions hold 512 tokens
    max_length = shape.max_positions - 2 if shape.family == "xlm-roberta" else shape.max_positions
    tokenizer = build_tokenizer(shape.family, n_words, model_max_length=max_length)
    vocab = shape.vocab_size or len(tokenizer)
    if vocab < len(tokenizer):
        raise ValueError(f"{shape.key}: vocabulary {vocab} is smaller than the tokenizer's {len(tokenizer)}")
    common = {
        "vocab_size": vocab,
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": shape.intermediate,
        "max_position_embeddings": shape.max_positions,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if shape.family == "bert":
        config, model_class = BertConfig(**common, type_vocab_size=2), BertModel
    else:
        config = XLMRobertaConfig(
            **common, type_vocab_size=1, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            layer_norm_eps=1e-5,
        )  # fmt: skip
        model_class = XLMRobertaModel
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    return directory


def encoder_flags(shape: Shape, q_max_len: int, p_max_len: int) -> list[str]:
    """The trainer's encoder-settings flags for ``shape`` (the backbone it stands for)."""
    return [
        "--pooling", shape.pooling, "--normalize" if shape.normalize else "--no-normalize",
        "--query-prefix", shape.query_prefix, "--passage-prefix", shape.passage_prefix,
        "--q-max-len", str(q_max_len), "--p-max-len", str(p_max_len),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------- training files


@dataclass(frozen=True)
class TrainingData:
    """A negatives file and a corpus in the project's formats (docs/formats.md), with token lengths."""

    negatives: Path
    corpus: Path
    lang: str
    query_tokens: list[int]
    passage_tokens: list[int]
    """Uncut lengths, special tokens included (add the prefix token where the backbone has one)."""


def write_training_data(
    directory: Path, n_queries: int, n_passages: int, n_words: int, p_max_len: int, negatives_per_query: int,
    seed: int,
) -> TrainingData:
    """Synthetic training queries with one positive and random negatives each.

    A query is a handful of words of its positive passage, so there is something to learn and the loss
    can fall; its negatives are random other passages.
    """
    from boostmdr.formats import Negative, NegativesRecord, write_jsonl, write_negatives

    if n_passages < n_queries + negatives_per_query:
        raise ValueError("the corpus must hold a positive per query and enough negatives")
    vocabulary = words(n_words)
    texts, p_lengths = passages(n_passages, vocabulary, p_max_len, seed)
    rng = random.Random(seed + 1)
    lang = "xx"
    write_jsonl(directory / "corpus.jsonl", ({"docid": f"d{i}", "title": "", "text": t} for i, t in enumerate(texts)))
    records, q_lengths = [], []
    for q in range(n_queries):
        positive = texts[q].split()
        n = min(len(positive), rng.randint(*QUERY_TOKENS) - 2)
        query = " ".join(rng.sample(positive, n))
        q_lengths.append(n + 2)
        others = rng.sample(range(n_queries, n_passages), negatives_per_query)
        records.append(
            NegativesRecord(
                qid=f"q{q}", query=query, lang=lang, positives=[f"d{q}"],
                negatives=[Negative(f"d{i}", None, r + 1, "gpu-check:random") for r, i in enumerate(others)],
            )
        )  # fmt: skip
    write_negatives(directory / "negatives.jsonl", records)
    return TrainingData(directory / "negatives.jsonl", directory / "corpus.jsonl", lang, q_lengths, p_lengths)


# ------------------------------------------------------------------------------------------ tiny LM


def build_tiny_lm(directory: Path, template_text: str, hidden: int, layers: int, heads: int, vocab: int,
                  seed: int = 0) -> Path:  # fmt: skip
    """A Llama with random weights and a byte-level BPE tokenizer, built by :mod:`boostmdr.demo.tiny_lm` (the
    project's own tiny-LM code), trained on synthetic words and the judge template."""
    from boostmdr.judge import format_scores
    from boostmdr.demo.tiny_lm import TinyLMSettings, build_model, save, train_tokenizer

    rng = random.Random(seed)
    vocabulary = words(3000)
    corpus = [text_of(rng.randint(20, 80), vocabulary, rng) for _ in range(2000)]
    extra = [template_text] + [format_scores(a, c) for a in (0, 1, 2) for c in (0, 1, 2)]
    tokenizer = train_tokenizer(corpus, vocab, extra)
    settings = TinyLMSettings(
        vocab_size=vocab, hidden=hidden, layers=layers, heads=heads, intermediate=3 * hidden,
        max_positions=4096, seed=seed,
    )  # fmt: skip
    model, _ = build_model(tokenizer, settings)
    save(model, tokenizer, directory, {"model": asdict(settings), "purpose": "benchmarks.gpu"})
    return directory
