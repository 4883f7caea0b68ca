"""Stage-3 batches and weights on hand-built query sets: one language per batch, topics dealt so each batch is as
diverse as the data allows, the remainder and small-language rules, determinism, the shuffled mode equal to the
trainer's sampler, the weights' closed forms, the statistics, and the manifest written by the CLI."""

from __future__ import annotations

from collections import Counter

import pytest

from boostmdr import batching
from boostmdr.batching import (
    BatchingError,
    BatchingSettings,
    Item,
    batch_statistics,
    category_weights,
    epoch_batches,
    manifest_steps,
    query_weight,
)
from boostmdr.formats import FormatError, TopicRecord, read_json, read_manifest, read_negatives, write_topic_labels
from boostmdr.sampler import ShuffledBatchSampler

from train_fixtures import make_toy_data

BOTH = BatchingSettings(same_language=True, topic_balance=True, weights="none")
SAME = BatchingSettings(same_language=True, topic_balance=False, weights="none")
TOPIC = BatchingSettings(same_language=False, topic_balance=True, weights="none")
NEITHER = BatchingSettings(same_language=False, topic_balance=False, weights="none")


def _items(spec: dict[str, str]) -> list[Item]:
    """``{"sw": "AAABBC", ...}``: one query per letter, the letter its topic."""
    return [Item(lang, f"{lang}{i}", t) for lang, topics in spec.items() for i, t in enumerate(topics)]


def _langs(items, batch):
    return {items[i].lang for i in batch}


def _topics(items, batch):
    return [items[i].topic for i in batch]


def test_same_language_batches_hold_one_language_and_a_language_share_of_steps_equal_to_its_share_of_batches():
    items = _items({"sw": "A" * 10, "ru": "A" * 7, "te": "A" * 3})
    for epoch in range(3):
        batches = epoch_batches(items, SAME, batch_size=3, seed=5, epoch=epoch)
        assert all(len(b) == 3 and len(_langs(items, b)) == 1 for b in batches)
        # 10 // 3 = 3 sw batches, 7 // 3 = 2 ru, 3 // 3 = 1 te; one sw and one ru query sit out
        assert Counter(items[b[0]].lang for b in batches) == {"sw": 3, "ru": 2, "te": 1}
        assert len({i for b in batches for i in b}) == 18


def test_topics_are_dealt_so_every_batch_has_min_of_batch_size_and_topics_distinct_topics():
    # 12 queries, batch 4 -> 3 batches; no topic has more queries than batches, so every batch can hold 4 of
    # the 5 topics: A, B, C in each, and one of D, D, E.
    items = _items({"sw": "AAABBBCCCDDE"})
    for seed in range(5):
        for epoch in range(3):
            batches = epoch_batches(items, BOTH, 4, seed, epoch)
            assert len(batches) == 3
            assert [len(set(_topics(items, b))) for b in batches] == [4, 4, 4]
            assert sorted(i for b in batches for i in b) == list(range(12))
    # with batch 2 (6 batches) the data allows 2 distinct topics in each
    assert all(len(set(_topics(items, b))) == 2 for b in epoch_batches(items, BOTH, 2, 0, 0))


def test_without_topic_balance_batches_repeat_topics_the_data_could_spread():
    items = _items({"sw": "AAABBBCCCDDE"})
    distinct = [len(set(_topics(items, b))) for e in range(20) for b in epoch_batches(items, SAME, 4, 1, e)]
    assert min(distinct) < 4  # random batches often hold fewer than the 4 distinct topics the deal guarantees


def test_the_remainder_sits_out_from_the_largest_topic_and_rare_topics_always_train():
    items = _items({"sw": "AAAAAAABC"})  # 9 queries, batch 4: 2 batches, one query sits out
    for epoch in range(10):
        batches = epoch_batches(items, BOTH, 4, 3, epoch)
        used = [items[i].topic for b in batches for i in b]
        assert Counter(used) == {"A": 6, "B": 1, "C": 1}
        assert all("A" in _topics(items, b) for b in batches)
    # which A sits out changes with the epoch
    left_out = {frozenset(set(range(9)) - {i for b in epoch_batches(items, BOTH, 4, 3, e) for i in b}) for e in range(10)}
    assert len(left_out) > 1


def test_languages_smaller_than_a_batch_are_pooled_into_mixed_batches():
    items = _items({"sw": "AB" * 5, "ru": "AB", "te": "A"})
    batches = epoch_batches(items, BOTH, 3, 0, 0)
    kinds = Counter(frozenset(_langs(items, b)) for b in batches)
    assert kinds == {frozenset({"sw"}): 3, frozenset({"ru", "te"}): 1}
    with pytest.raises(BatchingError, match=r"language\(s\) \['ru', 'te'\] have 3 training queries together, fewer "
                                            r"than one batch of 4.*lower training.batch_size"):
        epoch_batches(items, BOTH, 4, 0, 0)


