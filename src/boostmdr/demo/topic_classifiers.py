"""Small fastText topic classifiers for the embedded default, standing in for fastText's official DBpedia and
Yahoo Answers models.

The synthetic benchmark gives every passage two labels (``synthetic-truth/{lang}.doc-topics.tsv``): a
DBpedia-like *fine* class (14) and a Yahoo-Answers-like *coarse* class (10), with their own cue words
(:mod:`boostmdr.demo.synthetic`). ``python -m boostmdr.demo.topic_classifiers --column coarse ...`` trains one
fastText supervised classifier on one of the two columns, over the passages of every language, and writes:

* the model (``.bin``), whose classes are numbered as the official models' are: ``--labels`` are the names
  of ``__label__1``, ``__label__2``, ... from the config's ``topics.classifiers.<name>.labels``, and every
  synthetic class name is matched to one of them ignoring case and spaces ("Educational Institution" is
  DBpedia's ``EducationalInstitution``). So :mod:`boostmdr.topics` and the config's maps are used unchanged;
* a report (JSON): the accuracy on held-out passages (overall and per language), the majority-class
  accuracy on the same passages for comparison, and the training settings.

What it never reads: the planted truth (``*.train.complete-qrels.tsv``) and the qrels. Held out are whole
articles (``docid`` ``article#passage``; a seeded draw per article): passages of one article share its names,
so holding out single passages would let the model recognise the article instead of the class. Training
text is the passage's ``text`` field normalised like the official models' training data
(:func:`boostmdr.topics.preprocess` ``official``), the text :mod:`boostmdr.topics` classifies. Training uses
one thread, so the model is a function of its inputs and seed; ``bucket`` is small (the default would make a
toy ``.bin`` 160 MB; with word unigrams only, buckets hold nothing anyway).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from boostmdr.formats import FormatError, open_text, read_corpus, write_json
from boostmdr.topics import LABEL_PREFIX, load_fasttext, preprocess
from boostmdr.utils import setup_logging

log = logging.getLogger(__name__)

COLUMNS = {"fine": 1, "coarse": 2}
"""Column of ``doc-topics.tsv`` (``docid<TAB>fine<TAB>coarse``) per granularity."""


@dataclass(frozen=True)
class ClassifierSettings:
    """fastText ``train_supervised`` settings and the held-out share (config ``tiny_models.topic_classifiers.*``)."""

    dim: int = 16
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 1
    bucket: int = 10000
    holdout: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"--holdout must be in (0, 1), got {self.holdout}")
        if min(self.dim, self.epoch, self.word_ngrams, self.bucket) < 1 or self.lr <= 0:
            raise ValueError("--dim, --epoch, --word-ngrams and --bucket must be >= 1 and --lr > 0")


def _key(name: str) -> str:
    return "".join(name.lower().split())


def numbering(labels: Sequence[str]) -> dict[str, int]:
    """Class name (case and spaces ignored) -> official number (1-based position in ``labels``)."""
    out = {}
    for i, name in enumerate(labels, start=1):
        if _key(name) in out:
            raise ValueError(f"--labels: {name!r} appears twice (case and spaces ignored)")
        out[_key(name)] = i
    return out


def read_doc_labels(path: str | os.PathLike, column: str) -> dict[str, str]:
    """``{docid: class name}`` of one column of a synthetic ``doc-topics.tsv``."""
    col = COLUMNS[column]
    out: dict[str, str] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise FormatError(path, lineno, f"expected 'docid<TAB>fine<TAB>coarse', got {len(parts)} fields")
            out[parts[0]] = parts[col]
    return out


def held_out(lang: str, docid: str, settings: ClassifierSettings) -> bool:
    """Whether the passage's article is held out (a seeded draw per language and article)."""
    article = docid.split("#", 1)[0]
    return random.Random(f"{settings.seed}\x1f{lang}\x1f{article}").random() < settings.holdout


def examples(
    doc_topics: Mapping[str, str | os.PathLike],
    corpora: Mapping[str, str | os.PathLike],
    column: str,
    labels: Sequence[str],
    settings: ClassifierSettings,
) -> tuple[list[str], list[tuple[str, int, str]]]:
    """Training lines ``__label__N text`` and held-out ``(lang, N, text)`` triples, languages in sorted order."""
    number = numbering(labels)
    train, test = [], []
    for lang in sorted(doc_topics):
        names = read_doc_labels(doc_topics[lang], column)
        unknown = sorted({n for n in names.values() if _key(n) not in number})
        if unknown:
            raise ValueError(
                f"{doc_topics[lang]}: {column} classes {unknown} are not among --labels {list(labels)} "
                f"(case and spaces ignored); the config's label list must name the official classes"
            )
        if lang not in corpora:
            raise ValueError(f"no --corpus for language {lang!r}")
        for doc in read_corpus(corpora[lang]):
            docid = doc["docid"]
            if docid not in names:
                raise FormatError(doc_topics[lang], None, f"passage {docid!r} of {corpora[lang]} has no labels here")
            text = preprocess(doc["text"], "official")
            n = number[_key(names[docid])]
            if held_out(lang, docid, settings):
                test.append((lang, n, text))
            else:
                train.append(f"{LABEL_PREFIX}{n} {text}")
    if not train or not test:
        raise ValueError(f"{len(train)} training and {len(test)} held-out passages: both must be > 0; change --holdout")
    return train, test


