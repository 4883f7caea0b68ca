"""LLM backends: the registry, the transformers backend's single prefill per prompt, exact prefix
reuse and decoding across prompts in padded micro-batches, vLLM's request grouping, and the HTTP
backend against a real `transformers serve` on loopback (retries, errors, and an API key that never
reaches a log or an output)."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from judge_fixtures import (
    _free_port,
    PROMPT,
    hide_second_positives,
    random_tiny_lm,
    trained_topic_judge,
    transformers_serve,
    write_toy_data,
)

from boostmdr.formats import read_jsonl
from boostmdr.judge import JudgeSettings, load_judge_template, majority_vote, run_verdicts
from boostmdr.llm import BACKENDS, BackendError, BackendUnavailable, GenerationRequest, SamplingSettings, get_backend
from boostmdr.llm.constraint import ChoiceTrie, Constraint
from boostmdr.llm.vllm_backend import assemble, flatten, request_params, sampling_kwargs, structured_outputs_kwargs



pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return random_tiny_lm(tmp_path_factory.mktemp("backends"))


@pytest.fixture(scope="module")
def tf_backend(model_dir):
    with get_backend("transformers", model=str(model_dir), device="cpu") as b:
        yield b


def _prompt(question: str, candidate: str = "ka mi to su lo", reference: str = "pe di ba zu") -> str:
    return load_judge_template(PROMPT).render(question=question, candidate=candidate, reference=reference)


# -------------------------------------------------------------------------------------------- registry


def test_registry_rejects_unknown_backend_listing_the_choices():
    with pytest.raises(ValueError, match=r"unknown LLM backend 'gpt'.*\['http', 'transformers', 'vllm'\]"):
        get_backend("gpt", model="x")
    assert sorted(BACKENDS) == ["http", "transformers", "vllm"]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_missing_names_what_to_install_and_never_falls_back():
    with pytest.raises(BackendUnavailable) as err:
        get_backend("vllm", model="x")
    msg = str(err.value)
    assert "'vllm' is not installed" in msg and "requirements/vllm.txt" in msg and "CUDA" in msg
    assert "usable in this environment: ['transformers', 'http']" in msg


def test_vllm_requests_flatten_with_siblings_adjacent_and_regroup_in_order():
    s = [SamplingSettings(0.4, 0.7, 8, 1), SamplingSettings(0.6, 0.8, 8, 2)]
    reqs = [GenerationRequest("p0", tuple(s)), GenerationRequest("p1", (s[1],))]
    prompts, settings, owners = flatten(reqs)
    assert prompts == ["p0", "p0", "p1"] and owners == [(0, 0), (0, 1), (1, 0)] and settings == [s[0], s[1], s[1]]
    assert sampling_kwargs(s[0]) == {"n": 1, "temperature": 0.4, "top_p": 0.7, "max_tokens": 8, "seed": 1}
    # vLLM may hand results back in its own order; owners put them back
    out = assemble(reqs, [owners[1], owners[2], owners[0]], [("b", 10, 8, 2), ("c", 7, 0, 3), ("a", 10, 0, 4)])
    assert [r.texts for r in out] == [["a", "b"], ["c"]]
    # prefix caching: the second sample of p0 prefilled only 2 of its 10 tokens
    assert (out[0].prompt_tokens, out[0].prefilled_tokens, out[0].generated_tokens) == (10, 12, 6)
    with pytest.raises(ValueError, match="outputs for"):
        assemble(reqs, owners, [("a", 1, 0, 1)])


def test_vllm_requests_carry_structured_outputs_per_constraint_kind():
    s = SamplingSettings(0.4, 0.7, 8, 1)
    choice = Constraint.choice(["yes", "no"])
    schema = {"type": "object", "properties": {"relevant": {"type": "array"}}, "required": ["relevant"]}
    reqs = [
        GenerationRequest("p0", (s, s), choice),
        GenerationRequest("p1", (s,), Constraint.regex(r"<relevant>[0-9, ]*</relevant>")),
        GenerationRequest("p2", (s,), Constraint.json_schema(schema)),
        GenerationRequest("p3", (s,)),
    ]
    params = request_params(reqs)
    assert [p.get("structured_outputs") for p in params] == [
        {"choice": ["yes", "no"]}, {"choice": ["yes", "no"]}, {"regex": r"<relevant>[0-9, ]*</relevant>"},
        {"json": schema}, None,
    ]
    assert {k: v for k, v in params[0].items() if k != "structured_outputs"} == sampling_kwargs(s)
    assert structured_outputs_kwargs(None) is None


def test_http_payload_sends_a_json_schema_as_response_format():
    from boostmdr.llm.http_backend import HTTPBackend

    b = HTTPBackend(model="m", base_url="http://127.0.0.1:9/v1", api_key_env="BOOSTMDR_UNSET_KEY")
    try:
        schema = {"type": "object", "properties": {"relevant": {"type": "array"}}}
        body = b.payload("hi", SamplingSettings(0.5, 0.9, 4, 7), Constraint.json_schema(schema))
        assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        assert "response_format" not in b.payload("hi", SamplingSettings(0.5, 0.9, 4, 7))
        with pytest.raises(BackendError, match=r"http backend cannot enforce a 'choice' constraint \(it enforces \['json'\]\)"):
            b.generate([GenerationRequest("hi", (SamplingSettings(),), Constraint.choice(["a"]))])
    finally:
        b.close()


def test_choice_trie_refuses_a_choice_that_is_a_prefix_of_another():
    trie = ChoiceTrie([[1, 2], [1, 3, 4]])
    assert sorted(trie.allowed(0)) == [1] and sorted(trie.allowed(trie.step(0, 1))) == [2, 3]
    assert trie.complete(trie.step(trie.step(0, 1), 2)) and trie.longest == 3
    with pytest.raises(ValueError, match="prefix of another"):
        ChoiceTrie([[1, 2], [1, 2, 3]])


# ------------------------------------------------------------------------------------ transformers


def test_transformers_choice_constraint_writes_only_whole_choices(tf_backend):
    choices = ['{"Information Accuracy": 2, "Information Completeness": 0}', "<relevant>1, 3</relevant>", "no"]
    samples = tuple(SamplingSettings(t, p, 40, seed) for seed, (t, p) in enumerate([(0.4, 0.7), (1.0, 1.0), (0.0, 1.0)] * 4))
    res = tf_backend.generate([GenerationRequest(_prompt("ka mi"), samples, Constraint.choice(choices))])
    assert len(res[0].texts) == 12 and set(res[0].texts) <= set(choices)
    # a choice longer than the token limit is refused before any work, naming the setting to raise
    with pytest.raises(BackendError, match=r"longest allowed answer is \d+ tokens but a sample may write only 2: raise"):
        tf_backend.generate([GenerationRequest(_prompt("ka"), (SamplingSettings(max_tokens=2),), Constraint.choice(choices))])
    with pytest.raises(BackendError, match=r"transformers backend cannot enforce a 'regex' constraint \(it enforces \['choice'\]\)"):
        tf_backend.generate([GenerationRequest("x", (SamplingSettings(),), Constraint.regex("a+"))])




def test_transformers_prefills_each_prompt_once_for_all_its_samples(model_dir):
    with get_backend("transformers", model=str(model_dir), device="cpu", share_prefix=False) as b:
        prompt = _prompt("wo ra ne")
        n_tokens = len(b.encode(prompt))
        samples = tuple(SamplingSettings(t, p, 6, seed) for seed, (p, t) in enumerate([(0.7, 0.4), (0.8, 0.6), (0.9, 0.8), (0.8, 0.4)]))
        res = b.generate([GenerationRequest(prompt, samples)])[0]
        assert len(res.texts) == 4
        assert b.stats["prefill_calls"] == 1
        assert res.prefilled_tokens == res.prompt_tokens == b.stats["prefilled_tokens"] == n_tokens
        # the naive way: four independent calls, four prefills
        for s in samples:
            b.generate([GenerationRequest(prompt, (s,))])
        assert b.stats["prefill_calls"] == 5 and b.stats["prefilled_tokens"] == 5 * n_tokens


def test_transformers_prefix_reuse_is_exact_and_counts_only_new_tokens(model_dir, tf_backend):
    greedy = (SamplingSettings(0.0, 1.0, 8, 0),)
    a, b = _prompt("wo ra ne", "ka mi"), _prompt("wo ra ne", "su lo pe")
    with get_backend("transformers", model=str(model_dir), device="cpu", share_prefix=False) as fresh:
        expect = [fresh.generate([GenerationRequest(p, greedy)])[0].texts for p in (a, b)]
    tf_backend._prefix = None
    first, second = tf_backend.generate([GenerationRequest(a, greedy), GenerationRequest(b, greedy)])
    assert [first.texts, second.texts] == expect
    shared = second.extra["reused_prefix_tokens"]
    assert shared > 250  # the template header and the question
    assert second.prefilled_tokens == second.prompt_tokens - shared


def test_transformers_samples_are_reproducible_from_their_seeds(tf_backend):
    samples = tuple(SamplingSettings(1.0, 0.9, 8, seed) for seed in (1, 2, 1))
    r1 = tf_backend.generate([GenerationRequest(_prompt("gi ha"), samples)])[0]
    r2 = tf_backend.generate([GenerationRequest(_prompt("gi ha"), samples)])[0]
    assert r1.texts == r2.texts
    assert r1.texts[0] == r1.texts[2]  # same seed, same sample, whatever its neighbours


def test_transformers_names_the_context_limit(tf_backend):
    long = _prompt(" ".join(["ka"] * 1200))
    with pytest.raises(BackendError, match=r"max_position_embeddings=1024.*--max-passage-words"):
        tf_backend.generate([GenerationRequest(long, (SamplingSettings(),))])


@pytest.fixture(scope="module")
def one_at_a_time(model_dir):
    """The reference for batched decoding: max_batch_rows 1 decodes one prompt at a time."""
    with get_backend("transformers", model=str(model_dir), device="cpu", max_batch_rows=1) as b:
        yield b


def _mixed_requests(max_tokens: int = 12) -> list[GenerationRequest]:
    """Prompts of very different lengths (2 to 350 candidate words), two questions, greedy and seeded
    samples; in a batch the shared prefix is the template header only. (The random test model decodes
    the same token again and again greedily: its seeded samples are what tells decoders apart.)"""
    candidates = ["ka mi", " ".join(["to su lo pe di"] * 70), "ba zu fo gi ha we yo", " ".join(["ne ra"] * 20)]
    samples = lambda i: (  # noqa: E731
        SamplingSettings(0.0, 1.0, max_tokens, 0),
        SamplingSettings(0.7, 0.8, max_tokens, 10 * i + 1),
        SamplingSettings(1.0, 1.0, max_tokens, 10 * i + 2),
    )
    prompts = [_prompt(q, c) for q in ("wo ra ne", "gi ha yo we") for c in candidates]
    return [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]


def test_transformers_batched_decoding_gives_the_texts_of_one_prompt_at_a_time(model_dir, one_at_a_time):
    reqs = _mixed_requests()
    lengths = [len(one_at_a_time.encode(r.prompt)) for r in reqs]
    assert max(lengths) - min(lengths) > 300  # very different lengths: much padding
    expect = [r.texts for r in one_at_a_time.generate(reqs)]
    with get_backend("transformers", model=str(model_dir), device="cpu", max_batch_rows=64) as b:
        got = b.generate(reqs)
        assert b.stats["prefill_calls"] == 2  # one micro-batch: the shared header, then all suffixes
        assert b.stats["padding_tokens"] == sum(r.extra["padding_tokens"] for r in got) > 200
    # greedy and seeded samples alike (exact on this model; batching may change the last float bits only)
    assert [r.texts for r in got] == expect


def test_transformers_padded_rows_get_the_logits_they_get_alone(model_dir):
    """The 2-D mask with holes between the shared prefix and a row's suffix is honoured by the model
    (transformers turns it into a 4-D mask) and the position ids make every row compute what it
    computes alone: next-token logits agree within 1e-4."""
    import torch

    from boostmdr.llm.transformers_backend import PAD_ID

    with get_backend("transformers", model=str(model_dir), device="cpu", share_prefix=False) as b:
        prompts = [b.encode(r.prompt) for r in _mixed_requests()]
        with torch.inference_mode():
            batched = b._prefill(prompts)
            alone = torch.cat([b._prefill([ids]).logits for ids in prompts])
            mask = batched.attention_mask
            # holes between the shared prefix and the suffix of every row but the longest
            assert mask.eq(0).any(dim=1).tolist() == [pad > 0 for pad in batched.padding] and max(batched.padding) > 300
            assert mask[:, : batched.reused[1]].all() and mask[:, -1].all()
            assert (batched.logits - alone).abs().max() < 1e-4
            # without hiding the padding a padded row's logits move far: the mask is what makes them agree
            shared = batched.reused[1]
            pad = batched.padding[0]
            unmasked = b.model(input_ids=torch.tensor([prompts[0][:shared] + [PAD_ID] * pad + prompts[0][shared:]]))
            assert (unmasked.logits[0, -1] - alone[0]).abs().max() > 1e-3


def test_transformers_batched_accounting_charges_the_shared_prefix_once(model_dir):
    reqs = _mixed_requests(max_tokens=2)[:3]
    with get_backend("transformers", model=str(model_dir), device="cpu", min_shared_prefix=8) as b:
        lengths = [len(b.encode(r.prompt)) for r in reqs]
        first = b.generate(reqs)
        shared = first[1].extra["reused_prefix_tokens"]
        assert shared > 200 and first[2].extra["reused_prefix_tokens"] == shared
        assert [r.prompt_tokens for r in first] == lengths
        # the first request pays for the shared prefix, the others only for their suffixes
        assert [r.prefilled_tokens for r in first] == [lengths[0], lengths[1] - shared, lengths[2] - shared]
        assert first[0].extra["reused_prefix_tokens"] == 0
        assert b.stats["prefilled_tokens"] == sum(r.prefilled_tokens for r in first)
        assert b.stats["reused_prefix_tokens"] == 2 * shared
        # the kept prefix cache: the same prompts again prefill no shared prefix at all, in one pass
        calls = b.stats["prefill_calls"]
        again = b.generate(reqs)
        assert b.stats["prefill_calls"] == calls + 1
        assert [r.prefilled_tokens for r in again] == [n - shared for n in lengths]
        assert [r.texts for r in again] == [r.texts for r in first]


def test_transformers_rows_that_end_early_leave_the_batch_without_disturbing_the_others(
    model_dir, one_at_a_time, monkeypatch
):
    """Make the token that the random test model decodes greedily the end-of-sequence token: every
    greedy sample ends at its first token and its row leaves the batch (request 1 has only that sample,
    so it is done at once), the sampled rows around them run on, and every text is still the one
    decoded one prompt at a time."""
    import torch

    reqs = _mixed_requests(max_tokens=10)
    reqs[1] = GenerationRequest(reqs[1].prompt, reqs[1].samples[:1])
    with get_backend("transformers", model=str(model_dir), device="cpu", max_batch_rows=64) as b:
        with torch.inference_mode():
            stop = int(b.model(input_ids=torch.tensor([b.encode(reqs[0].prompt)])).logits[0, -1].argmax())
        for backend in (b, one_at_a_time):
            monkeypatch.setattr(backend, "eos_ids", {stop})
        got = dict(b.iter_generate(reqs))
        assert b.stats["decode_calls"] == 9  # some sampled rows ran to their limit of 10 tokens
    assert [got[i].texts for i in range(len(reqs))] == [r.texts for r in one_at_a_time.generate(reqs)]
    assert next(iter(got)) == 1 and got[1].texts == [""] and got[1].generated_tokens == 0
    assert all(got[i].texts[0] == "" and got[i].generated_tokens > 0 for i in got if i != 1)


def test_transformers_yields_each_request_once_as_soon_as_its_samples_are_done(model_dir):
    import torch

    base = _mixed_requests(max_tokens=6)[:6]
    reqs = list(base)
    reqs[2] = GenerationRequest(base[2].prompt, (SamplingSettings(0.0, 1.0, 1, 0),))  # one token only
    reqs[5] = GenerationRequest(base[5].prompt, base[5].samples * 2 + base[5].samples[:1])  # 7 samples
    with get_backend("transformers", model=str(model_dir), device="cpu", max_batch_rows=7) as b:
        prompts = [b.encode(r.prompt) for r in reqs]
        # consecutive requests up to 7 rows (samples); the 7-sample request fills a micro-batch alone
        assert list(b._micro_batches(reqs, prompts)) == [[0, 1, 2], [3, 4], [5]]
        order = []
        for i, res in b.iter_generate(reqs):
            # the backend's inference mode does not leak into the caller's code between results
            assert not torch.is_inference_mode_enabled()
            if not order:  # the one-token request comes back before the first decoding step
                assert i == 2 and b.stats["decode_calls"] == 0
            assert len(res.texts) == len(reqs[i].samples)
            order.append(i)
        assert sorted(order[:3]) == [0, 1, 2] and sorted(order[3:5]) == [3, 4] and order[5:] == [5]
        # max_batch_rows at most a request's samples: one prompt at a time
        b.max_batch_rows = 3
        assert list(b._micro_batches(reqs, prompts)) == [[i] for i in range(6)]
        # only prompts that share their first token, and have more than one token, are batched
        b.max_batch_rows = 64
        three = reqs[:3]
        assert list(b._micro_batches(three, [[1, 5, 6], [2, 5, 6], [2, 7]])) == [[0], [1, 2]]
        assert list(b._micro_batches(three, [[1], [1, 2], [1, 3]])) == [[0], [1, 2]]


# -------------------------------------------------------------------------------------------- http


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`transformers serve` on 127.0.0.1 with the tiny judge-fine-tuned model, always shut down."""
    model_dir, held = trained_topic_judge(tmp_path_factory.mktemp("served-model"))
    with transformers_serve(model_dir, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, str(model_dir), held


@pytest.mark.slow
def test_http_backend_generates_against_transformers_serve(served):
    url, model, _ = served
    with get_backend("http", model=model, base_url=url, api_key_env="BOOSTMDR_UNSET_KEY", concurrency=2) as b:
        samples = (SamplingSettings(0.4, 0.7, 6, 1), SamplingSettings(0.8, 0.9, 6, 2))
        res = b.generate([GenerationRequest(_prompt("ka mi"), samples), GenerationRequest(_prompt("to su"), samples[:1])])
    assert [len(r.texts) for r in res] == [2, 1]
    assert all(isinstance(t, str) for r in res for t in r.texts)
    # one HTTP request per sample: every sample paid its own prefill
    assert res[0].prefilled_tokens == 2 * res[0].prompt_tokens > 0
    assert 0 < res[0].generated_tokens <= 12


@pytest.mark.slow
def test_http_client_errors_fail_at_once_with_the_servers_message(served):
    url, _, _ = served
    with get_backend("http", model="not-the-served-model", base_url=url, max_retries=3, backoff=0.01) as b:
        with pytest.raises(BackendError, match=r"HTTP 400.*pinned") as err:
            b.generate([GenerationRequest("hello", (SamplingSettings(max_tokens=2),))])
        assert b.retries_done == 0
    assert "--base-url" in str(err.value)


def test_http_connection_errors_are_retried_with_backoff_then_reported():
    port = _free_port()  # nothing listens there
    with get_backend("http", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff=0.01, timeout=2) as b:
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="failed after 3 attempts: ConnectError"):
            b.generate([GenerationRequest("hello", (SamplingSettings(max_tokens=2),))])
        assert b.retries_done == 2 and time.monotonic() - t0 < 10


