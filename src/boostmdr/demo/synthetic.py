"""A synthetic multilingual retrieval benchmark in the raw MIRACL layout (docs/formats.md).

One call writes one language: train and dev topics, qrels with judged relevant (rel 1) and judged
non-relevant (rel 0) passages, a sharded gzipped corpus, and two analysis files under
``{raw_dir}/synthetic-truth/`` that the method never reads. Output is a pure function of the
arguments: the same arguments give the same bytes (for the gzipped shards: the same compressed
stream; their header carries whatever time stamp and name ``formats.atomic_write`` gives it). The
corpus content does not depend on the number of shards, only where it is cut. One million passages
take 15 to 40 s on two shared cores (``benchmarks/bench_synthetic.py``).

The world it simulates
----------------------
* **Script and words.** Every MIRACL language code gets its own script (Arabic, Bengali, Latin with
  language-specific letters, Devanagari, Hangul, Cyrillic, Telugu, Thai, kana and CJK ideographs) and
  its own pseudo-words, built from syllables of that script with a generator seeded by (seed, lang).
  Words are separated by single spaces in every language, Thai, Japanese and Chinese included, so a
  whitespace tokenizer works everywhere.
* **Topics.** Every article has one of the paper's 12 MIRACL topics (Table 11), drawn with the
  language's topic distribution of Table 13, and a (fine, coarse) label pair consistent with it: a
  DBpedia-like class (14) and a Yahoo-Answers-like class (10), see :data:`TOPIC_LABELS`. Different
  topics never share a pair, so the two labels determine the topic. Each topic, fine class and coarse
  class has its own cue words, so classifiers trained on ``doc-topics.tsv`` can learn them.
* **Articles and passages.** An article has 1 + Poisson(3.5) passages (docid ``article#passage``), a
  title made of its *main name* (a word used by no other article) and a secondary name. A passage is a
  Zipfian mix of common words, its topic's background words, cue words of its labels and its
  article's names; it always mentions the article's main name once and carries three *fact words*,
  the key content a query asks for. Fact words of a topic come in synonym pairs that share a stem and
  differ in a suffix syllable; they occur only as facts, so which passages answer a query is known
  exactly: its positive and the copies below.
* **Queries.** A query is made from one positive passage: a question word, the article's main name
  (sometimes with the secondary name; with probability 0.3 the two secondary names instead), two of
  the passage's three facts (each replaced by its synonym with probability 0.4), in shuffled order,
  sometimes with a noise word; a name or fact may carry an extra inflection syllable (probability
  0.2). Exact-match retrieval (BM25) finds the article by its name but misses synonyms, inflections
  and aliases; a model that sees sub-words can learn them (BM25 nDCG@10 is about 0.7 on 10k passages).
* **Relevant copies.** Besides the positive, some passages of *other* articles of the same topic are
  paraphrases of it: they mention the positive article's main name and the same facts (each swapped
  to its synonym with probability 0.5). A query has 0, 1 or 2 such copies labelled rel 1 (probabilities
  :data:`EXTRA_POSITIVE_PROBS`), like MIRACL's several positives per query.
* **Judged non-relevant.** Each query has ``judged_negatives`` rel-0 judgements: up to half other
  passages of the positive's article (same names, other facts: the hard negatives annotators see),
  the rest passages of the same topic, never a relevant one.
* **Planted false negatives (train only).** ``false_negative_rate`` R in [0, 1]: exactly
  ``round(R * L)`` of the L train queries that have a labelled positive are chosen at random, and each
  gets between 1 and ``max_planted`` (uniformly) extra relevant copies that are NOT in the qrels. R = 0
  plants none; R = 1 plants for every labelled train query. The default config calibrates R and
  ``max_planted`` per language from the paper's Table 8 (the share of fused candidates its judge removed), and
  the workflow reports the share that reaches the judged candidates (``judge_quality.md``). The expected
  positives, labelled copies and planted passages must fit in two thirds of the corpus.
  ``{lang}.train.complete-qrels.tsv`` holds every labelled train judgement (rel 0 and 1) plus one rel-1
  row per planted passage, so the planted passages are exactly the rel-1 rows of the truth file that the
  qrels lack.
* **Unanswerable train queries.** ``no_positive_rate``: exactly ``round(rate * train_queries)`` train
  queries ask for facts no passage has; they have rel-0 judgements only (the loader drops them).

Dev queries get labelled copies but no planted false negatives and always have a positive.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from boostmdr.formats import atomic_write, shard_bounds
from boostmdr.utils import setup_logging

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------- topics

TOPICS: tuple[str, ...] = ("BL", "SM", "LH", "JE", "CI", "SP", "BF", "PG", "TT", "AE", "GE", "OT")
"""The paper's 12 MIRACL topics (Table 11), in the paper's column order."""

TOPIC_NAMES: dict[str, str] = {
    "BL": "Books & Literature",
    "SM": "Science & Mathematics",
    "LH": "Life & Health",
    "JE": "Jobs & Education",
    "CI": "Computers & Internet",
    "SP": "Sports",
    "BF": "Business & Finance",
    "PG": "Politics & Government",
    "TT": "Traffic & Transportation",
    "AE": "Arts & Entertainment",
    "GE": "Geography",
    "OT": "Others",
}

FINE_LABELS: tuple[str, ...] = (
    "Company",
    "Educational Institution",
    "Artist",
    "Athlete",
    "Office Holder",
    "Mean Of Transportation",
    "Building",
    "Natural Place",
    "Village",
    "Animal",
    "Plant",
    "Album",
    "Film",
    "Written Work",
)
"""The 14 DBpedia Ontology classes (Table 11)."""

COARSE_LABELS: tuple[str, ...] = (
    "Society & Culture",
    "Science & Mathematics",
    "Health",
    "Education & Reference",
    "Computers & Internet",
    "Sports",
    "Business & Finance",
    "Entertainment & Music",
    "Family & Relationships",
    "Politics & Government",
)
"""The 10 Yahoo Answers classes (Table 11)."""

TOPIC_LABELS: dict[str, tuple[tuple[str, str], ...]] = {
    "BL": (("Written Work", "Society & Culture"), ("Written Work", "Education & Reference")),
    "SM": (
        ("Animal", "Science & Mathematics"),
        ("Plant", "Science & Mathematics"),
        ("Natural Place", "Science & Mathematics"),
    ),
    "LH": (("Animal", "Health"), ("Plant", "Health"), ("Company", "Health")),
    "JE": (("Educational Institution", "Education & Reference"), ("Educational Institution", "Society & Culture")),
    "CI": (("Company", "Computers & Internet"), ("Written Work", "Computers & Internet")),
    "SP": (("Athlete", "Sports"), ("Building", "Sports")),
    "BF": (("Company", "Business & Finance"), ("Office Holder", "Business & Finance")),
    "PG": (("Office Holder", "Politics & Government"), ("Building", "Politics & Government")),
    "TT": (("Mean Of Transportation", "Business & Finance"), ("Mean Of Transportation", "Science & Mathematics")),
    "AE": (
        ("Album", "Entertainment & Music"),
        ("Film", "Entertainment & Music"),
        ("Artist", "Entertainment & Music"),
    ),
    "GE": (
        ("Village", "Society & Culture"),
        ("Natural Place", "Education & Reference"),
        ("Building", "Society & Culture"),
    ),
    "OT": (
        ("Artist", "Family & Relationships"),
        ("Office Holder", "Family & Relationships"),
        ("Company", "Society & Culture"),
    ),
}
"""(fine, coarse) label pairs an article of each topic may carry; no pair belongs to two topics."""

# Table 13 of the paper: topic counts of the MIRACL training set per language, in TOPICS order.
TOPIC_COUNTS: dict[str, tuple[int, ...]] = {
    "ar": (139, 315, 358, 49, 62, 111, 61, 158, 98, 273, 1519, 352),
    "bn": (94, 109, 82, 46, 67, 84, 23, 75, 22, 126, 795, 108),
    "en": (88, 229, 261, 55, 88, 180, 62, 108, 80, 524, 929, 259),
    "es": (72, 168, 141, 36, 73, 85, 61, 74, 63, 341, 781, 267),
    "fa": (101, 204, 180, 55, 99, 87, 65, 59, 65, 304, 688, 200),
    "fi": (111, 217, 176, 35, 80, 195, 77, 90, 132, 443, 1011, 330),
    "fr": (27, 103, 58, 27, 31, 75, 15, 42, 35, 174, 462, 94),
    "hi": (31, 155, 91, 14, 29, 55, 45, 52, 30, 93, 457, 117),
    "id": (122, 378, 160, 59, 223, 89, 153, 152, 113, 502, 1822, 293),
    "ja": (146, 184, 150, 74, 96, 286, 107, 127, 145, 626, 1243, 292),
    "ko": (12, 112, 39, 6, 26, 16, 21, 50, 20, 59, 437, 70),
    "ru": (270, 242, 192, 77, 66, 183, 90, 188, 217, 728, 1862, 568),
    "sw": (12, 164, 215, 32, 25, 113, 21, 119, 59, 221, 789, 131),
    "te": (90, 177, 130, 208, 28, 63, 40, 77, 100, 378, 1935, 226),
    "th": (111, 192, 180, 159, 91, 113, 50, 114, 61, 521, 1151, 229),
    "zh": (50, 130, 44, 50, 45, 60, 43, 62, 40, 183, 534, 71),
}

# ----------------------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class Script:
    """How a language writes: its syllables and the Unicode ranges its letters come from."""

    name: str
    onsets: tuple[str, ...]
    nuclei: tuple[str, ...]
    codas: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]

    def syllables(self) -> tuple[list[str], np.ndarray]:
        """All distinct syllables and their sampling weights (open syllables and full onsets favoured)."""
        weight: dict[str, float] = {}
        n_codas = max(1, len(self.codas) - 1)
        for o in self.onsets:
            for n in self.nuclei:
                for c in self.codas:
                    s = o + n + c
                    if not s:
                        continue
                    w = (0.15 if o == "" else 1.0) * (0.65 if c == "" else 0.35 / n_codas)
                    weight[s] = weight.get(s, 0.0) + w
        syl = list(weight)
        p = np.array([weight[s] for s in syl])
        return syl, p / p.sum()

    def allows(self, ch: str) -> bool:
        cp = ord(ch)
        return any(lo <= cp <= hi for lo, hi in self.ranges)


def _split(s: str) -> tuple[str, ...]:
    return tuple(s.split())


_LATIN = ((0x61, 0x7A), (0xE0, 0xFF))  # a-z and the Latin-1 lower-case letters with diacritics
_ARABIC = ((0x0600, 0x06FF),)
_HANGUL = ((0xAC00, 0xD7A3),)
_CJK = ((0x4E00, 0x9FFF),)
_KANA = ((0x3040, 0x309F), (0x30A0, 0x30FF))


def _hangul() -> tuple[str, ...]:
    # Precomposed syllable = 0xAC00 + (initial * 21 + medial) * 28 + final; finals: none, n, l, m, ng.
    return tuple(chr(0xAC00 + (i * 21 + m) * 28 + f) for i in range(19) for m in range(21) for f in (0, 4, 8, 16, 21))


_HIRAGANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわん"
_JA_CHARS = (
    tuple(_HIRAGANA)
    + tuple(chr(ord(c) + 0x60) for c in _HIRAGANA)  # the katakana of the same sounds
    + tuple(chr(0x4E00 + 37 * i) for i in range(400))
)
_ZH_CHARS = tuple(chr(0x4E00 + 13 * i) for i in range(1500))

_INDIC_NUCLEI_HI = ("", "ा", "ि", "ी", "ु", "ू", "े", "ै", "ो", "ौ")
_INDIC_NUCLEI_BN = ("", "া", "ি", "ী", "ু", "ূ", "ে", "ো")
_INDIC_NUCLEI_TE = ("", "ా", "ి", "ీ", "ు", "ూ", "ె", "ే", "ొ", "ో")

SCRIPTS: dict[str, Script] = {
    "ar": Script(
        "Arabic", _split("ب ت ث ج ح خ د ذ ر ز س ش ص ض ط ظ ع غ ف ق ك ل م ن ه و ي"), ("", "ا", "و", "ي"),
        ("", "ن", "ر", "ل", "م", "ب"), _ARABIC,
    ),
    "bn": Script(
        "Bengali", _split("ক খ গ ঘ চ ছ জ ঝ ট ঠ ড ঢ ত থ দ ধ ন প ফ ব ভ ম য র ল শ ষ স হ"), _INDIC_NUCLEI_BN,
        ("", "ং", "ন", "র"), ((0x0980, 0x09FF),),
    ),
    "en": Script(
        "Latin", ("",) + _split("b c d f g h j k l m n p r s t v w y z th sh ch st br tr pl gr"),
        _split("a e i o u ea ou ai oo"), ("",) + _split("n r s t l nd st ck"), _LATIN,
    ),
    "es": Script(
        "Latin", ("",) + _split("b c d f g j l ll m n ñ p r rr s t v z ch br tr pl gr"),
        _split("a e i o u á é í ó ú ia ue"), ("",) + _split("n s l r z"), _LATIN,
    ),
    "fa": Script(
        "Arabic (Persian letters)", _split("ب پ ت ج چ خ د ر ز ژ س ش ف ق ک گ ل م ن ه و ی"), ("", "ا", "و", "ی"),
        ("", "ن", "ر", "م", "د", "ت", "ش"), _ARABIC,
    ),
    "fi": Script(
        "Latin", ("",) + _split("h j k l m n p r s t v"), _split("a e i o u y ä ö aa ee ii uu ää ie uo"),
        ("",) + _split("n s t l k"), _LATIN,
    ),
    "fr": Script(
        "Latin", ("",) + _split("b c d f g j l m n p r s t v ch qu gr tr pl br"),
        _split("a e i o u é è ê ou oi au eu"), ("",) + _split("n r s t l x"), _LATIN,
    ),
    "hi": Script(
        "Devanagari", _split("क ख ग घ च छ ज झ ट ठ ड ढ त थ द ध न प फ ब भ म य र ल व श ष स ह"), _INDIC_NUCLEI_HI,
        ("", "ं", "न", "र"), ((0x0900, 0x097F),),
    ),
    "id": Script(
        "Latin", ("",) + _split("b c d g h j k l m n p r s t w y ng ny"), _split("a e i o u ai au"),
        ("",) + _split("n ng r s t k h"), _LATIN,
    ),
    "ja": Script("Kana and CJK ideographs", _JA_CHARS, ("",), ("",), _KANA + _CJK),
    "ko": Script("Hangul", _hangul(), ("",), ("",), _HANGUL),
    "ru": Script(
        "Cyrillic", ("",) + _split("б в г д ж з к л м н п р с т ф х ц ч ш щ бр пр ст тр"),
        _split("а е и о у ы э ю я"), ("",) + _split("й н р с т л в к"), ((0x0400, 0x04FF),),
    ),
    "sw": Script(
        "Latin", ("",) + _split("b ch d f g h j k l m n p s t v w y z mb nd ng ny sh"), _split("a e i o u"),
        ("",), _LATIN,
    ),
    "te": Script(
        "Telugu", _split("క ఖ గ ఘ చ ఛ జ ఝ ట ఠ డ ఢ ణ త థ ద ధ న ప ఫ బ భ మ య ర ల వ శ ష స హ"), _INDIC_NUCLEI_TE,
        ("", "ం"), ((0x0C00, 0x0C7F),),
    ),
    "th": Script(
        "Thai", _split("ก ข ค ง จ ฉ ช ซ ด ต ถ ท ธ น บ ป ผ พ ฟ ภ ม ย ร ล ว ส ห อ ฮ"),
        ("", "า", "ิ", "ี", "ุ", "ู", "ึ", "ื"), ("", "น", "ง", "ม", "ก", "ย"), ((0x0E00, 0x0E7F),),
    ),
    "zh": Script("CJK ideographs", _ZH_CHARS, ("",), ("",), _CJK),
}

LANGS: tuple[str, ...] = tuple(sorted(SCRIPTS))
"""The 16 MIRACL language codes the paper uses."""


def get_script(lang: str) -> Script:
    """The script of a MIRACL language code; anything else is an error listing the supported codes."""
    try:
        return SCRIPTS[lang]
    except KeyError:
        raise ValueError(f"unsupported language code {lang!r}; supported: {', '.join(LANGS)}") from None


# ------------------------------------------------------------------------------------ generator knobs

N_COMMON = 1200  # common words, Zipf-distributed
N_QUESTION = 8  # question words that open queries
N_BACKGROUND = 150  # background words per topic
N_FACT = 600  # fact words per topic (300 synonym pairs); used only as facts
N_CUE = 30  # cue words per fine class and per coarse class
N_SUFFIX = 6  # inflection syllables of a language
FACTS_PER_PASSAGE = 3
MEAN_EXTRA_PASSAGES = 3.5  # an article has 1 + Poisson(this) passages
PASSAGE_WORDS = (40.0, 10.0, 16, 80)  # mean, sd, min, max of the words of a passage text
# Word categories of the free slots of a passage: common, topic background, fine cue, coarse cue, own names.
SLOT_PROBS = (0.60, 0.22, 0.06, 0.05, 0.07)
EXTRA_POSITIVE_PROBS = (0.55, 0.30, 0.15)  # 0, 1, 2 labelled copies besides the positive
QUERY_SYNONYM_PROB = 0.4  # a query fact is replaced by its synonym
QUERY_INFLECT_PROB = 0.2  # a query name or fact gets an inflection syllable appended
COPY_SYNONYM_PROB = 0.5  # a fact of a relevant copy is replaced by its synonym
QUERY_ALIAS_PROB = 0.3  # the query names the article by its two secondary names instead of its main name
QUERY_SECONDARY_PROB = 0.3  # otherwise, the query also gives the first secondary name
QUERY_NOISE_PROB = 0.3  # the query has one extra common word
CHUNK = 8192  # passages generated together (fixed: output does not depend on it or on the shard count)

# Stages of the seed sequence, so each part of the generation has an independent stream.
_VOCAB, _PLAN, _QUERIES, _TEXT = range(4)


def _rng(seed: int, lang: str, stage: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, LANGS.index(lang), stage, *extra]))


# --------------------------------------------------------------------------------------- vocabulary


@dataclass
class Vocabulary:
    """All words of a language, in blocks; ``words[i]`` is word id ``i``."""

    words: list[str]
    suffixes: list[str]  # inflection syllables: fact synonyms differ in one, queries may add one
    common: int  # offsets of the blocks
    question: int
    background: int
    fact: int
    fine: int
    coarse: int
    secondary: int
    n_secondary: int
    main: int
    common_cdf: np.ndarray
    background_cdf: np.ndarray

    def synonym(self, word_id: np.ndarray | int) -> np.ndarray | int:
        """The synonym of a fact word: the other member of its pair."""
        return ((np.asarray(word_id) - self.fact) ^ 1) + self.fact


def _zipf_cdf(n: int, s: float = 1.0, shift: float = 2.7) -> np.ndarray:
    w = 1.0 / (np.arange(n) + shift) ** s
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return cdf


def _draw_words(
    rng: np.random.Generator,
    syllables: list[str],
    p: np.ndarray,
    n: int,
    lengths: tuple[float, ...],
    taken: set[str],
    what: str,
) -> list[str]:
    """``n`` new distinct words of 1..len(lengths) syllables (length k with probability lengths[k-1])."""
    out: list[str] = []
    for _ in range(200):
        need = n - len(out)
        if need == 0:
            return out
        m = int(need * 1.25) + 16
        k = rng.choice(len(lengths), size=m, p=np.asarray(lengths) / sum(lengths)) + 1
        idx = rng.choice(len(syllables), size=(m, len(lengths)), p=p)
        for row, kk in zip(idx.tolist(), k.tolist()):
            w = "".join([syllables[j] for j in row[:kk]])
            if w not in taken:
                taken.add(w)
                out.append(w)
                if len(out) == n:
                    break
    raise RuntimeError(f"could not build {n} distinct {what} words from {len(syllables)} syllables")


def _draw_fact_pairs(
    rng: np.random.Generator, syllables: list[str], p: np.ndarray, n_pairs: int, suffixes: list[str], taken: set[str]
) -> list[str]:
    """``2 * n_pairs`` fact words: pairs of synonyms sharing a stem, with two different suffixes."""
    out: list[str] = []
    for _ in range(200):
        if len(out) == 2 * n_pairs:
            return out
        m = n_pairs - len(out) // 2 + 16
        k = rng.choice(2, size=m) + 1
        idx = rng.choice(len(syllables), size=(m, 2), p=p)
        suf = np.stack([rng.integers(len(suffixes), size=m), rng.integers(len(suffixes) - 1, size=m)], axis=1)
        suf[:, 1] += suf[:, 1] >= suf[:, 0]
        for row, kk, (sa, sb) in zip(idx.tolist(), k.tolist(), suf.tolist()):
            stem = "".join([syllables[j] for j in row[:kk]])
            a, b = stem + suffixes[sa], stem + suffixes[sb]
            if a not in taken and b not in taken:
                taken.update((a, b))
                out.extend((a, b))
                if len(out) == 2 * n_pairs:
                    break
    raise RuntimeError(f"could not build {n_pairs} fact word pairs from {len(syllables)} syllables")


def build_vocabulary(lang: str, seed: int, n_articles: int) -> Vocabulary:
    """The words of ``lang``: common, question, topic, fact, cue and name words (all distinct)."""
    script = get_script(lang)
    rng = _rng(seed, lang, _VOCAB)
    syl, p = script.syllables()
    suffixes = [syl[i] for i in rng.choice(len(syl), size=N_SUFFIX, replace=False)]
    taken: set[str] = set()
    short, medium, long_ = (0.45, 0.55), (0.0, 0.6, 0.4), (0.0, 0.4, 0.45, 0.15)
    words: list[str] = []
    offsets: dict[str, int] = {}
    n_secondary = max(64, n_articles // 4)
    for name, n, lengths in (
        ("common", N_COMMON, short),
        ("question", N_QUESTION, short),
        ("background", N_BACKGROUND * len(TOPICS), medium),
        ("fact", N_FACT * len(TOPICS), None),
        ("fine", N_CUE * len(FINE_LABELS), medium),
        ("coarse", N_CUE * len(COARSE_LABELS), medium),
        ("secondary", n_secondary, long_),
        ("main", n_articles, long_),
    ):
        offsets[name] = len(words)
        if lengths is None:
            words.extend(_draw_fact_pairs(rng, syl, p, n // 2, suffixes, taken))
        else:
            words.extend(_draw_words(rng, syl, p, n, lengths, taken, name))
    return Vocabulary(
        words=words,
        suffixes=suffixes,
        n_secondary=n_secondary,
        common_cdf=_zipf_cdf(N_COMMON),
        background_cdf=_zipf_cdf(N_BACKGROUND, s=0.8),
        **offsets,
    )


# --------------------------------------------------------------------------------------------- plan


@dataclass
class Query:
    qid: str
    text: str
    words: list[int]  # word ids before inflection: question word first
    positives: list[int]  # labelled rel 1 (passage indices), positive first
    negatives: list[int]  # labelled rel 0
    planted: list[int]  # relevant, not labelled (train only)


@dataclass
class Plan:
    """Everything but the passage texts: articles, passages, queries and their judgements."""

    lang: str
    vocab: Vocabulary
    art_counts: np.ndarray  # passages per article
    art_topic: np.ndarray  # topic index per article
    art_fine: np.ndarray  # FINE_LABELS index per article
    art_coarse: np.ndarray  # COARSE_LABELS index per article
    art_secondary: np.ndarray  # [A, 2] secondary name word ids
    passage_article: np.ndarray  # article per passage
    passage_local: np.ndarray  # position of the passage in its article
    facts: np.ndarray  # [N, 3] fact word ids
    guest: np.ndarray  # article whose main name and facts a copy carries, -1 for ordinary passages
    train: list[Query]
    dev: list[Query]

    def docid(self, i: int) -> str:
        return f"{self.passage_article[i]}#{self.passage_local[i]}"

    def main_name(self, article: np.ndarray | int) -> np.ndarray | int:
        return self.vocab.main + np.asarray(article)


def _articles(rng: np.random.Generator, n_passages: int) -> np.ndarray:
    counts = 1 + rng.poisson(MEAN_EXTRA_PASSAGES, size=int(n_passages / (1 + MEAN_EXTRA_PASSAGES) * 1.2) + 8)
    while counts.sum() < n_passages:
        counts = np.concatenate([counts, 1 + rng.poisson(MEAN_EXTRA_PASSAGES, size=len(counts))])
    total = np.cumsum(counts)
    last = int(np.searchsorted(total, n_passages))
    counts = counts[: last + 1].copy()
    counts[-1] -= int(total[last] - n_passages)
    return counts


def _distinct_fact_pairs(rng: np.random.Generator, n: int, n_pairs: int) -> np.ndarray:
    """[n, 3] distinct pair indices in [0, n_pairs) per row (sequential rejection-free sampling)."""
    p0 = rng.integers(n_pairs, size=n)
    p1 = rng.integers(n_pairs - 1, size=n)
    p1 += p1 >= p0
    p2 = rng.integers(n_pairs - 2, size=n)
    lo, hi = np.minimum(p0, p1), np.maximum(p0, p1)
    p2 += p2 >= lo
    p2 += p2 >= hi
    return np.stack([p0, p1, p2], axis=1)


def make_plan(
    lang: str,
    seed: int,
    passages: int,
    train_queries: int,
    dev_queries: int,
    false_negative_rate: float,
    no_positive_rate: float = 0.0,
    max_planted: int = 3,
    judged_negatives: int = 6,
    vocabulary_seed: int | None = None,
) -> Plan:
    """Draw articles, passages, queries, judgements and planted false negatives (no texts yet).
    ``vocabulary_seed`` (default ``seed``) seeds the language's words alone: another plan of the same
    language with the same vocabulary seed shares its common, topic and fact words."""
    get_script(lang)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= false_negative_rate <= 1.0:
        raise ValueError(f"false_negative_rate must be in [0, 1], got {false_negative_rate}")
    if not 0.0 <= no_positive_rate <= 1.0:
        raise ValueError(f"no_positive_rate must be in [0, 1], got {no_positive_rate}")
    if max_planted < 1 or judged_negatives < 0 or train_queries < 0 or dev_queries < 0:
        raise ValueError("max_planted must be >= 1 and query/judgement counts >= 0")
    n_no_pos = round(no_positive_rate * train_queries)
    n_labelled = train_queries - n_no_pos
    n_fn_queries = round(false_negative_rate * n_labelled)
    # Expected passages taken by positives, labelled copies and planted false negatives: at most two thirds of the
    # corpus, so that relevant copies still find hosts (of their own topic first).
    copies = sum(k * p for k, p in enumerate(EXTRA_POSITIVE_PROBS))
    reserved = (n_labelled + dev_queries) * (1 + copies) + n_fn_queries * (max_planted + 1) / 2
    if passages < 8 or reserved > passages * 2 / 3:
        raise ValueError(
            f"{passages} passages are too few for {train_queries} train and {dev_queries} dev queries with "
            f"false_negative_rate {false_negative_rate} and max_planted {max_planted}: positives, labelled copies and "
            f"planted false negatives would take about {reserved:.0f} passages, more than two thirds of the corpus"
        )

    rng = _rng(seed, lang, _PLAN)
    counts = _articles(rng, passages)
    n_art = len(counts)
    vocab = build_vocabulary(lang, seed if vocabulary_seed is None else vocabulary_seed, n_art)
    props = np.asarray(TOPIC_COUNTS[lang], dtype=float)
    art_topic = rng.choice(len(TOPICS), size=n_art, p=props / props.sum())
    pair_idx = rng.random(n_art)
    art_fine = np.empty(n_art, dtype=np.int64)
    art_coarse = np.empty(n_art, dtype=np.int64)
    for t, topic in enumerate(TOPICS):
        pairs = TOPIC_LABELS[topic]
        sel = art_topic == t
        k = (pair_idx[sel] * len(pairs)).astype(int)
        art_fine[sel] = [FINE_LABELS.index(pairs[j][0]) for j in k]
        art_coarse[sel] = [COARSE_LABELS.index(pairs[j][1]) for j in k]
    art_secondary = vocab.secondary + rng.integers(vocab.n_secondary, size=(n_art, 2))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    passage_article = np.repeat(np.arange(n_art), counts)
    passage_local = np.arange(passages) - np.repeat(starts, counts)
    ptopic = art_topic[passage_article]
    pairs = _distinct_fact_pairs(rng, passages, N_FACT // 2)
    facts = vocab.fact + ptopic[:, None] * N_FACT + 2 * pairs + rng.integers(2, size=(passages, FACTS_PER_PASSAGE))
    plan = Plan(
        lang=lang,
        vocab=vocab,
        art_counts=counts,
        art_topic=art_topic,
        art_fine=art_fine,
        art_coarse=art_coarse,
        art_secondary=art_secondary,
        passage_article=passage_article,
        passage_local=passage_local,
        facts=facts,
        guest=np.full(passages, -1, dtype=np.int64),
        train=[],
        dev=[],
    )
    _make_queries(plan, _rng(seed, lang, _QUERIES), starts, train_queries, n_no_pos, dev_queries,
                  n_fn_queries, max_planted, judged_negatives)
    return plan


def _make_queries(
    plan: Plan,
    rng: np.random.Generator,
    art_starts: np.ndarray,
    train_queries: int,
    n_no_pos: int,
    dev_queries: int,
    n_fn_queries: int,
    max_planted: int,
    judged_negatives: int,
) -> None:
    n = len(plan.passage_article)
    vocab = plan.vocab
    ptopic = plan.art_topic[plan.passage_article]
    topic_passages = [np.flatnonzero(ptopic == t) for t in range(len(TOPICS))]
    reserved = np.zeros(n, dtype=bool)
    n_labelled = train_queries - n_no_pos

    positives = rng.choice(n, size=n_labelled + dev_queries, replace=False)
    reserved[positives] = True
    no_pos_slots = set(rng.choice(train_queries, size=n_no_pos, replace=False).tolist())
    fn_queries = set(rng.choice(n_labelled, size=n_fn_queries, replace=False).tolist())
    extras = rng.choice(len(EXTRA_POSITIVE_PROBS), size=n_labelled + dev_queries, p=EXTRA_POSITIVE_PROBS)

    def pick_host(article: int, topic: int) -> int:
        pool = topic_passages[topic]
        for attempt in range(400):
            h = int(pool[rng.integers(len(pool))]) if attempt < 200 else int(rng.integers(n))
            if not reserved[h] and plan.passage_article[h] != article:
                reserved[h] = True
                return h
        raise RuntimeError("no free passage left to host a relevant copy; use more passages or fewer queries")

    def copy_into(h: int, p: int) -> None:
        a = int(plan.passage_article[p])
        plan.guest[h] = a
        swap = rng.random(FACTS_PER_PASSAGE) < COPY_SYNONYM_PROB
        plan.facts[h] = np.where(swap, vocab.synonym(plan.facts[p]), plan.facts[p])

    def query_words(a: int, facts: np.ndarray) -> tuple[list[int], str]:
        chosen = rng.choice(len(facts), size=2, replace=False)
        if rng.random() < QUERY_ALIAS_PROB:
            body = [int(w) for w in plan.art_secondary[a]]
        else:
            body = [int(plan.main_name(a))]
            if rng.random() < QUERY_SECONDARY_PROB:
                body.append(int(plan.art_secondary[a, 0]))
        for f in facts[chosen]:
            body.append(int(vocab.synonym(f)) if rng.random() < QUERY_SYNONYM_PROB else int(f))
        inflect = [vocab.suffixes[rng.integers(N_SUFFIX)] if rng.random() < QUERY_INFLECT_PROB else "" for _ in body]
        texts = [vocab.words[w] + s for w, s in zip(body, inflect)]
        if rng.random() < QUERY_NOISE_PROB:
            noise = vocab.common + int(np.searchsorted(vocab.common_cdf, rng.random()))
            body.append(noise)
            texts.append(vocab.words[noise])
        order = rng.permutation(len(body)).tolist()
        question = vocab.question + int(rng.integers(N_QUESTION))
        ids = [question] + [body[i] for i in order]
        return ids, " ".join([vocab.words[question]] + [texts[i] for i in order])

    def judged(a: int, relevant: set[int]) -> list[int]:
        lo, hi = int(art_starts[a]), int(art_starts[a] + plan.art_counts[a])
        same = [i for i in rng.permutation(np.arange(lo, hi)).tolist() if i not in relevant]
        out = same[: (judged_negatives + 1) // 2]
        pool = topic_passages[int(plan.art_topic[a])]
        taken = set(out) | relevant
        for attempt in range(50 * judged_negatives + 50):
            if len(out) >= judged_negatives:
                break
            c = int(pool[rng.integers(len(pool))]) if attempt < 25 * judged_negatives else int(rng.integers(n))
            if c not in taken and not lo <= c < hi:
                taken.add(c)
                out.append(c)
        return out

    labelled = [("train", k) for k in range(n_labelled)] + [("dev", k) for k in range(dev_queries)]
    built: dict[tuple[str, int], Query] = {}
    for j, (split, k) in enumerate(tqdm(labelled, desc=f"{plan.lang} queries", unit="q", leave=False)):
        p = int(positives[j])
        a = int(plan.passage_article[p])
        t = int(plan.art_topic[a])
        copies = []
        for _ in range(int(extras[j])):
            h = pick_host(a, t)
            copy_into(h, p)
            copies.append(h)
        planted = []
        if split == "train" and k in fn_queries:
            for _ in range(int(rng.integers(1, max_planted + 1))):
                h = pick_host(a, t)
                copy_into(h, p)
                planted.append(h)
        words, text = query_words(a, plan.facts[p])
        relevant = {p, *copies, *planted}
        built[(split, k)] = Query("", text, words, [p, *copies], judged(a, relevant), planted)

    # Unanswerable train queries: an article's names with facts that none of its passages (or copies) has.
    for k in range(n_no_pos):
        a = int(plan.passage_article[rng.integers(n)])
        t = int(plan.art_topic[a])
        lo, hi = int(art_starts[a]), int(art_starts[a] + plan.art_counts[a])
        used = {(int(f) - vocab.fact) // 2 for f in plan.facts[lo:hi].ravel()}
        used |= {(int(f) - vocab.fact) // 2 for f in plan.facts[plan.guest == a].ravel()}
        free = [q for q in range(t * N_FACT // 2, (t + 1) * N_FACT // 2) if q not in used]
        pairs = rng.choice(free, size=2, replace=False)
        facts = vocab.fact + 2 * pairs + rng.integers(2, size=2)
        words, text = query_words(a, facts)
        built[("none", k)] = Query("", text, words, [], judged(a, set()), [])

    answerable = iter(range(n_labelled))
    unanswerable = iter(range(n_no_pos))
    for slot in range(train_queries):
        q = built[("none", next(unanswerable))] if slot in no_pos_slots else built[("train", next(answerable))]
        q.qid = str(slot)
        plan.train.append(q)
    for k in range(dev_queries):
        q = built[("dev", k)]
        q.qid = str(train_queries + k)
        plan.dev.append(q)


# -------------------------------------------------------------------------------------------- texts


class _Bytes:
    """Word ids -> UTF-8 bytes, vectorized: a padded byte matrix of every word followed by a space."""

    def __init__(self, words: list[str]):
        enc = [w.encode("utf-8") + b" " for w in words]
        self.length = np.array([len(e) for e in enc], dtype=np.int64)
        width = int(self.length.max())
        flat = b"".join(e.ljust(width, b"\0") for e in enc)
        self.matrix = np.frombuffer(flat, dtype=np.uint8).reshape(len(enc), width)
        self.keep = np.arange(width)[None, :] < self.length[:, None]

    def join(self, ids: np.ndarray) -> bytes:
        return self.matrix[ids][self.keep[ids]].tobytes()


def _chunk_lines(plan: Plan, seed: int, table: _Bytes, c: int, lo: int, hi: int) -> tuple[list[bytes], list[bytes]]:
    """Corpus JSON lines and doc-topics rows of passages ``lo <= i < hi`` (chunk number ``c``)."""
    rng = _rng(seed, plan.lang, _TEXT, c)
    vocab = plan.vocab
    n = hi - lo
    mean, sd, lmin, lmax = PASSAGE_WORDS
    length = np.clip(np.rint(rng.normal(mean, sd, size=n)), lmin, lmax).astype(np.int64)
    total = int(length.sum())
    starts = np.concatenate([[0], np.cumsum(length)[:-1]])
    owner = np.repeat(np.arange(n), length)
    art = plan.passage_article[lo:hi]
    topic = plan.art_topic[art]

    # Free slots: a category per word, then a word of that category.
    cat = np.searchsorted(np.cumsum(SLOT_PROBS), rng.random(total) * sum(SLOT_PROBS))
    u = rng.random(total)
    common = vocab.common + np.searchsorted(vocab.common_cdf, u)
    background = vocab.background + topic[owner] * N_BACKGROUND + np.searchsorted(vocab.background_cdf, u)
    fine = vocab.fine + plan.art_fine[art][owner] * N_CUE + (u * N_CUE).astype(np.int64)
    coarse = vocab.coarse + plan.art_coarse[art][owner] * N_CUE + (u * N_CUE).astype(np.int64)
    names = np.stack([plan.main_name(art), plan.art_secondary[art, 0], plan.art_secondary[art, 1]], axis=1)
    own = names[owner, (u * 3).astype(np.int64)]
    ids = np.choose(cat, [common, background, fine, coarse, own])

    # Fixed slots, one in each quarter of the passage: the main name (of the guest article for a copy),
    # then the three facts.
    quarter = (np.arange(5)[None, :] * length[:, None]) // 4
    pos = starts[:, None] + quarter[:, :4] + (rng.random((n, 4)) * (quarter[:, 1:] - quarter[:, :4])).astype(np.int64)
    guest = plan.guest[lo:hi]
    ids[pos[:, 0]] = plan.main_name(np.where(guest >= 0, guest, art))
    ids[pos[:, 1:]] = plan.facts[lo:hi]

    text = table.join(ids)
    byte_end = np.cumsum(np.add.reduceat(table.length[ids], starts))
    byte_start = np.concatenate([[0], byte_end[:-1]])
    titles = {}
    fine_names = [s.encode() for s in FINE_LABELS]
    coarse_names = [s.encode() for s in COARSE_LABELS]
    lines, topics = [], []
    for i in range(n):
        a = int(art[i])
        title = titles.get(a)
        if title is None:
            title = titles[a] = table.join(names[i, :2])[:-1]
        docid = b"%d#%d" % (a, plan.passage_local[lo + i])
        body = text[byte_start[i] : byte_end[i] - 1]
        lines.append(b'{"docid": "%s", "title": "%s", "text": "%s"}\n' % (docid, title, body))
        topics.append(b"%s\t%s\t%s\n" % (docid, fine_names[plan.art_fine[a]], coarse_names[plan.art_coarse[a]]))
    return lines, topics


def passage_records(plan: Plan, seed: int) -> list[dict]:
    """Every passage of ``plan`` as a corpus record ``{"docid", "title", "text"}`` (the texts
    :func:`generate` writes for the same plan and seed)."""
    import json

    table = _Bytes(plan.vocab.words)
    n = len(plan.passage_article)
    out = []
    for c, lo in enumerate(range(0, n, CHUNK)):
        lines, _ = _chunk_lines(plan, seed, table, c, lo, min(lo + CHUNK, n))
        out.extend(json.loads(line) for line in lines)
    return out


# -------------------------------------------------------------------------------------------- write


def raw_paths(raw_dir: str | Path, lang: str) -> dict[str, Path]:
    """The files of one language in the raw MIRACL layout (plus the synthetic analysis files)."""
    raw = Path(raw_dir)
    topics = raw / f"miracl-v1.0-{lang}" / "topics"
    qrels = raw / f"miracl-v1.0-{lang}" / "qrels"
    return {
        "train_topics": topics / f"topics.miracl-v1.0-{lang}-train.tsv",
        "dev_topics": topics / f"topics.miracl-v1.0-{lang}-dev.tsv",
        "train_qrels": qrels / f"qrels.miracl-v1.0-{lang}-train.tsv",
        "dev_qrels": qrels / f"qrels.miracl-v1.0-{lang}-dev.tsv",
        "corpus_dir": raw / f"miracl-corpus-v1.0-{lang}",
        "truth_qrels": raw / "synthetic-truth" / f"{lang}.train.complete-qrels.tsv",
        "doc_topics": raw / "synthetic-truth" / f"{lang}.doc-topics.tsv",
    }


def _write_queries(
    plan: Plan, queries: list[Query], topics_path: Path, qrels_path: Path, truth_path: Path | None
) -> None:
    with atomic_write(topics_path) as fh:
        for q in queries:
            fh.write(f"{q.qid}\t{q.text}\n")
    with contextlib.ExitStack() as stack:
        out = [stack.enter_context(atomic_write(qrels_path))]
        if truth_path is not None:
            out.append(stack.enter_context(atomic_write(truth_path)))
        for q in queries:
            rows = [(plan.docid(p), 1) for p in q.positives] + [(plan.docid(p), 0) for p in q.negatives]
            text = "".join(f"{q.qid} Q0 {d} {r}\n" for d, r in rows)
            for fh in out:
                fh.write(text)
            if truth_path is not None:
                out[1].write("".join(f"{q.qid} Q0 {plan.docid(p)} 1\n" for p in q.planted))


def generate(
    lang: str,
    out_dir: str | Path,
    seed: int,
    passages: int,
    train_queries: int,
    dev_queries: int,
    false_negative_rate: float,
    corpus_shards: int = 1,
    no_positive_rate: float = 0.0,
    max_planted: int = 3,
    judged_negatives: int = 6,
    compresslevel: int = 1,
) -> dict:
    """Write one language of the synthetic benchmark under ``out_dir``; returns summary counts."""
    if corpus_shards < 1 or corpus_shards > passages:
        raise ValueError(f"corpus_shards must be between 1 and the number of passages, got {corpus_shards}")
    plan = make_plan(lang, seed, passages, train_queries, dev_queries, false_negative_rate,
                     no_positive_rate, max_planted, judged_negatives)
    paths = raw_paths(out_dir, lang)
    _write_queries(plan, plan.train, paths["train_topics"], paths["train_qrels"], paths["truth_qrels"])
    _write_queries(plan, plan.dev, paths["dev_topics"], paths["dev_qrels"], None)

    table = _Bytes(plan.vocab.words)
    chunks = [(c, lo, min(lo + CHUNK, passages)) for c, lo in enumerate(range(0, passages, CHUNK))]

    def lines() -> Iterator[tuple[list[bytes], list[bytes]]]:
        for c, lo, hi in chunks:
            yield _chunk_lines(plan, seed, table, c, lo, hi)

    stream = lines()
    pending: list[bytes] = []
    with atomic_write(paths["doc_topics"], "wb") as topics_fh, tqdm(
        total=passages, desc=f"{lang} corpus", unit="passage", unit_scale=True, leave=False
    ) as bar:
        for k in range(corpus_shards):
            lo, hi = shard_bounds(passages, k, corpus_shards)
            shard = paths["corpus_dir"] / f"docs-{k:02d}.jsonl.gz"
            with atomic_write(shard, "wb", compresslevel=compresslevel) as fh:
                need = hi - lo
                while need:
                    if not pending:
                        pending, rows = next(stream)
                        topics_fh.write(b"".join(rows))
                    take = pending[:need]
                    pending = pending[need:]
                    fh.write(b"".join(take))
                    need -= len(take)
                    bar.update(len(take))
    summary = {
        "lang": lang,
        "passages": passages,
        "articles": int(len(plan.art_counts)),
        "train_queries": len(plan.train),
        "train_no_positive": sum(1 for q in plan.train if not q.positives),
        "train_with_planted": sum(1 for q in plan.train if q.planted),
        "planted_false_negatives": sum(len(q.planted) for q in plan.train),
        "dev_queries": len(plan.dev),
        "labelled_positives": sum(len(q.positives) for q in plan.train + plan.dev),
        "judged_negatives": sum(len(q.negatives) for q in plan.train + plan.dev),
        "vocabulary": len(plan.vocab.words),
    }
    log.info("wrote %s under %s: %s", lang, out_dir, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m boostmdr.demo.synthetic",
        description="Write one language of the synthetic benchmark in the raw MIRACL layout (docs/formats.md).",
    )
    ap.add_argument("--lang", required=True, help=f"MIRACL language code, one of: {' '.join(LANGS)}")
    ap.add_argument("--out-dir", required=True, help="raw directory (gets miracl-v1.0-LANG/, miracl-corpus-v1.0-LANG/)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--passages", type=int, required=True)
    ap.add_argument("--train-queries", type=int, required=True)
    ap.add_argument("--dev-queries", type=int, required=True)
    ap.add_argument(
        "--false-negative-rate", type=float, required=True,
        help="fraction of labelled train queries that get 1..--max-planted unlabelled relevant passages",
    )
    ap.add_argument("--corpus-shards", type=int, required=True, help="number of docs-NN.jsonl.gz files")
    ap.add_argument("--no-positive-rate", type=float, default=0.0,
                    help="fraction of train queries with rel-0 judgements only (default 0)")
    ap.add_argument("--max-planted", type=int, default=3, help="most planted false negatives per chosen query")
    ap.add_argument("--judged-negatives", type=int, default=6, help="rel-0 judgements per query")
    ap.add_argument("--log", default=None, help="log file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    generate(
        lang=args.lang,
        out_dir=args.out_dir,
        seed=args.seed,
        passages=args.passages,
        train_queries=args.train_queries,
        dev_queries=args.dev_queries,
        false_negative_rate=args.false_negative_rate,
        corpus_shards=args.corpus_shards,
        no_positive_rate=args.no_positive_rate,
        max_planted=args.max_planted,
        judged_negatives=args.judged_negatives,
    )
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