def train_classifier(lines: Sequence[str], settings: ClassifierSettings, out: str | os.PathLike):
    """Train with fastText on ``lines`` (one thread, seeded) and save the model to ``out`` atomically."""
    import fasttext

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        data = Path(tmp) / "train.txt"
        rows = list(lines)
        random.Random(settings.seed).shuffle(rows)  # fastText reads in order; the corpus is sorted by language
        data.write_text("\n".join(rows) + "\n", encoding="utf-8")
        model = fasttext.train_supervised(
            input=str(data), dim=settings.dim, epoch=settings.epoch, lr=settings.lr,
            wordNgrams=settings.word_ngrams, bucket=settings.bucket, minCount=1, thread=1, seed=settings.seed,
            verbose=0,
        )  # fmt: skip
        partial = Path(tmp) / out.name
        model.save_model(str(partial))
        os.replace(partial, out)
    return model


def evaluate(model, test: Sequence[tuple[str, int, str]]) -> dict:
    """Top-1 accuracy on the held-out passages, overall and per language, with the majority-class rate."""
    labels, _ = model.predict([t for _, _, t in test], k=1)
    predicted = [int(lab[0][len(LABEL_PREFIX) :]) for lab in labels]
    per_lang: dict[str, list[bool]] = {}
    for (lang, gold, _), pred in zip(test, predicted):
        per_lang.setdefault(lang, []).append(gold == pred)
    hits = [h for v in per_lang.values() for h in v]
    majority = Counter(gold for _, gold, _ in test).most_common(1)[0][1]
    return {
        "heldout_passages": len(test),
        "accuracy": sum(hits) / len(hits),
        "accuracy_per_language": {lang: sum(v) / len(v) for lang, v in sorted(per_lang.items())},
        "majority_class_accuracy": majority / len(test),
    }


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep or not lang or not path:
            raise ValueError(f"{flag} expects LANG=PATH, got {item!r}")
        out[lang] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    d = ClassifierSettings()
    p = argparse.ArgumentParser(
        prog="python -m boostmdr.demo.topic_classifiers",
        description="Train a small fastText topic classifier on the synthetic benchmark's passage labels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--doc-topics", nargs="+", required=True, metavar="LANG=PATH", help="synthetic doc-topics.tsv files")
    p.add_argument("--corpus", nargs="+", required=True, metavar="LANG=PATH", help="prepared corpus.jsonl files")
    p.add_argument("--column", choices=sorted(COLUMNS), required=True, help="which label granularity to learn")
    p.add_argument("--labels", nargs="+", required=True, help="names of __label__1, __label__2, ... (official order)")
    p.add_argument("--dim", type=int, default=d.dim)
    p.add_argument("--epoch", type=int, default=d.epoch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--word-ngrams", type=int, default=d.word_ngrams)
    p.add_argument("--bucket", type=int, default=d.bucket)
    p.add_argument("--holdout", type=float, default=d.holdout, help="share of articles held out for the accuracy")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", required=True, help="model file (.bin)")
    p.add_argument("--report", required=True, help="held-out accuracy report (JSON)")
    p.add_argument("--log", default=None)
    args = p.parse_args(argv)
    setup_logging(args.log)
    settings = ClassifierSettings(args.dim, args.epoch, args.lr, args.word_ngrams, args.bucket, args.holdout, args.seed)
    lines, test = examples(
        _pairs(args.doc_topics, "--doc-topics"), _pairs(args.corpus, "--corpus"), args.column, args.labels, settings
    )
    model = train_classifier(lines, settings, args.out)
    report = {"column": args.column, "labels": list(args.labels), "train_passages": len(lines), **evaluate(model, test),
              "settings": asdict(settings)}  # fmt: skip
    check = load_fasttext(args.out)  # the saved file answers as the trained model does
    if check.predict(test[0][2])[0] != model.predict(test[0][2])[0]:
        raise RuntimeError(f"{args.out}: the saved model does not answer like the trained one")
    write_json(args.report, report)
    log.info(
        "%s classifier: held-out accuracy %.3f on %d passages (majority class %.3f); per language %s",
        args.column, report["accuracy"], report["heldout_passages"], report["majority_class_accuracy"],
        {k: round(v, 3) for k, v in report["accuracy_per_language"].items()},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
