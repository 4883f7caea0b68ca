"""The listwise judge: the prompt as rendered, strict parsing of hand-written answers, windows of a long
candidate list, the verdict mapping, structured output, and a listwise run end to end on the toy data with
the random tiny LM (transformers backend)."""

from __future__ import annotations

from collections import Counter

import pytest
from judge_fixtures import REPO, backend, toy, write_toy_data  # noqa: F401 (fixtures)

from boostmdr.formats import read_jsonl, read_verdicts
from boostmdr.judge import JudgeSettings, build_pool, majority_vote, run_verdicts, verdict_stats
from boostmdr.listwise import (
    ANSWER_REGEX,
    MAX_CHOICE_WINDOW,
    PLACEHOLDERS,
    constraint_options,
    format_listwise_answer,
    load_listwise_template,
    parse_listwise,
    render_candidates,
    render_listwise_prompt,
    windows,
)
from boostmdr.llm.prompt import PromptTemplate, TemplateError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LISTWISE = REPO / "config" / "prompts" / "judge_listwise.txt"


# ---------------------------------------------------------------------------------------------- prompt


def test_shipped_listwise_template_has_its_three_placeholders_once():
    t = load_listwise_template(LISTWISE)
    assert t.placeholders == PLACEHOLDERS == ("question", "reference", "candidates")
    assert "<relevant>" in t.text and "</relevant>" in t.text


def test_listwise_prompt_numbers_the_candidates_and_cuts_every_passage():
    t = PromptTemplate("Q: {question}\nR: {reference}\nC:\n{candidates}\nA:", PLACEHOLDERS)
    prompt = render_listwise_prompt(t, "  who  wrote\nit ", ["a b c d", "e  f", "g h i"], "r1 r2 r3 r4", max_passage_words=2)
    assert prompt == "Q: who wrote it\nR: r1 r2\nC:\n[1] a b\n[2] e f\n[3] g h\nA:"
    assert render_candidates(["x y"]) == "[1] x y"


def test_a_pointwise_template_is_refused_as_a_listwise_one(tmp_path):
    with pytest.raises(TemplateError, match=r"judge\.txt: prompt template lacks placeholder\(s\) \{candidates\}"):
        load_listwise_template(REPO / "config" / "prompts" / "judge.txt")


# --------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "size", "expected"),
    [
        ("<relevant>2, 5</relevant>", 5, {2, 5}),
        ("<relevant>5,2</relevant>", 5, {2, 5}),
        ("<relevant></relevant>", 3, set()),
        ("<relevant> none </relevant>", 3, set()),
        ("<relevant>[1], [3]</relevant>", 3, {1, 3}),  # the prompt labels candidates [i]
        ("I compared each one.\n<relevant>1</relevant>\n", 2, {1}),  # reasoning before the block is fine
        ("<RELEVANT>2</RELEVANT>", 2, {2}),
        ('{"relevant": [3, 1]}', 4, {1, 3}),  # structured output over a JSON-only backend
        ('{"relevant": []}', 4, set()),
    ],
)
def test_listwise_answers_that_parse(text, size, expected):
    assert parse_listwise(text, size) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2, 5", 5),  # no block: never guessed
        ("<relevant>2, 5", 5),  # block not closed
        ("<relevant>1</relevant> <relevant>2</relevant>", 3),  # two blocks
        ("<relevant>0</relevant>", 3),  # numbers start at 1
        ("<relevant>4</relevant>", 3),  # out of the window
        ("<relevant>1, 1</relevant>", 3),  # repeated
        ("<relevant>1 and 2</relevant>", 3),  # words
        ("<relevant>1 2</relevant>", 3),  # not comma separated
        ("<relevant>1.5</relevant>", 3),
        ('{"relevant": [1], "why": "x"}', 3),  # extra key
        ('{"relevant": [true]}', 3),
        ('{"relevant": "1"}', 3),
        ("{not json", 3),
        ("", 3),
    ],
)
def test_malformed_listwise_answers_are_unparsed(text, size):
    assert parse_listwise(text, size) is None


