"""Stage 3, topics: every training query gets one of the paper's topics from two fastText classifiers.

``python -m boostmdr.topics --train results/data/sw/train.jsonl --corpus results/data/sw/corpus.jsonl
--lang sw --scheme SCHEME --out results/stage3/topics/sw.jsonl`` classifies, for every training query, the
text of its first labelled positive (paper Sec. 3.5 and App. B.4; the authors' ``topic_classification.py``
does the same) with each classifier of the scheme, and maps the answers to a topic.

The scheme is data (``topics`` in the config, Table 11 of the paper; ``SCHEME`` is that mapping as JSON, or
a JSON/YAML file holding it):

* ``classifiers``: fastText supervised models by name, each with ``model`` (a ``.bin`` or ``.ftz`` path),
  ``labels`` (the class names of ``__label__1``, ``__label__2``, ...: the official DBpedia and Yahoo
  Answers models answer class *numbers*, see docs/stage3.md) and ``topics`` (class name -> topic code;
  a class not listed maps to nothing);
* ``order``: the classifiers in the order they are consulted. The topic is that of the first classifier
  whose top-1 class maps to a topic. The authors consult Yahoo Answers first, then DBpedia, so Yahoo's
  "Society & Culture" and "Family & Relationships", which map to nothing, fall through to DBpedia;
* ``names``: topic code -> name, in the paper's column order (Table 13); ``fallback``: the topic of a
  query that nothing maps (the authors' "Others"; also a query without a positive or with an empty text).

Choices where the paper is silent:

* **What is classified** (``--text``): ``first_positive`` (default, the authors) uses the ``text`` field of
  the query's first positive in the qrels order, without its title, as the authors do; ``query`` classifies
  the query itself.
* **Preprocessing** (``--preprocessing``): ``official`` (default) lower-cases and splits punctuation the
  way the official models' training data was normalised (fastText's ``classification-results.sh``:
  ``'`` becomes `` ' ``, ``"`` goes, ``. , ( ) ! ?`` get spaces around them, ``; :`` become spaces, runs
  of spaces are squeezed); lower-casing is Unicode-aware (``str.lower``) where ``tr`` in the C locale
  lower-cases ASCII only. ``raw`` feeds the text as the authors did: double quotes removed, newlines
  turned into spaces, case and punctuation kept. Both remove newlines, which fastText's predict refuses.
* Each classifier's top-1 class and its probability are kept (the topic file shows both answers, so a
  reader can see how often the second classifier decided).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boostmdr.formats import ClassifierLabel, FormatError, TopicRecord, read_corpus, read_train, write_topic_labels
from boostmdr.utils import setup_logging

log = logging.getLogger(__name__)

TEXTS = ("first_positive", "query")
PREPROCESSINGS = ("official", "raw")
LABEL_PREFIX = "__label__"
FALLBACK = "fallback"
"""``decided_by`` of a query whose topic is the scheme's fallback."""


@dataclass(frozen=True)
class TopicSettings:
    """What is classified and how it is preprocessed (the config's ``topics.text``/``topics.preprocessing``)."""

    text: str = "first_positive"
    preprocessing: str = "official"

    def __post_init__(self) -> None:
        if self.text not in TEXTS:
            raise ValueError(f"--text {self.text!r}: choose one of {', '.join(TEXTS)}")
        if self.preprocessing not in PREPROCESSINGS:
            raise ValueError(f"--preprocessing {self.preprocessing!r}: choose one of {', '.join(PREPROCESSINGS)}")


# ------------------------------------------------------------------------------------------ scheme


class SchemeError(ValueError):
    """The topic scheme is inconsistent; the message names the config key (``topics.<...>``)."""


@dataclass(frozen=True)
class Classifier:
    """One fastText classifier of the scheme: its model file, the names of its numbered classes, and which
    of them map to a topic."""

    name: str
    model: str
    labels: tuple[str, ...]
    topics: Mapping[str, str]

    def label_name(self, raw: str, where: str) -> tuple[int, str]:
        """``"__label__3"`` -> ``(3, self.labels[2])``; any other answer names the model and the fix."""
        number = raw[len(LABEL_PREFIX) :] if raw.startswith(LABEL_PREFIX) else ""
        if not number.isdigit() or not 1 <= int(number) <= len(self.labels):
            raise SchemeError(
                f"{where}: classifier {self.name!r} ({self.model}) answered {raw!r}; the scheme expects "
                f"{LABEL_PREFIX}1 ... {LABEL_PREFIX}{len(self.labels)} (the official numbering, with the names in "
                f"topics.classifiers.{self.name}.labels)"
            )
        return int(number), self.labels[int(number) - 1]


