"""The stage-1 judge: the authors' score combination and vote, output parsing, the prompt template,
the generation cache (hits, misses, a killed judge resumed, two judges on one cache), pool and stats."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from judge_fixtures import PROMPT, backend, random_tiny_lm, toy, write_toy_data  # noqa: F401 (fixtures)

from boostmdr.formats import read_negatives, read_jsonl
from boostmdr.judge import (
    AUTHORS_SAMPLES,
    PLACEHOLDERS,
    JudgeSettings,
    build_pool,
    choose_reference,
    combine_scores,
    load_judge_template,
    majority_vote,
    parse_keep,
    parse_scores,
    run_verdicts,
    verdict_stats,
)
from boostmdr.llm.cache import GenerationCache, cache_key
from boostmdr.llm.prompt import PromptTemplate, TemplateError, truncate_words
from boostmdr.llm.runner import parse_samples_spec, sample_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ------------------------------------------------------------------------------- combination, vote


@pytest.mark.parametrize(
    ("accuracy", "completeness", "expected"),
    [
        (0, 0, 0), (0, 1, 0), (0, 2, 0),
        (1, 0, 0), (1, 1, 1), (1, 2, 2),
        (2, 0, 0), (2, 1, 2), (2, 2, 2),
    ],
)
def test_combination_rule_covers_all_nine_score_pairs(accuracy, completeness, expected):
    # any 0 -> 0; otherwise more 1s than 2s -> 1; otherwise (as many 2s as 1s, or more) -> 2
    assert combine_scores(accuracy, completeness) == expected


def test_combination_rejects_out_of_range_scores():
    with pytest.raises(ValueError, match="0, 1 or 2"):
        combine_scores(3, 1)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0, 0, 0, 2], 0),
        ([2, 2, 1, 0], 2),
        ([0, 2, 2, 0], 0),  # 2-2 tie: the score seen first wins (Counter.most_common order)
        ([2, 0, 0, 2], 2),
        ([1, 2, 0, None], 1),  # three-way tie among parsed samples: first one
        ([None, 2, None, 0], 2),  # unparsed samples do not vote
        ([None, None, None, 1], 1),
        ([None, None, None, None], None),  # nothing parsed: no verdict
        ([], None),
    ],
)
def test_majority_vote_with_ties_and_unparsed_samples(scores, expected):
    assert majority_vote(scores) == expected


def test_majority_vote_matches_counter_most_common_on_every_four_sample_pattern():
    from collections import Counter
    from itertools import product

    for scores in product([0, 1, 2], repeat=4):
        assert majority_vote(list(scores)) == Counter(scores).most_common(1)[0][0]


# --------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"Information Accuracy": 2, "Information Completeness": 1}', (2, 1, 2)),
        ('{"Information Accuracy":0,"Information Completeness":2}', (0, 2, 0)),
        ("```json\n{\n  \"Information Accuracy\": 1,\n  \"Information Completeness\": 1\n}\n```", (1, 1, 1)),
        ("{'information accuracy': '2', 'information completeness': '2'}", (2, 2, 2)),
        ("**Information Accuracy**: 1\n**Information Completeness**: 2\nThe candidate ...", (1, 2, 2)),
        ("Accuracy = 0; Completeness = 0", (0, 0, 0)),
        # the model first echoes the format line, then answers: the echo is skipped
        ('{"Information Accuracy": {0/1/2}, "Information Completeness": {0/1/2}}\n'
         '{"Information Accuracy": 2, "Information Completeness": 2}', (2, 2, 2)),
        ("2", (None, None, 2)),  # a bare final score (the authors' earlier prompt)
        (' "0" ', (None, None, 0)),
    ],
)
def test_parse_scores_reads_messy_outputs(text, expected):
    parsed = parse_scores(text)
    assert parsed is not None
    assert (parsed.accuracy, parsed.completeness, parsed.score) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot judge this.",
        '{"Information Accuracy": 2}',  # one criterion missing
        '{"Information Accuracy": 3, "Information Completeness": 2}',  # out of range
        '{"Information Accuracy": 1.5, "Information Completeness": 2}',
        '{"Information Accuracy": {0/1/2}, "Information Completeness": {0/1/2}}',
        "12",
    ],
)
def test_parse_scores_rejects_unreadable_outputs(text):
    assert parse_scores(text) is None


# ---------------------------------------------------------------------------------------- prompt


def test_shipped_template_is_valid_and_renders_literal_braces():
    t = load_judge_template(PROMPT)
    out = t.render(question="what is x", candidate="cand text", reference="ref text")
    assert "Question: what is x\nCandidate Answer: cand text\nStandard Answer: ref text\n" in out
    assert '{"Information Accuracy": {0/1/2}, "Information Completeness": {0/1/2}}' in out
    assert "{question}" not in out and "{candidate}" not in out and "{reference}" not in out


def test_template_render_is_single_pass():
    t = PromptTemplate("Q: {question} C: {candidate} R: {reference}", PLACEHOLDERS)
    assert t.render(question="{reference}", candidate="{question}", reference="") == "Q: {reference} C: {question} R: "
    with pytest.raises(ValueError, match="render needs exactly the values"):
        t.render(question="q", candidate="c")


def test_template_missing_placeholder_names_the_file(tmp_path):
    bad = tmp_path / "judge.txt"
    bad.write_text("Question: {question}\nCandidate Answer: {candidate}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"judge\.txt.*lacks placeholder\(s\) \{reference\}"):
        load_judge_template(bad)


def test_template_with_the_papers_placeholders_gets_a_hint(tmp_path):
    bad = tmp_path / "paper.txt"
    bad.write_text("Question: {Input Question}\nCandidate Answer: {Input Candidate Answer}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"write \{question\}, \{candidate\}, \{reference\}"):
        load_judge_template(bad)


def test_template_repeated_placeholder_and_missing_file(tmp_path):
    with pytest.raises(TemplateError, match="more than once"):
        PromptTemplate("{question} {question} {candidate} {reference}", PLACEHOLDERS, "x.txt")
    with pytest.raises(TemplateError, match="not found"):
        load_judge_template(tmp_path / "nope.txt")


def test_truncate_words():
    assert truncate_words("a  b\nc d", 3) == "a b c"
    assert truncate_words("a b", None) == "a b"


# ------------------------------------------------------------------------------ settings, seeds


def test_samples_spec_is_top_p_then_temperature():
    assert parse_samples_spec(AUTHORS_SAMPLES) == [(0.7, 0.4), (0.8, 0.6), (0.9, 0.8), (0.8, 0.4)]
    with pytest.raises(ValueError, match="--samples"):
        parse_samples_spec("0.7-0.4")
    with pytest.raises(ValueError, match="--samples"):
        parse_samples_spec("1.5:0.4")


def test_parse_keep():
    assert parse_keep("0") == {0}
    assert parse_keep("0,1") == {0, 1}
    with pytest.raises(ValueError, match="--keep"):
        parse_keep("3")


def test_reference_choice_is_seeded_per_query():
    pos = [f"d{i}" for i in range(10)]
    assert choose_reference(pos, "q1", 13) == choose_reference(pos, "q1", 13)
    assert len({choose_reference(pos, f"q{i}", 13) for i in range(50)}) > 3
    assert len({choose_reference(pos, "q1", s) for s in range(50)}) > 3
    with pytest.raises(ValueError, match="no positive"):
        choose_reference([], "q1", 13)


def test_sample_seeds_differ_per_pair_sample_and_attempt():
    pairs = [("q1", "d1"), ("q1", "d2"), ("q2", "d1"), ("q1d", "1")]
    seeds = {sample_seed("judge", 13, f"{q}\0{d}", i, a) for q, d in pairs for i in range(4) for a in range(3)}
    assert len(seeds) == 48
    assert sample_seed("judge", 13, "q1\0d1", 0, 0) != sample_seed("judge", 14, "q1\0d1", 0, 0)
    assert sample_seed("judge", 13, "q1\0d1", 0, 0) != sample_seed("generate", 13, "q1\0d1", 0, 0)


def test_seeds_and_cache_keys_are_those_of_earlier_releases():
    # Values computed by the judge before the generation loop moved to boostmdr.llm (commit 5e4dbca):
    # verdict caches made then are still hit.
    assert sample_seed("judge", 13, "q1\0d1", 0, 0) == 1728715331
    assert sample_seed("judge", 0, "7\x0012#3", 2, 1) == 1811200437
    key = cache_key("transformers", "local-sha256:ab", "prompt text", 0.7, 0.4, 32, 123)
    assert key == "d2bb897f694dc15b97347c65e2c7df9817032cc535cacd01aa967c01be10373f"


def test_cache_key_covers_everything_that_determines_a_generation():
    base = dict(backend="transformers", model_fingerprint="m", prompt="p", top_p=0.7, temperature=0.4, max_tokens=48, seed=1)
    k = cache_key(**base)
    assert cache_key(**base) == k
    for field, value in [
        ("backend", "http"), ("model_fingerprint", "m2"), ("prompt", "p "), ("top_p", 0.8),
        ("temperature", 0.6), ("max_tokens", 49), ("seed", 2),
    ]:
        assert cache_key(**{**base, field: value}) != k, field


# ------------------------------------------------------------------------- judging with a real LM


SETTINGS = JudgeSettings(max_new_tokens=6, retries=1, seed=5)


def _attempts(path):
    return [a for _, r in read_jsonl(path) for s in r["samples"] for a in s["attempts"]]


def test_verdicts_record_every_sample_and_the_provenance(toy, backend, tmp_path):
    data, _ = toy
    counts = run_verdicts(
        data["candidates"], data["train"], data["corpus"], "xx", backend, load_judge_template(PROMPT), SETTINGS,
        tmp_path / "v.jsonl", cache_path=tmp_path / "c.jsonl",
    )
    recs = [r for _, r in read_jsonl(tmp_path / "v.jsonl")]
    assert len(recs) == 6 * 4
    r = recs[0]
    assert set(r) >= {
        "qid", "docid", "rank", "score", "reference_docid", "samples", "verdict", "backend", "model",
        "template_sha256", "prompt_sha256", "prompt_tokens", "prefilled_tokens", "generated_tokens", "cached_generated_tokens",
    }
    assert r["backend"] == "transformers" and r["model"] == str(toy[1])
    assert [(s["top_p"], s["temperature"]) for s in r["samples"]] == parse_samples_spec(AUTHORS_SAMPLES)
    train = {rec["qid"]: rec for _, rec in read_jsonl(data["train"])}
    for rec in recs:
        assert rec["reference_docid"] in train[rec["qid"]]["positives"]
        assert rec["reference_docid"] == choose_reference(train[rec["qid"]]["positives"], rec["qid"], SETTINGS.seed)
        for s in rec["samples"]:
            # a random model rarely writes the format: unparsed attempts are retried once, kept raw
            assert 1 <= len(s["attempts"]) <= 1 + SETTINGS.retries
            assert all(isinstance(a["raw"], str) for a in s["attempts"])
            assert (s["score"] is None) == (not s["attempts"][-1]["parsed"])
        scores = [s["score"] for s in rec["samples"]]
        assert rec["verdict"] == majority_vote(scores)
    assert counts["generated"] == len(_attempts(tmp_path / "v.jsonl"))


def test_cache_hits_same_inputs_and_misses_changed_settings(toy, backend, tmp_path):
    data, _ = toy
    template = load_judge_template(PROMPT)
    cache = tmp_path / "cache" / "c.jsonl"
    args = (data["candidates"], data["train"], data["corpus"], "xx", backend)
    first = run_verdicts(*args, template, SETTINGS, tmp_path / "a.jsonl", cache_path=cache)
    assert first["cached"] == 0 and first["generated"] > 0
    n_rows = len(GenerationCache(cache))

    again = run_verdicts(*args, template, SETTINGS, tmp_path / "b.jsonl", cache_path=cache)
    assert again["generated"] == 0 and again["cached"] == first["generated"]
    # a rerun from the cache reports what the generations cost when they were made, not zero
    stats_a, stats_b = verdict_stats([tmp_path / "a.jsonl"], "xx"), verdict_stats([tmp_path / "b.jsonl"], "xx")
    assert stats_b["prompt_tokens"] == stats_a["prompt_tokens"] > 0
    assert stats_b["cached_generated_tokens"] == stats_a["generated_tokens"] > 0 == stats_b["generated_tokens"]
    a = [r for _, r in read_jsonl(tmp_path / "a.jsonl")]
    b = [r for _, r in read_jsonl(tmp_path / "b.jsonl")]
    strip = lambda recs: [  # noqa: E731
        (r["docid"], r["verdict"], [[x["raw"] for x in s["attempts"]] for s in r["samples"]]) for r in recs
    ]
    assert strip(a) == strip(b)

    # one sampling setting changed (the 4th sample's temperature): only that sample is generated again
    changed = JudgeSettings(samples=((0.7, 0.4), (0.8, 0.6), (0.9, 0.8), (0.8, 0.5)), max_new_tokens=6, retries=1, seed=5)
    c = run_verdicts(*args, template, changed, tmp_path / "c.jsonl", cache_path=cache)
    fourth = sum(len(r["samples"][3]["attempts"]) for r in [rec for _, rec in read_jsonl(tmp_path / "c.jsonl")])
    assert c["generated"] == fourth and c["cached"] > 0
    assert all(not x["cached"] for _, r in read_jsonl(tmp_path / "c.jsonl") for x in r["samples"][3]["attempts"])

    # another template text: everything misses
    other = PromptTemplate(template.text.replace("# Task Review:", "# Task review:"), PLACEHOLDERS)
    d = run_verdicts(*args, other, SETTINGS, tmp_path / "d.jsonl", cache_path=cache)
    assert d["cached"] == 0 and d["generated"] > 0
    assert len(GenerationCache(cache)) == n_rows + c["generated"] + d["generated"]

    # deeper candidate lists reuse what was judged: cut to depth 2, then the full depth
    e = run_verdicts(*args, template, JudgeSettings(max_new_tokens=6, retries=1, seed=5, depth=2), tmp_path / "e.jsonl", cache_path=cache)
    assert e["generated"] == 0


def _judge_cmd(data, model, out, cache, chunk=0, num_chunks=1, log=None):
    cmd = [
        sys.executable, "-m", "boostmdr.judge", "verdicts",
        "--candidates", str(data["candidates"]), "--train", str(data["train"]), "--corpus", str(data["corpus"]),
        "--lang", "xx", "--chunk", str(chunk), "--num-chunks", str(num_chunks),
        "--backend", "transformers", "--model", str(model), "--device", "cpu",
        "--prompt", str(PROMPT), "--max-new-tokens", "6", "--retries", "1", "--seed", "5",
        "--batch-size", "4", "--cache", str(cache), "--out", str(out), "--threads", "1",
    ]
    if log:
        cmd += ["--log", str(log)]
    return cmd


def _keys(cache: Path) -> list[str]:
    """The keys of the complete lines of one job's cache file."""
    if not cache.exists():
        return []
    keys = []
    for line in cache.read_bytes().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except ValueError:
            pass
    return keys