def test_same_seed_and_epoch_give_the_same_batches_and_other_seeds_or_epochs_differ():
    items = _items({"sw": "AABBCCDDEEFF" * 2, "ru": "ABCDEF" * 3})
    for settings in (BOTH, SAME, TOPIC, NEITHER):
        a = epoch_batches(items, settings, 6, 11, 2)
        assert a == epoch_batches(items, settings, 6, 11, 2)
        assert a != epoch_batches(items, settings, 6, 11, 3)
        assert a != epoch_batches(items, settings, 6, 12, 2)


def test_neither_mode_is_the_trainers_shuffled_sampler():
    items = _items({"sw": "AB" * 9, "ru": "C" * 5})
    for epoch in range(3):
        sampler = ShuffledBatchSampler(len(items), 4, seed=9)
        sampler.set_epoch(epoch)
        assert epoch_batches(items, NEITHER, 4, 9, epoch) == list(sampler)


def test_topic_balance_without_same_language_mixes_languages_and_spreads_topics():
    items = _items({"sw": "AAAB", "ru": "BBCC", "te": "CDDD"})  # topics: A3 B3 C3 D3, batch 4 -> 3 batches
    batches = epoch_batches(items, TOPIC, 4, 0, 0)
    assert all(len(set(_topics(items, b))) == 4 for b in batches)
    assert any(len(_langs(items, b)) > 1 for b in batches)


def test_every_slice_of_a_global_batch_is_the_batchs_language():
    # Under torchrun each of the world's processes encodes a contiguous slice; a global batch is one language.
    items = _items({"sw": "ABCD" * 4, "ru": "ABCD" * 4})
    for b in epoch_batches(items, BOTH, 8, 0, 0):
        slices = [b[r * 4 : (r + 1) * 4] for r in range(2)]
        assert len({lang for s in slices for lang in _langs(items, s)}) == 1


def test_topic_balance_without_topics_is_refused():
    with pytest.raises(BatchingError, match="topic balance needs every query's topic"):
        epoch_batches([Item("sw", "1", None), Item("sw", "2", None)], BOTH, 2, 0, 0)


# ------------------------------------------------------------------------------------------- weights


def test_proportion_weights_by_hand():
    # sw: 3 queries (topics A, A, B), ru: 1 (A). N = 4, L = 2 languages, C = 2 topics.
    # alpha_l = alpha * N / (L * n_l): sw 0.45 * 4 / 6 = 0.3, ru 0.45 * 4 / 2 = 0.9
    # beta_c  = beta  * N / (C * n_c): A  0.40 * 4 / 6 = 0.2667, B 0.40 * 4 / 2 = 0.8
    items = [Item("sw", "1", "A"), Item("sw", "2", "A"), Item("sw", "3", "B"), Item("ru", "1", "A")]
    alpha, beta = category_weights(items, BatchingSettings(weights="proportion", alpha=0.45, beta=0.40))
    assert alpha == pytest.approx({"sw": 0.3, "ru": 0.9})
    assert beta == pytest.approx({"A": 0.4 * 4 / 6, "B": 0.8})
    omega = [query_weight(it, (alpha, beta)) for it in items]
    assert omega == pytest.approx([0.3 + 0.4 * 4 / 6, 0.3 + 0.4 * 4 / 6, 1.1, 0.9 + 0.4 * 4 / 6])
    # the means over the training queries are alpha and beta
    assert sum(alpha[it.lang] for it in items) / 4 == pytest.approx(0.45)
    assert sum(beta[it.topic] for it in items) / 4 == pytest.approx(0.40)


def test_fixed_and_no_weights():
    items = [Item("sw", "1", "A"), Item("ru", "1", "B")]
    alpha, beta = category_weights(items, BatchingSettings(weights="fixed", alpha=0.55, beta=0.2))
    assert [query_weight(it, (alpha, beta)) for it in items] == pytest.approx([0.75, 0.75])
    assert category_weights(items, BatchingSettings(weights="none")) is None
    with pytest.raises(ValueError, match="--weights 'softmax': choose one of none, proportion, fixed"):
        BatchingSettings(weights="softmax")


def test_every_hard_negative_slot_carries_its_querys_weight():
    items = [Item("sw", str(i), "AB"[i % 2]) for i in range(4)] + [Item("ru", str(i), "A") for i in range(4)]
    settings = BatchingSettings(weights="proportion", alpha=0.5, beta=0.5)
    alpha, beta = category_weights(items, settings)
    for step in manifest_steps(items, settings, batch_size=2, group_size=4, epochs=2, seed=0):
        assert len(step.weights) == 2 and all(len(w) == 3 and len(set(w)) == 1 for w in step.weights)
        for (lang, _, topic), w in zip(step.queries, step.weights):
            assert w[0] == pytest.approx(alpha[lang] + beta[topic])