@dataclass(frozen=True)
class TopicScheme:
    """Topic codes and names, the classifiers in the order they are consulted, and the fallback topic."""

    names: Mapping[str, str]
    classifiers: tuple[Classifier, ...]
    fallback: str

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> TopicScheme:
        """Build and check a scheme from the config's ``topics`` mapping (keys ``names``, ``fallback``,
        ``order``, ``classifiers``; other keys such as ``text`` are ignored)."""
        try:
            names = {str(k): str(v) for k, v in spec["names"].items()}
            fallback = str(spec["fallback"])
            order = [str(n) for n in spec["order"]]
            entries = spec["classifiers"]
        except (KeyError, AttributeError, TypeError) as err:
            raise SchemeError(f"topics: the scheme needs names, fallback, order and classifiers ({err})") from None
        if fallback not in names:
            raise SchemeError(f"topics.fallback: {fallback!r} is not a topic in topics.names ({sorted(names)})")
        if sorted(order) != sorted(entries) or len(set(order)) != len(order):
            raise SchemeError(
                f"topics.order: {order} must list every classifier in topics.classifiers exactly once ({sorted(entries)})"
            )
        classifiers = []
        for name in order:
            entry = entries[name]
            where = f"topics.classifiers.{name}"
            labels = tuple(str(x) for x in entry.get("labels") or ())
            if not labels or len(set(labels)) != len(labels):
                raise SchemeError(f"{where}.labels: a non-empty list of distinct class names, in the model's numbering")
            mapping = {str(k): str(v) for k, v in (entry.get("topics") or {}).items()}
            unknown = sorted(set(mapping) - set(labels))
            if unknown:
                raise SchemeError(f"{where}.topics: {unknown} are not classes in {where}.labels")
            bad = sorted({t for t in mapping.values() if t not in names})
            if bad:
                raise SchemeError(f"{where}.topics: {bad} are not topics in topics.names ({sorted(names)})")
            model = entry.get("model")
            if not isinstance(model, str) or not model:
                raise SchemeError(f"{where}.model: the path of a fastText .bin or .ftz model")
            classifiers.append(Classifier(name, model, labels, mapping))
        return cls(names, tuple(classifiers), fallback)

    def decide(self, labels: Mapping[str, ClassifierLabel]) -> tuple[str, str]:
        """``(topic, decided_by)``: the topic of the first classifier (in order) whose class maps to one."""
        for clf in self.classifiers:
            answer = labels.get(clf.name)
            if answer is not None and answer.label in clf.topics:
                return clf.topics[answer.label], clf.name
        return self.fallback, FALLBACK


def load_scheme(value: str) -> TopicScheme:
    """``--scheme``: a JSON object, or the path of a JSON or YAML file holding one."""
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    if value.lstrip().startswith("{") or value.endswith(".json"):
        spec = json.loads(text)
    else:
        import yaml

        spec = yaml.safe_load(text)
    if not isinstance(spec, Mapping):
        raise SchemeError(f"--scheme: expected a mapping, got {type(spec).__name__}")
    return TopicScheme.from_dict(spec)


# ------------------------------------------------------------------------------------ preprocessing

_SPACED = re.compile(r"([.,()!?])")
_SPACES = re.compile(r" {2,}")


def preprocess(text: str, mode: str) -> str:
    """The text a classifier sees (see the module docstring for ``official`` and ``raw``)."""
    if mode == "raw":
        return text.replace('"', "").replace("\n", " ")
    if mode != "official":
        raise ValueError(f"preprocessing {mode!r}: choose one of {', '.join(PREPROCESSINGS)}")
    text = re.sub(r"\s", " ", text.lower())
    text = text.replace("'", " ' ").replace('"', "")
    text = _SPACED.sub(r" \1 ", text.replace("<br />", " "))
    text = text.replace(";", " ").replace(":", " ")
    return _SPACES.sub(" ", text).strip()


# ---------------------------------------------------------------------------------------- fastText


def load_fasttext(path: str | os.PathLike) -> Any:
    """Load a fastText model (``.bin`` or ``.ftz``) with the ``fasttext`` module of fasttext-community."""
    try:
        import fasttext
    except ImportError as err:
        raise ImportError(
            "topic classification needs the fasttext module: pip install fasttext-community==0.11.9 "
            "(requirements/cpu.lock)"
        ) from err
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"fastText model {path} not found; the paper's models are fastText's official dbpedia and "
            f"yahoo_answers supervised models (.bin or .ftz), placed where topics.classifiers.*.model says (README)"
        )
    return fasttext.load_model(str(path))


