"""Stage-3 topics: preprocessing, the config's Table-11 scheme (Yahoo Answers first, then DBpedia), label parsing,
and classification end to end with tiny fastText models trained here."""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml

from boostmdr import topics
from boostmdr.formats import ClassifierLabel, LabelledQuery, read_topic_labels, write_corpus, write_train
from boostmdr.topics import SchemeError, TopicScheme, TopicSettings, classify_queries, preprocess

from conftest import REPO

CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())
SCHEME = TopicScheme.from_dict(CONFIG["topics"])
YAHOO = CONFIG["topics"]["classifiers"]["yahoo_answers"]["labels"]
DBPEDIA = CONFIG["topics"]["classifiers"]["dbpedia"]["labels"]


def test_official_preprocessing_is_fasttexts_normalisation():
    text = 'He said "Hello, World!" (twice); it\'s ok:\nend.'
    assert preprocess(text, "official") == "he said hello , world ! ( twice ) it ' s ok end ."
    assert preprocess("Ёлка. Привет", "official") == "ёлка . привет"  # Unicode lower-casing


def test_raw_preprocessing_is_the_authors():
    assert preprocess('Line "one",\nLine Two.', "raw") == "Line one, Line Two."


def _labels(yahoo: str, dbpedia: str) -> dict[str, ClassifierLabel]:
    return {
        "yahoo_answers": ClassifierLabel(YAHOO.index(yahoo) + 1, yahoo, 0.9),
        "dbpedia": ClassifierLabel(DBPEDIA.index(dbpedia) + 1, dbpedia, 0.9),
    }


@pytest.mark.parametrize(
    ("yahoo", "dbpedia", "topic", "decided_by"),
    [
        ("Health", "Film", "LH", "yahoo_answers"),  # Yahoo first, even when DBpedia maps too
        ("Sports", "WrittenWork", "SP", "yahoo_answers"),
        ("Entertainment & Music", "Village", "AE", "yahoo_answers"),
        ("Society & Culture", "Village", "GE", "dbpedia"),  # Yahoo's class maps to nothing: DBpedia decides
        ("Family & Relationships", "WrittenWork", "BL", "dbpedia"),
        ("Society & Culture", "MeanOfTransportation", "TT", "dbpedia"),
        ("Family & Relationships", "EducationalInstitution", "SM", "dbpedia"),
    ],
)
def test_the_configs_scheme_consults_yahoo_first_then_dbpedia(yahoo, dbpedia, topic, decided_by):
    assert SCHEME.decide(_labels(yahoo, dbpedia)) == (topic, decided_by)


def test_the_configs_scheme_never_falls_back_when_both_classifiers_answer():
    # Every DBpedia class maps to a topic (Table 11), so "Others" comes only from a query with nothing to classify.
    assert {SCHEME.decide(_labels(y, d))[0] for y, d in itertools.product(YAHOO, DBPEDIA)} == set(SCHEME.names) - {"OT"}
    assert SCHEME.decide({}) == ("OT", "fallback")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.update(fallback="XX"), "topics.fallback: 'XX' is not a topic"),
        (lambda t: t.update(order=["dbpedia"]), r"topics.order: \['dbpedia'\] must list every classifier"),
        (lambda t: t["classifiers"]["dbpedia"]["topics"].update(Castle="GE"),
         r"topics.classifiers.dbpedia.topics: \['Castle'\] are not classes"),
        (lambda t: t["classifiers"]["yahoo_answers"]["topics"].update(Health="MED"),
         r"topics.classifiers.yahoo_answers.topics: \['MED'\] are not topics"),
    ],
)
def test_scheme_errors_name_the_config_key(edit, message):
    spec = copy.deepcopy(CONFIG["topics"])
    edit(spec)
    with pytest.raises(SchemeError, match=message):
        TopicScheme.from_dict(spec)


# ------------------------------------------------------------------------------ with fastText models


