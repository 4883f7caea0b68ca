"""Batch samplers: deterministic per (seed, epoch), a partition of the queries, registry and errors."""

from __future__ import annotations

import pytest

from boostmdr.sampler import (
    BatchSampler,
    ShuffledBatchSampler,
    build_sampler,
    parse_sampler_args,
)
from boostmdr.training_data import GroupDataset, PoolQuery


def _batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_epoch_is_a_partition_minus_the_remainder():
    s = ShuffledBatchSampler(23, 5, seed=7)
    assert len(s) == 4
    batches = _batches(s, 0)
    assert [len(b) for b in batches] == [5, 5, 5, 5]
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == 20 and set(flat) <= set(range(23))


def test_keep_last_batch_when_asked():
    s = ShuffledBatchSampler(23, 5, seed=7, drop_last=False)
    batches = _batches(s, 3)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(i for b in batches for i in b) == list(range(23))


def test_same_seed_and_epoch_same_batches_other_epoch_or_seed_differs():
    a, b = ShuffledBatchSampler(50, 8, seed=1), ShuffledBatchSampler(50, 8, seed=1)
    assert _batches(a, 2) == _batches(b, 2)
    assert _batches(a, 2) == _batches(a, 2)  # iterating again replays the epoch (used when resuming)
    assert _batches(a, 2) != _batches(a, 3)
    assert _batches(a, 2) != _batches(ShuffledBatchSampler(50, 8, seed=2), 2)
    # the left-out remainder changes between epochs
    left_out = [set(range(50)) - {i for bt in _batches(a, e) for i in bt} for e in range(4)]
    assert len({frozenset(x) for x in left_out}) > 1


def test_default_sampler_mixes_languages():
    queries = [PoolQuery(f"q{i}", "x", lang, ("d",), ("n",)) for i, lang in enumerate(["sw"] * 10 + ["te"] * 10)]
    ds = GroupDataset(queries, {"sw": {"d": "", "n": ""}, "te": {"d": "", "n": ""}}, group_size=2, seed=0)
    sampler, provider = build_sampler("shuffled", ds, batch_size=4, seed=0)
    assert provider is None
    assert isinstance(sampler, BatchSampler)
    mixed = [len({ds.queries[i].lang for i in b}) for b in _batches(sampler, 0)]
    assert max(mixed) == 2


def test_registry_errors_name_the_choices():
    ds = GroupDataset([PoolQuery("q", "x", "sw", ("d",), ("n",))], {"sw": {"d": "", "n": ""}}, 2, 0)
    with pytest.raises(ValueError, match=r"unknown sampler 'topic'; registered samplers: \['manifest', 'shuffled'\]"):
        build_sampler("topic", ds, 1, 0)
    with pytest.raises(ValueError, match="only the option drop_last"):
        build_sampler("shuffled", ds, 1, 0, {"langs": "sw"})
    with pytest.raises(ValueError, match="cannot fill one batch of 4; lower --batch-size"):
        build_sampler("shuffled", ds, 4, 0)
    assert parse_sampler_args(["drop_last=false", "a=b=c"]) == {"drop_last": "false", "a": "b=c"}
    with pytest.raises(ValueError, match="KEY=VALUE, got 'oops'"):
        parse_sampler_args(["oops"])