# ---------------------------------------------------------------------------------------- statistics


def test_statistics_by_hand():
    items = _items({"sw": "AABB", "ru": "ABB"})  # batch 2: sw 2 batches, ru 1 (one ru B query sits out)
    steps = list(manifest_steps(items, BOTH, 2, 3, epochs=2, seed=0))
    stats = batch_statistics(items, steps, BOTH, 2)
    assert stats["steps_per_epoch"] == 3 and stats["epochs"] == 2
    assert stats["one_language_batch_share"] == 1.0
    assert stats["language_step_share"] == pytest.approx({"sw": 2 / 3, "ru": 1 / 3, "mixed": 0.0})
    assert stats["queries_used_share"] == pytest.approx(6 / 7)
    assert stats["distinct_topics_per_batch"] == {"mean": 2.0, "min": 2, "max": 2}
    assert stats["attainable_topics_per_batch"]["mean"] == 2.0
    # a topic with fewer queries than its language has batches cannot be in all of them:
    # sw "AAAAB" in batches of 2 -> 2 batches; A fits both, B one: at most (2 + 1) / 2 = 1.5 distinct on average
    skewed = _items({"sw": "AAAAB"})
    sk = batch_statistics(skewed, list(manifest_steps(skewed, BOTH, 2, 3, 1, 0)), BOTH, 2)
    assert sk["attainable_topics_per_batch"]["mean"] == 1.5 and sk["distinct_topics_per_batch"]["mean"] == 1.5
    assert stats["topic_coverage"] == pytest.approx({"A": 1.0, "B": 3 / 4}) and stats["mean_weight"] is None
    assert stats["topic_query_share"] == pytest.approx({"A": 3 / 7, "B": 4 / 7})
    mixed = batch_statistics(items, list(manifest_steps(items, NEITHER, 2, 3, 2, 0)), NEITHER, 2)
    assert mixed["one_language_batch_share"] < 1.0 and mixed["language_step_share"]["mixed"] > 0


# ----------------------------------------------------------------------------------------------- CLI


def _toy_with_topics(tmp_path):
    data = make_toy_data(tmp_path / "data")
    topics = []
    for path in data["negatives"]:
        records = read_negatives(path)
        out = tmp_path / f"{records[0].lang}.topics.jsonl"
        write_topic_labels(out, [TopicRecord(r.qid, r.lang, "ABC"[int(r.qid) % 3], None, "fallback") for r in records])
        topics.append(str(out))
    return data, topics


def test_cli_writes_a_manifest_of_the_trainers_queries_with_weights_and_statistics(tmp_path):
    data, topics = _toy_with_topics(tmp_path)
    out, stats = tmp_path / "m.jsonl.gz", tmp_path / "m.stats.json"
    argv = ["--negatives", *data["negatives"], "--topics", *topics, "--batch-size", "4", "--group-size", "3",
            "--epochs", "2", "--seed", "0", "--out", str(out), "--stats", str(stats)]  # fmt: skip
    assert batching.main(argv) == 0
    header, steps = read_manifest(out)
    # 11 usable queries per language (query 0 has no negatives): 2 batches of 4 each, per epoch
    assert header["queries"] == 22 and header["steps_per_epoch"] == 4 and header["epochs"] == 2
    assert header["mode"] == "both" and len(steps) == 8
    listed = {(lang, qid) for s in steps for lang, qid, _ in s.queries}
    assert ("sw", "0") not in listed and ("te", "0") not in listed
    assert all(len({q[0] for q in s.queries}) == 1 for s in steps)
    assert all(s.weights is not None and len(s.weights[0]) == 2 for s in steps)
    assert read_json(stats)["one_language_batch_share"] == 1.0
    # byte-identical when run again (deterministic, and the gzip header carries no time stamp)
    again = tmp_path / "again.jsonl.gz"
    batching.main([*argv[:-4], "--out", str(again), "--stats", str(tmp_path / "again.json")])
    assert again.read_bytes() == out.read_bytes()
    with pytest.raises(BatchingError, match="needs --topics"):
        batching.main([*argv[: argv.index("--topics")], *argv[argv.index("--batch-size") :]])


def test_a_corrupt_manifest_names_its_line(tmp_path):
    import gzip

    data, topics = _toy_with_topics(tmp_path)
    out = tmp_path / "m.jsonl.gz"
    batching.main(["--negatives", *data["negatives"], "--topics", *topics, "--batch-size", "4", "--group-size", "3",
                   "--epochs", "1", "--seed", "0", "--out", str(out), "--stats", str(tmp_path / "s.json")])  # fmt: skip
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(FormatError, match=r"bad.jsonl:2: expected epoch 0 step 0, got epoch 0 step 1"):
        read_manifest(bad)
    bad.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(FormatError, match=r"3 steps; the header says 1 epochs x 4 steps"):
        read_manifest(bad)