@pytest.mark.slow
def test_judge_over_http_never_writes_the_api_key(served, tmp_path):
    url, model, _ = served
    data = write_toy_data(tmp_path / "data", n_queries=2, n_candidates=2)
    secret = "sk-boostmdr-test-5f1c9a77e2"
    env = {**os.environ, "BOOSTMDR_TEST_KEY": secret, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out, log, cache = tmp_path / "v.jsonl", tmp_path / "judge.log", tmp_path / "cache.jsonl"
    proc = subprocess.run(
        [
            sys.executable, "-m", "boostmdr.judge", "verdicts",
            "--candidates", str(data["candidates"]), "--train", str(data["train"]), "--corpus", str(data["corpus"]),
            "--lang", "xx", "--backend", "http", "--model", model, "--base-url", url,
            "--api-key-env", "BOOSTMDR_TEST_KEY", "--concurrency", "2", "--prompt", str(PROMPT),
            "--max-new-tokens", "6", "--retries", "0", "--cache", str(cache), "--out", str(out), "--log", str(log),
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = out.read_text()
    assert recs.count('"backend": "http"') == 4  # 2 queries x 2 candidates judged
    assert "'api_key_set': True" in log.read_text()  # the key was read and used...
    dump = cache.read_text()
    assert dump.count('"key"') >= 4
    for text in (recs, log.read_text(), proc.stdout, proc.stderr, dump):  # ...and written nowhere
        assert secret not in text
        assert secret[8:] not in text


@pytest.mark.slow
def test_listwise_judge_over_http_against_transformers_serve(served, tmp_path):
    from boostmdr.listwise import load_listwise_template

    url, model, held = served
    data = hide_second_positives(held, tmp_path / "data", n_queries=3)
    listwise = Path(__file__).resolve().parents[1] / "config/prompts/judge_listwise.txt"
    settings = JudgeSettings(samples=((0.9, 0.7), (0.8, 0.4)), max_new_tokens=16, retries=1, mode="listwise", window=2)
    with get_backend("http", model=model, base_url=url, api_key_env="BOOSTMDR_UNSET_KEY", concurrency=2) as b:
        counts = run_verdicts(
            data["candidates"], data["train"], data["corpus"], "xx", b, load_listwise_template(listwise), settings,
            tmp_path / "v.jsonl", cache_path=tmp_path / "c.jsonl",
        )
    recs = [r for _, r in read_jsonl(tmp_path / "v.jsonl")]
    # 3 queries x 3 candidates, window 2 -> windows of 2 + 1: 6 prompts x 2 samples, one HTTP call per sample
    assert len(recs) == 9 and counts["generated"] >= 6 * 2 and counts["prompt_tokens"] > 0
    assert sorted((r["window"]["size"], r["window"]["position"]) for r in recs) == sorted([(2, 1), (2, 2), (1, 1)] * 3)
    for r in recs:
        assert r["backend"] == "http" and r["verdict"] == majority_vote([s["score"] for s in r["samples"]])
        # the judge was never fine-tuned on the listwise format: whatever it wrote is parsed strictly or not at all
        for s in r["samples"]:
            assert (s["score"] is None) == (s["listed"] is None)


@pytest.mark.slow
def test_transformers_serve_refuses_response_format_on_completions(served):
    # What the local server does with OpenAI structured output (measured, transformers 5.x): /v1/completions
    # rejects the field (HTTP 422), so structured output cannot be used against it; vLLM's server honours it.
    url, model, _ = served
    with get_backend("http", model=model, base_url=url, api_key_env="BOOSTMDR_UNSET_KEY", max_retries=0) as b:
        with pytest.raises(BackendError, match=r"HTTP 422.*response_format"):
            b.generate([GenerationRequest(_prompt("ka mi"), (SamplingSettings(max_tokens=4),),
                                          Constraint.json_schema({"type": "object"}))])


@pytest.mark.slow
def test_judge_verdicts_over_http_match_the_judge_protocol(served, tmp_path):
    url, model, held = served
    data = hide_second_positives(held, tmp_path / "data", n_queries=3)
    with get_backend("http", model=model, base_url=url, api_key_env="BOOSTMDR_UNSET_KEY", concurrency=2) as b:
        counts = run_verdicts(
            data["candidates"], data["train"], data["corpus"], "xx", b, load_judge_template(PROMPT),
            JudgeSettings(max_new_tokens=24, retries=1), tmp_path / "v.jsonl", cache_path=tmp_path / "c.jsonl",
        )
    assert counts["generated"] >= 3 * 3 * 4 and counts["prefilled_tokens"] > 0
    recs = [r for _, r in read_jsonl(tmp_path / "v.jsonl")]
    assert len(recs) == 9
    # the fine-tuned tiny judge answers in the prompt's format through the server too
    assert sum(r["verdict"] is not None for r in recs) >= 8
    for r in recs:
        assert r["verdict"] == majority_vote([s["score"] for s in r["samples"]])


def test_transformers_eager_attention_is_a_setting_that_gives_the_default_texts(model_dir, one_at_a_time):
    """``attn_implementation: eager`` (what makes sampling on CUDA repeat bit for bit, README "GPU check")
    reaches the model from the command line, and on this model writes what the default SDPA writes."""
    import argparse

    from boostmdr.llm.options import add_backend_arguments, backend_settings

    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    base = ["--backend", "transformers", "--model", str(model_dir), "--device", "cpu"]
    assert backend_settings(parser.parse_args(base))["attn_implementation"] is None
    settings = backend_settings(parser.parse_args([*base, "--attn-implementation", "eager"]))
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--attn-implementation", "flash"])
    reqs = _mixed_requests()
    with get_backend("transformers", **settings) as b:
        assert b.describe()["attn_implementation"] == "eager" != one_at_a_time.describe()["attn_implementation"]
        assert [r.texts for r in b.generate(reqs)] == [r.texts for r in one_at_a_time.generate(reqs)]


def test_transformers_drafts_from_finished_samples_change_no_sample(model_dir):
    """Drafts (the next tokens of a finished sample that a row's tokens begin) are verified by sampling each
    position with the row's own generator: every text is the one token-by-token decoding writes, with the
    choice constraint too, in fewer forward passes. Two requests per micro-batch: the later ones draft from
    the samples of the earlier ones. The samples nearly agree (greedy ones, and seeded ones at low
    temperatures), so drafts are accepted wholly, in part, and rejected."""
    choices = ['{"Information Accuracy": 2, "Information Completeness": 0}', '{"Information Accuracy": 0, "Information Completeness": 0}', "no"]
    temperatures = [0.0, 0.3, 0.3, 0.0, 0.8, 1.0]
    reqs = [
        GenerationRequest(
            _prompt(q, c),
            tuple(SamplingSettings(t, 0.9, 16, 100 * i + k) for k, t in enumerate(temperatures)),
            Constraint.choice(choices) if i % 3 == 2 else None,
        )
        for i, (q, c) in enumerate([(q, c) for q in ("wo ra ne", "gi ha yo") for c in ("ka mi", "to su lo pe", "ba zu")])
    ]
    with (
        get_backend("transformers", model=str(model_dir), device="cpu", max_batch_rows=12, draft_tokens=0) as plain,
        get_backend("transformers", model=str(model_dir), device="cpu", max_batch_rows=12, draft_tokens=16) as drafting,
    ):
        expect = plain.generate(reqs)
        got = drafting.generate(reqs)
        assert [r.texts for r in got] == [r.texts for r in expect]
        assert all(set(r.texts) <= set(choices) for r in got[2::3])
        assert [r.generated_tokens for r in got] == [r.generated_tokens for r in expect]
        assert plain.stats["drafted_tokens"] == 0
        drafted, accepted = drafting.stats["drafted_tokens"], drafting.stats["accepted_draft_tokens"]
        assert 0 < accepted < drafted, (accepted, drafted)
        # greedy samples of a second prompt (its own micro-batch) take the first prompt's as their draft, wholly
        # accepted: one forward pass instead of 15 decoding steps
        greedy = [GenerationRequest(_prompt(q), (SamplingSettings(0.0, 1.0, 16, 0),) * 12) for q in ("lo pe", "zu fo")]
        drafting.close()  # forgets the finished samples (and the prefix cache)
        calls = [b.stats["decode_calls"] for b in (plain, drafting)]
        assert [r.texts for r in drafting.generate(greedy)] == [r.texts for r in plain.generate(greedy)]
        assert plain.stats["decode_calls"] - calls[0] == 2 * 15
        assert plain.stats["decode_slots"] == plain.stats["generated_tokens"] - sum(  # one fed token per row and step
            len(r.samples) for r in reqs + greedy)
        assert drafting.stats["decode_calls"] - calls[1] == 15 + 1
        assert drafting.describe()["draft_tokens"] == 16
    with pytest.raises(ValueError, match="draft_tokens must be >= 0, got -1"):
        get_backend("transformers", model=str(model_dir), device="cpu", draft_tokens=-1)


def test_the_growing_cache_layer_holds_what_concatenation_holds():
    """The transformers backend's cache layer (spare capacity instead of torch.cat at every step) against
    transformers' own DynamicLayer through prefill, decoding steps, a crop, a deep copy, and the batch
    operations the backend uses (repeat for samples, select when rows finish)."""
    import torch
    from transformers.cache_utils import DynamicLayer

    from boostmdr.llm.transformers_backend import GROW_TOKENS, _growing_layer

    torch.manual_seed(0)
    ours, ref = _growing_layer()(), DynamicLayer()

    def step(n: int, batch: int) -> None:
        k, v = torch.randn(batch, 2, n, 4), torch.randn(batch, 2, n, 4)
        got, want = ours.update(k, v), ref.update(k, v)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        assert ours.get_seq_length() == ref.get_seq_length()

    step(5, 1)  # prefill
    step(3, 1)
    ours.batch_repeat_interleave(3), ref.batch_repeat_interleave(3)
    for _ in range(GROW_TOKENS + 10):  # past the first spare capacity
        step(1, 3)
    buffer = ours.spare[0]
    ours.crop(-4), ref.crop(-4)
    step(2, 3)
    assert ours.spare[0] is buffer  # a crop keeps the buffers: the new tokens overwrite the cropped ones
    copied = copy.deepcopy(ours)
    samples = torch.tensor([0, 0, 1, 2, 2, 2])  # rows repeated for their samples: new buffers, same capacity
    ours.batch_select_indices(samples), ref.batch_select_indices(samples)
    assert ours.spare[0].shape[2] == buffer.shape[2] and ours.spare[0].data_ptr() != buffer.data_ptr()
    step(1, 6)
    rows = torch.tensor([5, 0])  # a reordering: the whole buffers are copied
    ours.batch_select_indices(rows), ref.batch_select_indices(rows)
    step(1, 2)
    assert torch.equal(copied.keys[[2, 0]], ours.keys[:, :, :-2])  # the copy kept its own tensors
    ours.batch_repeat_interleave(4), ref.batch_repeat_interleave(4)
    step(1, 8)
    buffer = ours.spare[0]
    # rows 1, 2 and 6 leave: rows 3-5 move up two (in blocks of two, a block never over its source), 7 three
    stay = torch.tensor([0, 3, 4, 5, 7])
    ours.batch_select_indices(stay), ref.batch_select_indices(stay)
    assert ours.spare[0].data_ptr() == buffer.data_ptr()  # compacted within its buffers, no new one
    for _ in range(3):
        step(1, 5)


def test_compaction_runs_move_the_rows_after_each_gap_and_refuse_other_selections():
    from boostmdr.llm.transformers_backend import _compaction_runs, _repeat_runs

    assert _repeat_runs([0, 0, 1, 2, 2, 2]) == [(0, 0, 2), (1, 2, 1), (2, 3, 3)]
    assert _repeat_runs([]) == []

    assert _compaction_runs([0, 1, 2], 3) == []
    assert _compaction_runs([], 3) == []
    assert _compaction_runs([0, 2, 3, 5], 6) == [(1, 2, 2), (3, 5, 1)]
    assert _compaction_runs([1, 2, 4], 5) == [(0, 1, 2), (2, 4, 1)]
    for selection in ([2, 0], [0, 0, 1], [1, 1], [0, 3], [-1, 0]):  # reordered, repeated, out of range
        assert _compaction_runs(selection, 3) is None


def test_transformers_skips_all_zero_mlps_with_the_same_logits_and_texts(model_dir, tmp_path, one_at_a_time):
    """A decoder layer's MLP whose weights are all zero (the demo judge's circuit layers) adds an exact 0, so the
    backend does not compute it: the logits are bit for bit those of the model as saved, and so are the texts. A
    model without such a block (the random tiny LM) keeps every MLP."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    zeroed = tmp_path / "zero-mlp-lm"
    shutil.copytree(model_dir, zeroed)
    model = AutoModelForCausalLM.from_pretrained(zeroed)
    with torch.no_grad():
        for p in model.model.layers[0].mlp.parameters():
            p.zero_()
    model.save_pretrained(zeroed)
    assert "skipped_zero_mlps" not in one_at_a_time.describe()
    ids = AutoTokenizer.from_pretrained(zeroed)(_prompt("wo ra ne"), return_tensors="pt")["input_ids"]
    saved = AutoModelForCausalLM.from_pretrained(zeroed).eval()
    with get_backend("transformers", model=str(zeroed), device="cpu", max_batch_rows=4) as b:
        assert b.describe()["skipped_zero_mlps"] == 1
        assert type(b.model.model.layers[0].mlp).__name__ == "ZeroMLP"
        assert type(b.model.model.layers[1].mlp).__name__ != "ZeroMLP"
        with torch.no_grad():
            assert torch.equal(b.model(input_ids=ids).logits, saved(input_ids=ids).logits)
        reqs = _mixed_requests()
        texts = [r.texts for r in b.generate(reqs)]
    from boostmdr.llm.transformers_backend import skip_zero_mlps

    # the plain model, every MLP computed, writes the same samples
    with get_backend("transformers", model=str(zeroed), device="cpu", max_batch_rows=4) as plain:
        plain.model.model.layers[0].mlp = saved.model.layers[0].mlp
        assert not any(type(layer.mlp).__name__ == "ZeroMLP" for layer in plain.model.model.layers)
        assert [r.texts for r in plain.generate(reqs)] == texts
        # a trainable all-zero block is kept when only frozen ones may go (the tiny judge's fine-tuning)
        assert skip_zero_mlps(plain.model, frozen_only=True) == []