def test_the_canonical_answer_parses_back():
    assert format_listwise_answer([5, 2]) == "<relevant>2, 5</relevant>"
    assert format_listwise_answer([]) == "<relevant></relevant>"
    for numbers in ([], [1], [3, 1, 2]):
        assert parse_listwise(format_listwise_answer(numbers), 3) == frozenset(numbers)


# --------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        (10, 5, [(0, 5), (5, 10)]),
        (11, 5, [(0, 4), (4, 8), (8, 11)]),  # three windows of near-equal size, not 5 + 5 + 1
        (4, 3, [(0, 2), (2, 4)]),
        (3, 20, [(0, 3)]),
        (0, 5, []),
        (40, 20, [(0, 20), (20, 40)]),  # the paper's 40 candidates at the default window: 2 calls per sample
    ],
)
def test_windows_split_a_candidate_list_into_near_equal_consecutive_parts(n, size, expected):
    assert windows(n, size) == expected


def test_structured_output_options_for_a_window():
    small = constraint_options(3)
    assert small["choice"].value == (
        "<relevant></relevant>", "<relevant>1</relevant>", "<relevant>2</relevant>", "<relevant>3</relevant>",
        "<relevant>1, 2</relevant>", "<relevant>1, 3</relevant>", "<relevant>2, 3</relevant>", "<relevant>1, 2, 3</relevant>",
    )
    assert all(parse_listwise(c, 3) is not None for c in small["choice"].value)
    assert len(constraint_options(MAX_CHOICE_WINDOW)["choice"].value) == 2**MAX_CHOICE_WINDOW
    assert constraint_options(MAX_CHOICE_WINDOW + 1)["choice"] is None  # too many answers: regex or JSON schema
    assert constraint_options(12)["regex"].value == ANSWER_REGEX
    schema = constraint_options(12)["json"].schema
    assert schema["properties"]["relevant"]["items"]["maximum"] == 12 and schema["required"] == ["relevant"]


# ------------------------------------------------------------------------------------ end to end, toy


def _run(toy, backend, tmp_path, **settings):
    data, _ = toy
    out = tmp_path / "v.jsonl"
    s = JudgeSettings(max_new_tokens=24, retries=1, seed=5, mode="listwise", window=3, **settings)
    counts = run_verdicts(
        data["candidates"], data["train"], data["corpus"], "xx", backend, load_listwise_template(LISTWISE), s, out,
        cache_path=tmp_path / "cache" / "c.jsonl", summary_path=tmp_path / "summary.json",
    )
    return counts, [r for _, r in read_jsonl(out)], out


def test_listwise_run_judges_each_window_once_and_maps_listed_to_two(toy, backend, tmp_path):
    counts, recs, out = _run(toy, backend, tmp_path, structured_output=True)
    # 6 queries x 4 candidates, window 3 -> windows of 2 + 2: 12 prompts x 4 samples, every one parsed
    assert len(recs) == 24 and counts["generated"] == 12 * 4 and counts["unparsed_samples"] == 0
    assert {(r["window"]["index"], r["window"]["size"], r["window"]["position"]) for r in recs} == {
        (w, 2, p) for w in (0, 1) for p in (1, 2)
    }
    for r in recs:
        assert r["mode"] == "listwise" and r["structured_output"] is True
        for s in r["samples"]:
            assert s["score"] == (2 if r["window"]["position"] in s["listed"] else 0)
        assert r["verdict"] == majority_vote([s["score"] for s in r["samples"]])
        assert r["verdict"] in (0, 2)
        # a window's tokens sit on its first record only, so sums over the file are the run's totals
        assert (r["prompt_tokens"] > 0) == (r["window"]["position"] == 1)
    assert sum(r["generated_tokens"] for r in recs) == counts["generated_tokens"]
    assert sum(r["prefilled_tokens"] for r in recs) == counts["prefilled_tokens"]
    # the verdict file is read, pooled and summarised like a pointwise one
    assert len(read_verdicts([out])) == 24
    stats = verdict_stats([out], "xx", frozenset({0}), toy[0]["truth"])
    assert stats["judged"] == 24 and stats["removed"] == sum(r["verdict"] == 2 for r in recs)
    pool = build_pool(toy[0]["candidates"], toy[0]["train"], "xx", "stage1:toy", frozenset({0}), [out])
    assert sum(len(p.negatives) for p in pool) == sum(r["verdict"] == 0 for r in recs)