def _rows(cache: Path) -> int:
    return len(_keys(cache))


@pytest.mark.slow
def test_killed_judge_resumes_without_losing_finished_work(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge-kill")
    data = write_toy_data(root / "data", n_queries=12, n_candidates=6, seed=3)
    model = random_tiny_lm(root)
    cache, out = root / "cache" / "job.jsonl", root / "verdicts.jsonl"
    proc = subprocess.Popen(_judge_cmd(data, model, out, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while _rows(cache) < 40:
            assert proc.poll() is None, "the judge finished before it could be killed; give it more work"
            assert time.monotonic() < deadline, "the judge wrote nothing to its cache in time"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists()  # no complete-looking verdict file from a killed judge
    before = _rows(cache)
    keys_before = set(_keys(cache))

    subprocess.run(_judge_cmd(data, model, out, cache), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    attempts = _attempts(out)
    reused = sum(a["cached"] for a in attempts)
    generated = sum(not a["cached"] for a in attempts)
    # every generation finished before the kill is served from the cache, none is made again
    assert reused >= before > 0
    assert _rows(cache) == before + generated
    assert keys_before <= set(_keys(cache))
    assert len([1 for _ in read_jsonl(out)]) == 12 * 6


@pytest.mark.slow
def test_judge_jobs_write_their_own_cache_files_and_reuse_each_others(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge-two")
    data = write_toy_data(root / "data", n_queries=8, n_candidates=4, seed=4)
    model = random_tiny_lm(root)
    cache = root / "cache"
    procs = [
        subprocess.Popen(_judge_cmd(data, model, root / f"v{i}.jsonl", cache / f"chunk-{i}-of-2.jsonl", i, 2, root / f"{i}.log"))
        for i in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    generated = [sum(not a["cached"] for a in _attempts(root / f"v{i}.jsonl")) for i in range(2)]
    assert all(g > 0 for g in generated)
    assert [_rows(cache / f"chunk-{i}-of-2.jsonl") for i in range(2)] == generated  # each job wrote only its own
    qids = [{r["qid"] for _, r in read_jsonl(root / f"v{i}.jsonl")} for i in range(2)]
    assert qids[0].isdisjoint(qids[1]) and len(qids[0] | qids[1]) == 8
    # the same queries in one chunk (another chunking), as a third job: everything from the two files beside it
    subprocess.run(_judge_cmd(data, model, root / "w.jsonl", cache / "chunk-0-of-1.jsonl", 0, 1), check=True)
    assert all(a["cached"] for a in _attempts(root / "w.jsonl"))
    assert _rows(cache / "chunk-0-of-1.jsonl") == 0


def test_a_line_cut_short_by_a_kill_is_skipped_and_the_next_record_starts_a_new_line(tmp_path):
    cache = GenerationCache(tmp_path / "job.jsonl")
    cache.put_many([("k1", "one", 3, 1, "transformers", "m")])
    cache.close()
    with open(tmp_path / "job.jsonl", "ab") as fh:
        fh.write(b'{"key": "k2", "text": "tw')  # killed mid-write
    (tmp_path / "other.jsonl").write_text('{"key": "k3", "text": "three"}\n')
    reopened = GenerationCache(tmp_path / "job.jsonl")
    assert reopened.get_many(["k1", "k2", "k3"]) == {"k1": "one", "k3": "three"}
    assert reopened.skipped_lines == 1 and reopened.files_read == 2
    reopened.put_many([("k2", "two", 3, 1, "transformers", "m")])
    reopened.close()
    assert GenerationCache(tmp_path / "job.jsonl").get_many(["k1", "k2"]) == {"k1": "one", "k2": "two"}


def test_judging_until_the_pool_is_full_reads_what_the_top_up_reads(toy, backend, tmp_path):
    """Stage 2's judge (--fill-pool): each query's candidates in rank order until its stage-1 pool would hold N with
    kept verdicts. The verdicts it writes are those of judging every candidate (same samples, same seeds) for a
    prefix of each query's list, and the top-up builds the same final pools and statistics from either file."""
    from boostmdr.formats import Negative, NegativesRecord, read_run, read_train, read_verdicts, write_negatives
    from boostmdr.judge import FillTarget
    from boostmdr.topup import NewCandidate, top_up

    data, _ = toy
    settings = JudgeSettings(max_new_tokens=24, retries=0, seed=5, structured_output=True)  # every sample parses
    template = load_judge_template(PROMPT)
    run, train = read_run(data["candidates"]), read_train(data["train"])
    # stage-1 pools of 0 to 3 negatives (rel-0 negatives of the toy data) and N = 3: each query needs 0 to 3 more
    pool = [NegativesRecord(q, train[q].query, "xx", list(train[q].positives),
                            [Negative(d, source="stage1:x") for d in train[q].negatives[: i % 4]])
            for i, q in enumerate(sorted(run))]  # fmt: skip
    write_negatives(tmp_path / "pool.jsonl", pool)
    keep = parse_keep("0")
    full = tmp_path / "full.jsonl"
    run_verdicts(data["candidates"], data["train"], data["corpus"], "xx", backend, template, settings, full)
    fill = FillTarget.from_pool(tmp_path / "pool.jsonl", 3, keep)
    filled = tmp_path / "fill.jsonl"
    counts = run_verdicts(data["candidates"], data["train"], data["corpus"], "xx", backend, template, settings, filled,
                          fill=fill)  # fmt: skip
    every, some = read_verdicts([full]), read_verdicts([filled])
    assert {r["verdict"] for r in every.values()} >= {0, 2}  # the test means something: some kept, some not
    assert 0 < len(some) < len(every) and counts["fill_rounds"] >= 2, (len(some), len(every), counts["fill_rounds"])
    for key, rec in some.items():
        assert rec["verdict"] == every[key]["verdict"] and rec["samples"] == every[key]["samples"], key
    for q, hits in run.items():
        docids = [h.docid for h in hits]
        judged = [d for d in docids if (q, d) in some]
        assert judged == docids[: len(judged)]  # a prefix, in rank order
        kept = [d for d in judged if every[(q, d)]["verdict"] in keep]
        need = fill.need[q]
        # it stops as soon as the pool is full, or at the end of the list
        assert len(kept) == min(need, sum(every[(q, d)]["verdict"] in keep for d in docids))
        assert len(judged) == len(docids) or (need == 0 and not judged) or judged[-1] == kept[-1]
    candidates = {q: [NewCandidate(q, h.docid, r, h.score, f"{q}-g0", r) for r, h in enumerate(hits, 1)] for q, hits in run.items()}
    assert top_up(pool, candidates, 3, "stage2:x", keep, every) == top_up(pool, candidates, 3, "stage2:x", keep, some)
    assert sum(fill.need.values()) > 0


def test_cli_rejects_a_chunk_out_of_range(toy, tmp_path):
    from boostmdr.judge import main

    data, model = toy
    with pytest.raises(SystemExit) as exc:
        main(_judge_cmd(data, model, tmp_path / "v.jsonl", tmp_path / "c.jsonl", chunk=2, num_chunks=2)[3:])
    assert exc.value.code == 2


def test_cli_fill_pool_needs_its_pool_size_and_a_pointwise_judge(toy, tmp_path, capsys):
    from boostmdr.judge import main

    data, model = toy
    cmd = _judge_cmd(data, model, tmp_path / "v.jsonl", tmp_path / "c.jsonl")[3:]
    for extra, message in ((["--fill-pool", "pool.jsonl"], "--fill-pool and --pool-size go together"),
                           (["--fill-pool", "p", "--pool-size", "3", "--mode", "listwise"], "needs --mode pointwise")):  # fmt: skip
        with pytest.raises(SystemExit):
            main([*cmd, *extra])
        assert message in capsys.readouterr().err


def test_cli_passes_the_decoding_batch_to_the_transformers_backend():
    from boostmdr.judge import backend_settings, build_parser

    base = ["verdicts", "--candidates", "c", "--train", "t", "--corpus", "x", "--lang", "sw", "--backend",
            "transformers", "--model", "m", "--prompt", "p", "--out", "o"]
    assert backend_settings(build_parser().parse_args(base))["max_batch_rows"] == 64
    assert backend_settings(build_parser().parse_args([*base, "--max-batch-rows", "4"]))["max_batch_rows"] == 4


# ------------------------------------------------------------------------------------- pool, stats


def _verdict_file(path: Path, rows):
    from boostmdr.formats import write_jsonl

    write_jsonl(path, [{"qid": q, "docid": d, "verdict": v, "votes": {}} for q, d, v in rows])
    return path


def _pool_inputs(tmp_path):
    from boostmdr.formats import Hit, write_jsonl, write_run

    write_jsonl(tmp_path / "train.jsonl", [
        {"qid": "1", "query": "q one", "positives": ["p1"], "negatives": []},
        {"qid": "2", "query": "q two", "positives": ["p2"], "negatives": []},
        {"qid": "3", "query": "q three", "positives": ["p3"], "negatives": []},
    ])
    write_run(tmp_path / "fused.trec", {
        "1": [Hit("a", 4.0), Hit("b", 3.0), Hit("c", 2.0), Hit("d", 1.0)],
        "2": [Hit("e", 2.0), Hit("f", 1.0)],
    }, tag="fused")
    v1 = _verdict_file(tmp_path / "v1.jsonl", [("1", "a", 0), ("1", "b", 2), ("1", "c", 1), ("1", "d", None)])
    v2 = _verdict_file(tmp_path / "v2.jsonl", [("2", "e", 0), ("2", "f", 0)])
    return tmp_path / "fused.trec", tmp_path / "train.jsonl", [v1, v2]


def test_pool_keeps_verdict_zero_and_leaves_out_null_verdicts(tmp_path):
    cands, train, verdicts = _pool_inputs(tmp_path)
    recs = {r.qid: r for r in build_pool(cands, train, "xx", "stage1:toy", frozenset({0}), verdicts)}
    assert [n.docid for n in recs["1"].negatives] == ["a"]
    assert recs["1"].meta == {"candidates": 4, "removed": 2, "unjudged": 1}
    assert [n.docid for n in recs["2"].negatives] == ["e", "f"]
    assert recs["3"].negatives == []  # no candidates: kept with an empty list
    n = recs["1"].negatives[0]
    assert (n.rank, n.score, n.source, n.extra["verdict"]) == (1, 4.0, "stage1:toy", 0)


def test_pool_keep_zero_and_one_drops_only_twos(tmp_path):
    cands, train, verdicts = _pool_inputs(tmp_path)
    recs = {r.qid: r for r in build_pool(cands, train, "xx", "stage1:toy", frozenset({0, 1}), verdicts)}
    assert [(n.docid, n.rank) for n in recs["1"].negatives] == [("a", 1), ("c", 3)]


def test_pool_without_judge_keeps_every_candidate(tmp_path):
    from boostmdr.judge import main

    cands, train, _ = _pool_inputs(tmp_path)
    out = tmp_path / "pool.jsonl"
    assert main(["pool", "--candidates", str(cands), "--train", str(train), "--lang", "xx", "--no-judge",
                 "--source", "stage1:nojudge", "--out", str(out)]) == 0
    recs = {r.qid: r for r in read_negatives(out)}
    assert [n.docid for n in recs["1"].negatives] == ["a", "b", "c", "d"]
    assert recs["1"].negatives[0].extra == {"judged": False} and recs["1"].lang == "xx"


def test_pool_refuses_missing_verdicts(tmp_path):
    cands, train, verdicts = _pool_inputs(tmp_path)
    with pytest.raises(ValueError, match="2 candidates have no verdict"):
        build_pool(cands, train, "xx", "stage1:toy", frozenset({0}), verdicts[:1])


def test_stats_elimination_rate_precision_and_recall(tmp_path):
    cands, train, verdicts = _pool_inputs(tmp_path)
    truth = tmp_path / "truth.tsv"
    # truly relevant: 1/b (removed: TP), 2/e (kept: FN); 1/c removed but not relevant (FP)
    truth.write_text("1 Q0 p1 1\n1 Q0 b 1\n2 Q0 e 1\n1 Q0 a 0\n", encoding="utf-8")
    stats = verdict_stats(verdicts, "xx", frozenset({0}), truth)
    assert stats["candidates"] == 6 and stats["judged"] == 5 and stats["null_verdicts"] == 1
    assert stats["removed"] == 2 and stats["elimination_rate"] == pytest.approx(2 / 5)
    t = stats["truth"]
    assert (t["true_positives"], t["false_positives"], t["false_negatives"], t["true_negatives"]) == (1, 1, 1, 2)
    assert t["precision"] == pytest.approx(0.5) and t["recall"] == pytest.approx(0.5)
    assert t["false_negative_rate_among_candidates"] == pytest.approx(2 / 5)
    loose = verdict_stats(verdicts, "xx", frozenset({0, 1}))
    assert loose["removed"] == 1 and "truth" not in loose


def test_stats_cli_writes_json(tmp_path):
    from boostmdr.judge import main

    _, _, verdicts = _pool_inputs(tmp_path)
    out = tmp_path / "stats.json"
    assert main(["stats", "--verdicts", *map(str, verdicts), "--lang", "xx", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["elimination_rate"] == pytest.approx(2 / 5)
