"""The trainer in one process: CLI output layout, sentence-transformers compatibility, learning, weights
plumbing, resume bookkeeping and errors. (Multi-process and kill/resume runs: test_train_ddp/_resume.)"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from boostmdr.encoder import Encoder, EncoderSettings
from boostmdr.formats import read_manifest
from boostmdr.sampler import BatchWeights, ShuffledBatchSampler, build_sampler
from boostmdr.train import main
from boostmdr.trainer import TrainConfig, _BiEncoder, latest_checkpoint, length_buckets, train
from boostmdr.training_data import GroupDataset, parse_corpus_args

from train_fixtures import make_tiny_model, make_toy_data, make_toy_manifest


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return {"root": root, "model": make_tiny_model(root / "model"), "data": make_toy_data(root / "data")}


def _dataset(toy, group_size=4, seed=0):
    ds, _ = GroupDataset.from_files(toy["data"]["negatives"], parse_corpus_args(toy["data"]["corpus"]), group_size, seed)
    return ds


def _encoder(toy, **settings):
    base = {"pooling": "mean", "normalize": True} | settings
    return Encoder.from_pretrained(toy["model"], overrides=base, device="cpu")


def _weights(encoder):
    return {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}


def test_cli_writes_a_checkpoint_that_our_encoder_and_sentence_transformers_load_alike(toy, tmp_path):
    from sentence_transformers import SentenceTransformer

    out, state = tmp_path / "out", tmp_path / "state"
    argv = [
        "--model", str(toy["model"]), "--pooling", "mean", "--normalize",
        "--query-prefix", "query: ", "--passage-prefix", "passage: ", "--q-max-len", "16", "--p-max-len", "48",
        "--negatives", *toy["data"]["negatives"], "--corpus", *toy["data"]["corpus"],
        "--out", str(out), "--state-dir", str(state), "--epochs", "2", "--batch-size", "4", "--group-size", "4",
        "--lr", "1e-3", "--save-steps", "3", "--threads", "1", "--no-progress", "--log", str(tmp_path / "train.log"),
    ]  # fmt: skip
    assert main(argv) == 0

    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 10  # 22 usable queries // 4 = 5 steps per epoch, 2 epochs
    assert summary["skipped_queries"] == {"no_negatives": 2, "no_positives": 0}
    assert summary["queries"] == 22 and summary["data"]["too_few_negatives"] == 2
    assert summary["groups_per_second"] > 0 and np.isfinite(summary["final_loss"])
    assert summary["encoder"]["query_prefix"] == "query: "
    assert not state.exists()  # the finished run's state is removed
    assert {"model.safetensors", "config.json", "tokenizer.json", "boostmdr_encoder.json", "modules.json",
            "sentence_bert_config.json", "1_Pooling"} <= {p.name for p in out.iterdir()}  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary leftovers
    log_text = (tmp_path / "train.log").read_text()
    assert "saved training state at step 3" in log_text and "skipped 2 queries without negatives" in log_text

    ours = Encoder.from_pretrained(out, device="cpu")
    assert ours.settings == EncoderSettings("mean", True, "query: ", "passage: ", 16, 48)
    assert not torch.equal(ours.model.state_dict()["encoder.layer.0.attention.self.query.weight"],
                           load_file(toy["model"] / "model.safetensors")["encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    queries = ["kami tora su", "pedi ba zu fo gi"]
    passages = ["lone ha we yo mi", "kato ramisu ne pe di ba zu fo gi ha"]
    st = SentenceTransformer(str(out), device="cpu")
    st_q = st.encode(queries, prompt_name="query", convert_to_numpy=True)
    st_p = st.encode(passages, prompt_name="document", convert_to_numpy=True)
    np.testing.assert_allclose(ours.encode_queries(queries), st_q, atol=1e-5)
    np.testing.assert_allclose(ours.encode_passages(passages), st_p, atol=1e-5)


def test_training_lowers_the_loss(toy):
    torch.manual_seed(0)
    encoder = _encoder(toy)
    ds = _dataset(toy)
    summary_first = train(encoder, ds, ShuffledBatchSampler(len(ds), 4, 0), TrainConfig(
        epochs=1, batch_size=4, group_size=4, lr=2e-3, temperature=0.1, save_steps=0), show_progress=False)  # fmt: skip
    later = train(encoder, ds, ShuffledBatchSampler(len(ds), 4, 1), TrainConfig(
        epochs=5, batch_size=4, group_size=4, lr=2e-3, temperature=0.1, save_steps=0), show_progress=False)  # fmt: skip
    assert later["final_loss"] < summary_first["mean_loss_last_50_steps"] - 1.0  # observed: 2.78 -> 1.17


class _RecordingProvider:
    def __init__(self, make):
        self.make = make
        self.views = []

    def __call__(self, view):
        self.views.append(view)
        return self.make(view)


def _run(toy, provider=None, steps=2, group_size=3):
    torch.manual_seed(0)
    encoder = _encoder(toy)
    ds = _dataset(toy, group_size=group_size)
    config = TrainConfig(epochs=1, batch_size=4, group_size=group_size, lr=1e-3, max_steps=steps, save_steps=0)
    summary = train(encoder, ds, ShuffledBatchSampler(len(ds), 4, 0), config, weight_provider=provider, show_progress=False)
    return _weights(encoder), summary, ds


def test_weight_provider_sees_the_batch_in_loss_order_and_its_weights_reach_the_loss(toy):
    plain, s_plain, ds = _run(toy)
    ones = _RecordingProvider(lambda v: BatchWeights(negatives=torch.ones(len(v.groups) * 3)))
    w_ones, s_ones, _ = _run(toy, ones)
    assert s_ones["final_loss"] == s_plain["final_loss"]
    assert all(torch.equal(plain[k], w_ones[k]) for k in plain)  # unit weights change nothing

    view = ones.views[0]
    sampler = ShuffledBatchSampler(len(ds), 4, 0)
    first_batch = next(iter(sampler))
    assert [g.index for g in view.groups] == first_batch and view.epoch == 0
    assert [g.docids for g in view.groups] == [ds.group(i, 0).docids for i in first_batch]

    def no_hard_negatives(v):
        w = torch.ones(len(v.groups), len(v.groups) * 3)
        for i in range(len(v.groups)):
            w[i, i * 3 + 1 : i * 3 + 3] = 0.0
        return BatchWeights(negatives=w)

    w_zero, s_zero, _ = _run(toy, _RecordingProvider(no_hard_negatives))
    assert s_zero["final_loss"] < s_plain["final_loss"]  # fewer terms in every denominator
    assert any(not torch.equal(plain[k], w_zero[k]) for k in plain)


def test_a_replayed_manifest_trains_exactly_its_groups_with_its_weights(toy, tmp_path):
    manifest = make_toy_manifest(tmp_path, toy["data"], batch_size=4, group_size=3, epochs=2, seed=7)
    ds = _dataset(toy, group_size=3)
    sampler, provider = build_sampler("manifest", ds, 4, 0, {"manifest": str(manifest)})
    recording = _RecordingProvider(provider)
    config = TrainConfig(epochs=2, batch_size=4, group_size=3, lr=1e-3, save_steps=0)
    summary = train(_encoder(toy), ds, sampler, config, weight_provider=recording, show_progress=False)
    _, steps = read_manifest(manifest)
    assert summary["steps"] == len(steps) == 8
    assert [[(g.lang, g.qid) for g in v.groups] for v in recording.views] == [
        [(lang, qid) for lang, qid, _ in s.queries] for s in steps
    ]
    assert [v.epoch for v in recording.views] == [s.epoch for s in steps]
    first = provider(recording.views[0]).hard_negatives
    assert torch.allclose(first, torch.tensor(steps[0].weights, dtype=torch.float32))
    assert first.shape == (4, 2) and len(set(first.flatten().tolist())) > 1  # proportion weights differ by topic


def test_a_shuffled_manifest_trains_bitwise_like_the_shuffled_sampler(toy, tmp_path):
    # A variant without stage 3 trains from a manifest too: the same batches as before manifests, no weights.
    manifest = make_toy_manifest(tmp_path, toy["data"], 4, 4, 2, 5, "--no-same-language", "--no-topic-balance",
                                 "--weights", "none")  # fmt: skip
    ds = _dataset(toy)
    config = TrainConfig(epochs=2, batch_size=4, group_size=4, lr=1e-3, save_steps=0, seed=5)
    runs = []
    for sampler, provider in [build_sampler("manifest", ds, 4, 5, {"manifest": str(manifest)}),
                              (ShuffledBatchSampler(len(ds), 4, 5), None)]:  # fmt: skip
        assert provider is None
        torch.manual_seed(0)
        encoder = _encoder(toy)
        runs.append((train(encoder, ds, sampler, config, show_progress=False), _weights(encoder)))
    (s_manifest, w_manifest), (s_shuffled, w_shuffled) = runs
    assert s_manifest["final_loss"] == s_shuffled["final_loss"]
    assert all(torch.equal(w_manifest[k], w_shuffled[k]) for k in w_shuffled)


def test_a_manifest_that_does_not_fit_the_run_is_refused(toy, tmp_path):
    manifest = make_toy_manifest(tmp_path, toy["data"], batch_size=4, group_size=4, epochs=1, seed=0)
    ds = _dataset(toy)
    with pytest.raises(ValueError, match="manifest batches hold 4 queries, the trainer's --batch-size is 2"):
        build_sampler("manifest", ds, 2, 0, {"manifest": str(manifest)})
    with pytest.raises(ValueError, match="weights are for group size 4, the trainer's --group-size is 3"):
        build_sampler("manifest", _dataset(toy, group_size=3), 4, 0, {"manifest": str(manifest)})
    sw_only, _ = GroupDataset.from_files(toy["data"]["negatives"][:1], parse_corpus_args(toy["data"]["corpus"]), 4, 0)
    with pytest.raises(Exception, match="not among the trainer's training queries"):
        build_sampler("manifest", sw_only, 4, 0, {"manifest": str(manifest)})
    sampler, _ = build_sampler("manifest", ds, 4, 0, {"manifest": str(manifest)})
    with pytest.raises(ValueError, match="lays out 1 epoch.*epoch 2 was asked for"):
        train(_encoder(toy), ds, sampler, TrainConfig(epochs=2, batch_size=4, group_size=4, save_steps=0),
              show_progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="takes exactly the option manifest=PATH"):
        build_sampler("manifest", ds, 4, 0, {"path": str(manifest)})


def test_state_is_resumed_only_by_the_same_run(toy, tmp_path, caplog):
    ds = _dataset(toy)
    state = tmp_path / "state"
    config = TrainConfig(epochs=1, batch_size=4, group_size=4, lr=1e-3, max_steps=4, save_steps=1)
    first = train(_encoder(toy), ds, ShuffledBatchSampler(len(ds), 4, 0), config, state_dir=state, show_progress=False)
    assert latest_checkpoint(state).name == "checkpoint-3"  # every step but the last; the output covers that
    assert first["peak_gpu_memory_allocated_bytes"] is None  # CPU
    again = train(_encoder(toy), ds, ShuffledBatchSampler(len(ds), 4, 0), config, state_dir=state, show_progress=False)
    assert again["resumed_from_step"] == 3 and again["steps"] == 4
    # the first-window loss comes back with the state: steps 1-3 from the checkpoint, step 4 from this run
    assert again["mean_loss_first_50_steps"] == pytest.approx(first["mean_loss_first_50_steps"], abs=1e-6)
    assert again["mean_loss_last_50_steps"] == pytest.approx(first["mean_loss_last_50_steps"], abs=1e-6)
    with caplog.at_level(logging.WARNING, logger="boostmdr.trainer"):
        other = TrainConfig(epochs=1, batch_size=4, group_size=4, lr=2e-3, max_steps=4, save_steps=0)
        fresh = train(_encoder(toy), ds, ShuffledBatchSampler(len(ds), 4, 0), other, state_dir=state, show_progress=False)
    assert fresh["resumed_from_step"] is None and fresh["steps"] == 4
    assert "holds the state of a different run" in caplog.text
    assert latest_checkpoint(state) is None


def test_gpu_switches_are_logged_and_ignored_on_cpu(toy, caplog):
    ds = _dataset(toy)
    config = TrainConfig(epochs=1, batch_size=4, group_size=4, max_steps=1, save_steps=0, bf16=True,
                         gradient_checkpointing=True)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="boostmdr.trainer"):
        train(_encoder(toy), ds, ShuffledBatchSampler(len(ds), 4, 0), config, show_progress=False)
    assert "--bf16 is for GPUs; ignored on cpu" in caplog.text
    assert "--gradient-checkpointing is for GPUs; ignored on cpu" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_size": 1}, "--group-size must be >= 2"),
        ({"similarity": "l2"}, "--similarity must be one of"),
        ({"fp16": True, "bf16": True}, "--fp16 and --bf16 exclude each other"),
        ({"warmup_ratio": 1.0}, r"--warmup-ratio must be in \[0, 1\)"),
        ({"length_buckets": 0}, "--length-buckets must be >= 1"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_cli_errors_name_the_setting(toy, tmp_path):
    argv = ["--model", str(toy["model"]), "--negatives", *toy["data"]["negatives"], "--corpus", *toy["data"]["corpus"],
            "--out", str(tmp_path / "o"), "--state-dir", str(tmp_path / "s"), "--no-progress"]  # fmt: skip
    with pytest.raises(ValueError, match="no boostmdr_encoder.json; give the encoder settings explicitly"):
        main(argv)
    with pytest.raises(ValueError, match="--similarity cos trains on cosine scores, but .* normalize=false"):
        main([*argv, "--pooling", "cls", "--no-normalize", "--similarity", "cos"])
    with pytest.raises(ValueError, match="--corpus expects LANG=PATH, got 'sw'"):
        main([*argv, "--pooling", "cls", "--corpus", "sw"])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("buckets", [1, 3, 40])
def test_length_buckets_embed_every_passage_as_the_padded_batch_does_and_keep_its_order(toy, buckets):
    encoder = _encoder(toy)
    encoder.model.eval()
    ds = _dataset(toy)
    passages = [p for i in range(6) for p in ds.group(i, 0).passages]  # 24 passages of different lengths
    batch = encoder.tokenize(passages, "passage")
    chunks, order = length_buckets(batch, buckets, multiple=None)
    assert len(chunks) == min(buckets, len(passages))
    lengths = batch["attention_mask"].sum(dim=1)
    in_chunks = [n for c in chunks for n in c["attention_mask"].sum(dim=1).tolist()]
    assert in_chunks == (sorted(lengths.tolist()) if buckets > 1 else lengths.tolist())  # shortest first
    for c in chunks:  # each chunk is cut to its own longest row: no column of padding only
        assert c["attention_mask"][:, -1].any() and c["input_ids"].shape == c["attention_mask"].shape
    if buckets > 1:
        assert sum(c["input_ids"].numel() for c in chunks) < batch["input_ids"].numel()
    module = _BiEncoder(encoder)
    with torch.no_grad():
        _, whole = module(batch, [batch])
        _, bucketed = module(batch, chunks, order)
    torch.testing.assert_close(bucketed, whole, atol=1e-5, rtol=0)


def test_length_buckets_round_widths_up_to_the_padding_multiple():
    mask = torch.tensor([[1] * n + [0] * (32 - n) for n in (3, 5, 17, 20)])
    batch = {"input_ids": mask * 7, "attention_mask": mask}
    chunks, order = length_buckets(batch, 2, multiple=16)
    assert [c["input_ids"].shape[1] for c in chunks] == [16, 32]
    assert order.tolist() == [0, 1, 2, 3]