def test_listwise_structured_output_removes_the_unparsed_answers_of_a_random_model(toy, backend, tmp_path):
    free, free_recs, _ = _run(toy, backend, tmp_path / "free")
    forced, _, _ = _run(toy, backend, tmp_path / "forced", structured_output=True)
    # the random model never writes the format by itself: every sample is unparsed after its retry
    assert free["unparsed_samples"] == 12 * 4 and free["generated"] == 12 * 4 * 2
    assert all(r["verdict"] is None for r in free_recs)
    assert forced["unparsed_samples"] == 0


def test_listwise_rerun_comes_from_the_cache_with_the_same_verdicts(toy, backend, tmp_path):
    first, a, _ = _run(toy, backend, tmp_path, structured_output=True)
    again, b, _ = _run(toy, backend, tmp_path, structured_output=True)
    assert again["generated"] == 0 and again["cached"] == first["generated"]
    assert [r["verdict"] for r in a] == [r["verdict"] for r in b]


def test_structured_output_a_backend_cannot_enforce_is_refused_naming_the_setting(toy, backend, tmp_path):
    data, _ = toy
    s = JudgeSettings(max_new_tokens=24, mode="listwise", window=MAX_CHOICE_WINDOW + 1, structured_output=True)
    run = write_toy_data(tmp_path / "wide", n_queries=1, n_candidates=MAX_CHOICE_WINDOW + 1)
    with pytest.raises(ValueError, match=r"structured_output \(--structured-output\): the transformers backend cannot "
                                         r"enforce this answer format \(it supports \['choice'\]"):
        run_verdicts(run["candidates"], run["train"], run["corpus"], "xx", backend, load_listwise_template(LISTWISE),
                     s, tmp_path / "v.jsonl")


def test_listwise_cli_writes_verdicts_and_summary(toy, tmp_path):
    import json

    from boostmdr.judge import main

    data, model = toy
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    assert main([
        "verdicts", "--candidates", str(data["candidates"]), "--train", str(data["train"]), "--corpus",
        str(data["corpus"]), "--lang", "xx", "--backend", "transformers", "--model", str(model), "--device", "cpu",
        "--prompt", str(LISTWISE), "--mode", "listwise", "--window", "4", "--structured-output",
        "--max-new-tokens", "32", "--retries", "0", "--summary", str(summary), "--out", str(out),
    ]) == 0
    s = json.loads(summary.read_text())
    assert (s["mode"], s["queries"], s["candidates"], s["prompts"], s["calls"]) == ("listwise", 6, 24, 6, 24)
    assert s["unparsed_samples"] == 0 and s["prompt_tokens"] > s["prefilled_tokens"] > 0 and s["seconds"] > 0
    assert Counter(r["window"]["size"] for _, r in read_jsonl(out)) == {4: 24}


def test_each_backend_gets_the_answer_constraint_it_can_enforce():
    from boostmdr.judge import STRUCTURED_SETTING, pointwise_constraint_options
    from boostmdr.llm.constraint import pick
    from boostmdr.llm.http_backend import HTTPBackend
    from boostmdr.llm.transformers_backend import TransformersBackend
    from boostmdr.llm.vllm_backend import VLLMBackend

    def kind(options, backend):
        return pick(options, backend.CONSTRAINTS, STRUCTURED_SETTING, backend.NAME).kind

    point, small, wide = pointwise_constraint_options(), constraint_options(5), constraint_options(MAX_CHOICE_WINDOW + 10)
    assert [kind(point, b) for b in (VLLMBackend, TransformersBackend, HTTPBackend)] == ["choice", "choice", "json"]
    assert [kind(small, b) for b in (VLLMBackend, TransformersBackend, HTTPBackend)] == ["choice", "choice", "json"]
    assert [kind(wide, b) for b in (VLLMBackend, HTTPBackend)] == ["regex", "json"]
    assert len(point["choice"].value) == 9 and point["json"].schema["required"] == [
        "Information Accuracy", "Information Completeness"]
    with pytest.raises(ValueError, match=r"transformers backend cannot enforce this answer format .* as \['regex', 'json'\]"):
        kind(wide, TransformersBackend)
