"""The generic generation loop of boostmdr.llm.runner on a real (tiny, random) transformers model: the parse
function decides what is retried, every attempt gets its own seed, the cache serves a rerun, and a prompt
template takes its placeholder names from the caller."""

from __future__ import annotations

import pytest
from judge_fixtures import random_tiny_lm

from boostmdr.llm import get_backend
from boostmdr.llm.cache import GenerationCache
from boostmdr.llm.prompt import PromptTemplate, TemplateError
from boostmdr.llm.runner import GenerationRunner, Item, RunnerSettings, sample_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    model = random_tiny_lm(tmp_path_factory.mktemp("runner"))
    with get_backend("transformers", model=str(model), device="cpu") as b:
        yield b


def _items():
    return [Item.make(f"k{i}", f"ka mi to ra {i} ne su", [(0.9, 0.8), (0.9, 1.0)]) for i in range(3)]


def test_unparsed_samples_are_retried_with_new_seeds_and_every_attempt_is_recorded(backend):
    settings = RunnerSettings(max_new_tokens=4, retries=2, seed=5, namespace="test", batch_size=2)
    items = _items()
    counts = GenerationRunner(backend, settings, parse=lambda text: None).run(items)
    assert counts["generated"] == 3 * 2 * 3  # items x samples x attempts
    assert counts["unparsed_samples"] == 6
    for item in items:
        for i, sample in enumerate(item.samples):
            assert [a["seed"] for a in sample.attempts] == [sample_seed("test", 5, item.key, i, a) for a in range(3)]
            assert sample.parsed is None and not any(a["parsed"] for a in sample.attempts)
        assert item.generated_tokens > 0 and item.prefilled_tokens > 0


def test_a_parsed_sample_is_not_retried(backend):
    settings = RunnerSettings(max_new_tokens=4, retries=3, seed=5, namespace="test")
    items = _items()
    counts = GenerationRunner(backend, settings, parse=lambda text: text).run(items)
    assert counts["generated"] == 6 and counts["unparsed_samples"] == 0
    assert all(len(s.attempts) == 1 and s.parsed == s.attempts[0]["raw"] for it in items for s in it.samples)


def test_a_rerun_takes_every_sample_from_the_cache_with_the_same_texts(backend, tmp_path):
    settings = RunnerSettings(max_new_tokens=5, retries=0, seed=1, namespace="test")
    cache = GenerationCache(tmp_path / "cache.jsonl")
    first, second = _items(), _items()
    c1 = GenerationRunner(backend, settings, parse=str, cache=cache).run(first)
    c2 = GenerationRunner(backend, settings, parse=str, cache=cache).run(second)
    assert (c1["generated"], c1["cached"]) == (6, 0)
    assert (c2["generated"], c2["cached"]) == (0, 6)
    assert [s.parsed for it in second for s in it.samples] == [s.parsed for it in first for s in it.samples]
    assert all(a["cached"] for it in second for s in it.samples for a in s.attempts)
    other = RunnerSettings(max_new_tokens=5, retries=0, seed=2, namespace="test")
    assert GenerationRunner(backend, other, parse=str, cache=cache).run(_items())["generated"] == 6


def test_template_placeholders_come_from_the_caller():
    t = PromptTemplate("Summarise in {language}: {passage}\nSummary:", ("passage", "language"), "summary.txt")
    assert t.render(passage="a {language} b", language="sw") == "Summarise in sw: a {language} b\nSummary:"
    with pytest.raises(TemplateError, match=r"summary.txt: prompt template lacks placeholder\(s\) \{query\}"):
        PromptTemplate("Summarise: {passage}", ("passage", "query"), "summary.txt")


def test_a_constraint_changes_the_cache_key_and_its_absence_keeps_the_old_one():
    from boostmdr.llm.cache import cache_key
    from boostmdr.llm.constraint import Constraint

    args = ("transformers", "local-sha256:ab", "prompt text", 0.7, 0.4, 32, 123)
    assert cache_key(*args) == cache_key(*args, None) == "d2bb897f694dc15b97347c65e2c7df9817032cc535cacd01aa967c01be10373f"
    keys = {cache_key(*args, c.key()) for c in (Constraint.choice(["a", "b"]), Constraint.choice(["a"]),
                                              Constraint.regex("a"), Constraint.json_schema({"type": "object"}))}
    assert len(keys) == 4 and cache_key(*args) not in keys


def test_structured_items_are_generated_under_their_constraint_and_cached_apart(backend, tmp_path):
    from boostmdr.llm.cache import GenerationCache
    from boostmdr.llm.constraint import Constraint

    settings = RunnerSettings(max_new_tokens=8, retries=0, seed=5, namespace="test", batch_size=2)
    choices = ["ka mi", "to ra ne"]
    cache = GenerationCache(tmp_path / "c.jsonl")
    free = [Item.make("k", "ka mi to ra 1 ne su", [(0.9, 1.0)])]
    forced = [Item.make("k", "ka mi to ra 1 ne su", [(0.9, 1.0)], Constraint.choice(choices))]
    GenerationRunner(backend, settings, parse=lambda t: t, cache=cache).run(free)
    counts = GenerationRunner(backend, settings, parse=lambda t: t if t in choices else None, cache=cache).run(forced)
    assert counts["generated"] == 1 and counts["cached"] == 0  # same prompt and seed, other constraint: not a hit
    assert forced[0].samples[0].parsed in choices and counts["unparsed_samples"] == 0