def _train(tmp_path, name: str, examples: dict[str, list[str]]):
    """A tiny fastText supervised model: ``{label: [texts]}``, each text repeated so it is learnt for sure."""
    import fasttext

    lines = [f"{label} {preprocess(t, 'official')}" for label, texts in examples.items() for t in texts for _ in range(20)]
    data = tmp_path / f"{name}.txt"
    data.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(str(data), epoch=30, lr=1.0, dim=8, bucket=1000, thread=1, seed=1, verbose=0)
    path = tmp_path / f"{name}.bin"
    model.save_model(str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fasttext")
    yahoo = _train(tmp, "yahoo", {"__label__3": ["medicine doctor fever", "doctor medicine"],  # Health
                                  "__label__1": ["culture festival custom", "custom culture"]})  # Society & Culture
    dbpedia = _train(tmp, "dbpedia", {"__label__9": ["village farm river", "river village"],  # Village
                                      "__label__13": ["movie actor scene", "scene movie"]})  # Film
    other = _train(tmp, "other", {"__label__health": ["medicine doctor"], "__label__art": ["movie scene"]})
    return {"yahoo": yahoo, "dbpedia": dbpedia, "other": other}


def _scheme(models, yahoo="yahoo"):
    spec = copy.deepcopy(CONFIG["topics"])
    spec["classifiers"]["yahoo_answers"]["model"] = str(models[yahoo])
    spec["classifiers"]["dbpedia"]["model"] = str(models["dbpedia"])
    return TopicScheme.from_dict(spec)


def _data(tmp_path):
    write_corpus(tmp_path / "corpus.jsonl", [
        ("1#0", "Some Title", "Medicine, and the village!"),
        ("2#0", "", 'The "culture" of the village.'),
        ("3#0", "", "A movie scene."),
    ])  # fmt: skip
    write_train(tmp_path / "train.jsonl", [
        LabelledQuery("q1", "doctor fever village", ("1#0", "3#0")),
        LabelledQuery("q2", "festival", ("2#0",)),
        LabelledQuery("q3", "culture river farm", ()),  # no positive
    ])  # fmt: skip
    return tmp_path / "train.jsonl", tmp_path / "corpus.jsonl"


def test_classification_end_to_end_with_real_fasttext_models(models, tmp_path):
    train, corpus = _data(tmp_path)
    out = tmp_path / "sw.jsonl"
    argv = ["--train", str(train), "--corpus", str(corpus), "--lang", "sw", "--out", str(out)]
    scheme_file = tmp_path / "scheme.yaml"
    spec = copy.deepcopy(CONFIG["topics"])
    spec["classifiers"]["yahoo_answers"]["model"] = str(models["yahoo"])
    spec["classifiers"]["dbpedia"]["model"] = str(models["dbpedia"])
    scheme_file.write_text(yaml.safe_dump(spec))
    assert topics.main([*argv, "--scheme", str(scheme_file)]) == 0
    records = {r.qid: r for r in read_topic_labels(out)}
    # q1: its first positive speaks of medicine and a village: Yahoo says Health (LH) and decides
    assert (records["q1"].docid, records["q1"].topic, records["q1"].decided_by) == ("1#0", "LH", "yahoo_answers")
    assert records["q1"].labels["yahoo_answers"].label == "Health" and records["q1"].labels["yahoo_answers"].number == 3
    assert records["q1"].labels["dbpedia"].label == "Village"
    # q2: Yahoo says Society & Culture, which maps to nothing: DBpedia's Village decides (Geography)
    assert (records["q2"].topic, records["q2"].decided_by) == ("GE", "dbpedia")
    assert 0.5 < records["q2"].labels["dbpedia"].prob <= 1.0 + 1e-4
    # q3 has no positive: the fallback, nothing classified
    assert (records["q3"].docid, records["q3"].topic, records["q3"].labels) == (None, "OT", {})


def test_the_query_text_can_be_classified_instead(models, tmp_path):
    train, corpus = _data(tmp_path)
    records = classify_queries(train, corpus, "sw", _scheme(models), TopicSettings(text="query"))
    assert [(r.docid, r.topic) for r in records] == [(None, "LH"), (None, "GE"), (None, "GE")]


def test_a_model_answering_outside_the_official_numbering_is_refused(models, tmp_path):
    train, corpus = _data(tmp_path)
    with pytest.raises(SchemeError, match=r"classifier 'yahoo_answers' \(.*other.bin\) answered '__label__(health|art)'; "
                                          r"the scheme expects __label__1 ... __label__10"):
        classify_queries(train, corpus, "sw", _scheme(models, yahoo="other"), TopicSettings())


def test_a_missing_model_file_says_where_it_should_be(tmp_path):
    with pytest.raises(FileNotFoundError, match="fastText model .*nope.ftz not found.*topics.classifiers"):
        topics.load_fasttext(tmp_path / "nope.ftz")


def test_bad_settings_name_the_choices():
    with pytest.raises(ValueError, match="--preprocessing 'lower': choose one of official, raw"):
        TopicSettings(preprocessing="lower")
    with pytest.raises(ValueError, match="--text 'title': choose one of first_positive, query"):
        TopicSettings(text="title")