def check_model_labels(clf: Classifier, model: Any) -> None:
    """Every class the model knows must be one of the scheme's numbered classes."""
    for raw in model.get_labels():
        clf.label_name(raw, f"model {clf.model}")


def predict(model: Any, clf: Classifier, texts: Sequence[str]) -> list[ClassifierLabel]:
    """Top-1 class and probability of each text (one batched call)."""
    if not texts:
        return []
    labels, probs = model.predict(list(texts), k=1)
    out = []
    for raw, prob in zip(labels, probs):
        number, name = clf.label_name(raw[0], f"model {clf.model}")
        out.append(ClassifierLabel(number, name, round(float(prob[0]), 6)))
    return out


# -------------------------------------------------------------------------------------- classify


def classify_queries(
    train: str | os.PathLike,
    corpus: str | os.PathLike,
    lang: str,
    scheme: TopicScheme,
    settings: TopicSettings,
    models: Mapping[str, Any] | None = None,
) -> list[TopicRecord]:
    """A :class:`TopicRecord` for every query of a prepared ``train.jsonl``, in file order.

    ``models`` (classifier name -> loaded fastText model) defaults to loading each classifier's file.
    """
    queries = read_train(train)
    if models is None:
        models = {c.name: load_fasttext(c.model) for c in scheme.classifiers}
    for clf in scheme.classifiers:
        check_model_labels(clf, models[clf.name])

    docids: dict[str, str | None] = {}
    texts: dict[str, str] = {}
    if settings.text == "query":
        for q in queries.values():
            docids[q.qid] = None
            texts[q.qid] = q.query
    else:
        for q in queries.values():
            docids[q.qid] = q.positives[0] if q.positives else None
        wanted = {d for d in docids.values() if d is not None}
        found: dict[str, str] = {}
        for doc in read_corpus(corpus):
            if doc["docid"] in wanted:
                found[doc["docid"]] = doc["text"]
                if len(found) == len(wanted):
                    break
        missing = sorted(wanted - set(found))
        if missing:
            raise FormatError(corpus, None, f"{len(missing)} first positive(s) of {train} are not in this corpus, e.g. {missing[:5]}")
        texts = {qid: found[d] for qid, d in docids.items() if d is not None}

    prepared = {qid: preprocess(t, settings.preprocessing) for qid, t in texts.items()}
    order = [qid for qid in queries if prepared.get(qid)]
    answers = {
        clf.name: dict(zip(order, predict(models[clf.name], clf, [prepared[qid] for qid in order])))
        for clf in scheme.classifiers
    }
    records = []
    for qid in queries:
        labels = {name: got[qid] for name, got in answers.items() if qid in got}
        topic, decided_by = scheme.decide(labels)
        records.append(TopicRecord(qid, lang, topic, docids[qid], decided_by, labels))
    return records


def summarize(records: Sequence[TopicRecord], scheme: TopicScheme) -> dict[str, Any]:
    """Counts per topic (in the scheme's order) and per deciding classifier."""
    topics = Counter(r.topic for r in records)
    return {
        "queries": len(records),
        "topics": {code: topics.get(code, 0) for code in scheme.names},
        "decided_by": dict(Counter(r.decided_by for r in records)),
    }


def build_parser() -> argparse.ArgumentParser:
    d = TopicSettings()
    p = argparse.ArgumentParser(
        prog="python -m boostmdr.topics",
        description="Stage 3: topic of every training query from fastText classifiers (docs/stage3.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--train", required=True, help="prepared train.jsonl of one language")
    p.add_argument("--corpus", required=True, help="prepared corpus.jsonl of the same language")
    p.add_argument("--lang", required=True, help="language code written into every record")
    p.add_argument("--scheme", required=True, help="the config's topics mapping as JSON, or a JSON/YAML file")
    p.add_argument("--text", choices=TEXTS, default=d.text, help="what is classified")
    p.add_argument("--preprocessing", choices=PREPROCESSINGS, default=d.preprocessing, help="text normalisation")
    p.add_argument("--out", required=True, help="topic file (JSON lines, docs/formats.md)")
    p.add_argument("--log", default=None, help="log file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    settings = TopicSettings(args.text, args.preprocessing)
    scheme = load_scheme(args.scheme)
    records = classify_queries(args.train, args.corpus, args.lang, scheme, settings)
    write_topic_labels(args.out, records)
    log.info("%s: %s", args.lang, json.dumps(summarize(records, scheme), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
