"""PDBG: the authors' prompts as shipped templates, output cleaning, the choice of the short pools, and the two
generation steps (and the one of "w/o PDBG") through the real runner and transformers backend, cached."""

from __future__ import annotations

import json

import pytest

from boostmdr.formats import Negative, NegativesRecord, read_generated_queries, read_topics, read_train, write_negatives
from boostmdr.generate import (
    DIRECT_PLACEHOLDERS,
    QUERY_PLACEHOLDERS,
    GenerationSettings,
    clean_query,
    clean_summary,
    load_summary_template,
    main,
    select_queries,
)
from boostmdr.llm.prompt import PromptTemplate
from conftest import REPO
from judge_fixtures import random_tiny_lm, write_toy_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = REPO / "config" / "prompts"


def test_the_shipped_templates_are_the_authors_prompts():
    summary = load_summary_template(PROMPTS / "pdbg_summary.txt")
    assert summary.placeholders == ("language", "passage")
    assert summary.render(language="Swahili", passage="P") == (
        "The following text is in Swahili. Please summarize it in the same language. Summarize the content into one "
        "or two concise and informative sentences:\n\nP\n\nSummary:"
    )
    query = PromptTemplate.load(PROMPTS / "pdbg_query.txt", QUERY_PLACEHOLDERS)
    assert query.render(language="Telugu", summary="S") == (
        "The following summary is in Telugu. Please generate a concise and specific search query in the same language "
        "that captures the key aspects of this summary:\n\nS\n\nQuery:"
    )
    direct = PromptTemplate.load(PROMPTS / "pdbg_direct.txt", DIRECT_PLACEHOLDERS)
    assert direct.render(language="Russian", passage="P").endswith("key aspects of this text:\n\nP\n\nQuery:")


def test_a_summary_template_may_show_the_query(tmp_path):
    (tmp_path / "s.txt").write_text("Summarize {passage} for the question {query} in {language}.")
    assert load_summary_template(tmp_path / "s.txt").placeholders == ("language", "passage", "query")


def test_outputs_are_cleaned_into_one_line_and_empty_ones_are_unusable():
    assert clean_summary("  Summary: Kilimanjaro is\n the highest  mountain. ") == "Kilimanjaro is the highest mountain."
    assert clean_summary(" \n ") is None
    assert clean_query('\n\nQuery: "highest mountain in Africa"\nExplanation: ...') == "highest mountain in Africa"
    assert clean_query("search query:  mlima\tmrefu ") == "mlima mrefu"
    assert clean_query("Query:\n«»") is None


def test_only_short_pools_with_a_positive_get_new_queries():
    recs = [
        NegativesRecord("a", "qa", "sw", ["p"], [Negative("n")] * 3),
        NegativesRecord("b", "qb", "sw", ["p"], [Negative("n")] * 2),
        NegativesRecord("c", "qc", "sw", [], []),
    ]
    assert [r.qid for r in select_queries(recs, 3)] == ["b"]
    with pytest.raises(ValueError, match="--mode 'both'"):
        GenerationSettings(mode="both")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pdbg")
    paths = write_toy_data(root / "data", n_queries=6)
    from boostmdr.formats import read_train as rt

    train = rt(paths["train"])
    # queries 0-3 have short pools (1 negative), 4-5 full ones (3): N = 3
    pool = [NegativesRecord(q.qid, q.query, "sw", list(q.positives), [Negative(f"x{i}") for i in range(1 if int(q.qid) < 4 else 3)])
            for q in train.values()]  # fmt: skip
    write_negatives(root / "pool.jsonl", pool)
    return {**paths, "pool": root / "pool.jsonl", "lm": random_tiny_lm(tmp_path_factory.mktemp("pdbg-lm"))}


def _run(data, out, mode="pdbg", extra=()):
    args = [
        "--pool", str(data["pool"]), "--train", str(data["train"]), "--corpus", str(data["corpus"]), "--lang", "sw",
        "--pool-size", "3", "--backend", "transformers", "--model", str(data["lm"]), "--device", "cpu", "--mode", mode,
        "--summary-prompt", str(PROMPTS / "pdbg_summary.txt"), "--query-prompt", str(PROMPTS / "pdbg_query.txt"),
        "--direct-prompt", str(PROMPTS / "pdbg_direct.txt"), "--summary-max-new-tokens", "12",
        "--query-max-new-tokens", "8", "--queries-per-query", "2", "--cache", str(out / "cache" / "job.jsonl"),
        "--out", str(out / "q.jsonl"), "--topics", str(out / "q.tsv"), "--queries-train", str(out / "q.train.jsonl"),
        "--stats", str(out / "stats.json"), *extra,
    ]  # fmt: skip
    main(args)
    return read_generated_queries(out / "q.jsonl"), json.loads((out / "stats.json").read_text())["generation"]


def test_pdbg_writes_two_queries_per_short_pool_with_their_summaries_reproducibly(data, tmp_path):
    generated, stats = _run(data, tmp_path / "a")
    assert [g.gid for g in generated] == ["0.g0", "0.g1", "1.g0", "1.g1", "2.g0", "2.g1", "3.g0", "3.g1"]
    train = read_train(data["train"])
    for g in generated:
        assert g.mode == "pdbg" and g.lang == "sw" and g.source_docid in train[g.qid].positives
        assert g.raw["summary"] and (g.status == "summary_failed") == (g.summary is None)
        assert g.generator["backend"] == "transformers" and g.generator["turn_format"] == "plain"
    ok = [g for g in generated if g.status == "ok"]
    assert stats["below_pool_size"] == 4 and stats["generated"] == 8 and stats["ok"] == len(ok)
    assert read_topics(tmp_path / "a" / "q.tsv") == {g.gid: g.query for g in ok}
    assert {q.qid: q.positives for q in read_train(tmp_path / "a" / "q.train.jsonl").values()} == {
        g.gid: train[g.qid].positives for g in ok
    }
    # the two samples of one query differ (own seeds); a rerun in a fresh directory, same cache: same texts, no model work
    assert generated[0].raw["summary"][0] != generated[1].raw["summary"][0]
    (tmp_path / "b" / "cache").mkdir(parents=True)
    (tmp_path / "b" / "cache" / "job.jsonl").write_bytes((tmp_path / "a" / "cache" / "job.jsonl").read_bytes())
    again, stats_b = _run(data, tmp_path / "b")
    assert again == generated and stats_b["generated_tokens"] == 0 and stats_b["samples_from_cache"] > 0


def test_w_o_pdbg_writes_the_query_from_the_positive_in_one_step(data, tmp_path):
    generated, stats = _run(data, tmp_path, mode="direct")
    assert len(generated) == 8 and all(g.mode == "direct" and g.summary is None and "summary" not in g.raw for g in generated)
    assert {g.status for g in generated} <= {"ok", "query_failed"} and stats["summary_failed"] == 0
