"""Small self-made fixtures for the judge, backend and tiny-LM tests: a toy prepared dataset (corpus,
train.jsonl, a fused candidate run with positives removed, the complete truth) and a tiny random
causal LM, built once per test session."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boostmdr.formats import Hit, write_jsonl, write_qrels, write_run

REPO = Path(__file__).resolve().parents[1]
PROMPT = REPO / "config" / "prompts" / "judge.txt"

SYLLABLES = ["ka", "mi", "to", "ra", "ne", "su", "lo", "pe", "di", "ba", "zu", "fo", "gi", "ha", "we", "yo"]
_MODELS: dict[str, Path] = {}


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def write_toy_data(root: Path, n_queries: int = 12, n_candidates: int = 6, seed: int = 0) -> dict[str, Path]:
    """A toy prepared dataset: each query has one or two positives, rel-0 negatives, a fused run of
    ``n_candidates`` non-positive candidates and a complete truth in which one candidate of every
    other query is a planted (unlabelled) relevant passage."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs: list[dict] = []
    train: list[dict] = []
    run: dict[str, list[Hit]] = {}
    truth: dict[str, dict[str, int]] = {}

    def passage(words: list[str]) -> str:
        docid = f"{len(docs)}#0"
        docs.append({"docid": docid, "title": _word(rng), "text": " ".join(words)})
        return docid

    for q in range(n_queries):
        topic = [_word(rng) for _ in range(6)]
        positives = [passage(topic + [_word(rng) for _ in range(8)]) for _ in range(rng.choice([1, 2]))]
        negatives = [passage([_word(rng) for _ in range(14)]) for _ in range(3)]
        candidates = [passage([_word(rng) for _ in range(14)]) for _ in range(n_candidates)]
        qid = str(q)
        train.append({"qid": qid, "query": " ".join(topic[:4]), "positives": positives, "negatives": negatives})
        truth[qid] = {**{d: 1 for d in positives}, **{d: 0 for d in negatives}}
        if q % 2 == 0:  # a planted false negative among the candidates
            candidates[1] = passage(topic + [_word(rng) for _ in range(8)])
            truth[qid][candidates[1]] = 1
        run[qid] = [Hit(d, 10.0 - r) for r, d in enumerate(candidates)]
    paths = {
        "corpus": root / "corpus.jsonl",
        "train": root / "train.jsonl",
        "candidates": root / "fused.trec",
        "truth": root / "complete-qrels.tsv",
    }
    write_jsonl(paths["corpus"], docs)
    write_jsonl(paths["train"], train)
    write_run(paths["candidates"], run, tag="toy")
    write_qrels(paths["truth"], truth)
    return paths


def random_tiny_lm(tmp_root: Path) -> Path:
    """A randomly initialised tiny Llama (hidden 32) with a tokenizer trained on the toy corpus and the
    judge prompt; built once per session."""
    if "random" not in _MODELS:
        from boostmdr.demo.tiny_lm import TinyLMSettings, build_tiny_lm

        data = write_toy_data(tmp_root / "lm-data", n_queries=30)
        out = tmp_root / "random-tiny-lm"
        settings = TinyLMSettings(vocab_size=600, hidden=32, layers=2, heads=2, intermediate=64, max_positions=1024)
        build_tiny_lm([data["corpus"]], out, settings, prompt=PROMPT)
        _MODELS["random"] = out
    return _MODELS["random"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy judge inputs (6 queries x 4 candidates) and the random tiny LM; import it into a test module to use it."""
    root = tmp_path_factory.mktemp("judge-toy")
    return write_toy_data(root / "data", n_queries=6, n_candidates=4), random_tiny_lm(root)


@pytest.fixture(scope="module")
def backend(toy):
    """The transformers backend on the random tiny LM of ``toy``."""
    from boostmdr.llm import get_backend

    with get_backend("transformers", model=str(toy[1]), device="cpu") as b:
        yield b


def write_topic_world(root: Path, n_queries: int, n_topics: int = 6, words_per_topic: int = 24, seed: int = 0) -> Path:
    """A prepared-data directory (train.jsonl, corpus.jsonl) in which relevance is topical: each topic
    has its own words; a query and its two positives are drawn from one topic, its rel-0 negatives from
    other topics. Every topic's words are shared by many queries, so a tiny model can learn relevance
    from the labels in a few hundred steps and be tested on queries it never saw."""
    rng = random.Random(seed)
    vocab_rng = random.Random(12345)  # the same topic words in every world, whatever the seed
    words = sorted({_word(vocab_rng) for _ in range(4 * n_topics * words_per_topic)})
    vocab_rng.shuffle(words)
    topics = [words[t * words_per_topic : (t + 1) * words_per_topic] for t in range(n_topics)]
    root.mkdir(parents=True, exist_ok=True)
    docs: list[dict] = []
    train: list[dict] = []

    def passage(topic: int) -> str:
        docid = f"{len(docs)}#0"
        docs.append({"docid": docid, "title": rng.choice(topics[topic]), "text": " ".join(rng.choices(topics[topic], k=14))})
        return docid

    for q in range(n_queries):
        t = rng.randrange(n_topics)
        others = [x for x in range(n_topics) if x != t]
        train.append({
            "qid": str(q),
            "query": " ".join(rng.sample(topics[t], 4)),
            "positives": [passage(t), passage(t)],
            "negatives": [passage(rng.choice(others)) for _ in range(3)],
        })
    write_jsonl(root / "corpus.jsonl", docs)
    write_jsonl(root / "train.jsonl", train)
    return root


def trained_topic_judge(tmp_root: Path) -> tuple[Path, Path]:
    """The tiny LM as the demo builds its judge (the token-overlap circuit in its first three layers,
    boostmdr.demo.tiny_circuit), judge-fine-tuned (300 steps) on a 200-query topic world; returns (model,
    held-out world of 40 unseen queries). Built once per session."""
    if "topic" not in _MODELS:
        from boostmdr.demo.tiny_lm import JudgeTrainSettings, TinyLMSettings, build_tiny_lm

        train = write_topic_world(tmp_root / "topic-train", 200, seed=1)
        held = write_topic_world(tmp_root / "topic-held", 40, seed=2)
        out = tmp_root / "topic-judge-lm"
        build_tiny_lm(
            [train / "corpus.jsonl"], out,
            TinyLMSettings(vocab_size=800, hidden=128, layers=4, heads=2, intermediate=256, init="circuit"),
            prompt=PROMPT, train_dirs=[train],
            train_settings=JudgeTrainSettings(max_steps=300, max_seconds=600, lr=3e-3, batch_size=16, seed=0),
        )
        _MODELS["topic"] = out
        _MODELS["topic-held"] = held
    return _MODELS["topic"], _MODELS["topic-held"]


def hide_second_positives(world: Path, out: Path, n_queries: int | None = None, seed: int = 0) -> dict[str, Path]:
    """Judge inputs from a topic world in which each query's second positive is unlabelled and hidden
    among its candidates (like a planted false negative), next to two rel-0 passages; the truth marks it."""
    from boostmdr.formats import read_jsonl

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    queries = [rec for _, rec in read_jsonl(world / "train.jsonl")][:n_queries]
    run: dict[str, list[Hit]] = {}
    truth: dict[str, dict[str, int]] = {}
    for q in queries:
        cands = [q["positives"][1], *q["negatives"][:2]]
        rng.shuffle(cands)
        run[q["qid"]] = [Hit(d, 3.0 - r) for r, d in enumerate(cands)]
        truth[q["qid"]] = {d: int(d == q["positives"][1]) for d in cands}
    paths = {"train": out / "train.jsonl", "candidates": out / "fused.trec", "truth": out / "truth.tsv", "corpus": world / "corpus.jsonl"}
    write_jsonl(paths["train"], [{**q, "positives": q["positives"][:1], "negatives": []} for q in queries])
    write_run(paths["candidates"], run, tag="hidden")
    write_qrels(paths["truth"], truth)
    return paths


def judge_against_truth(model_dir: Path, data: dict[str, Path], out: Path) -> dict:
    """Run the real judge (transformers backend, four samples, majority vote) over ``data``'s candidates
    into ``out`` and return its verdict statistics against ``data``'s complete truth."""
    from boostmdr.judge import JudgeSettings, load_judge_template, run_verdicts, verdict_stats
    from boostmdr.llm import get_backend

    with get_backend("transformers", model=str(model_dir), device="cpu") as backend:
        run_verdicts(
            data["candidates"], data["train"], data["corpus"], "xx", backend, load_judge_template(PROMPT),
            JudgeSettings(max_new_tokens=24, retries=1, max_passage_words=48), out,
        )
    return verdict_stats([out], "xx", frozenset({0}), data["truth"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(model_dir: Path, log_path: Path, timeout: float = 180.0) -> Iterator[str]:
    """A real OpenAI-compatible server (`transformers serve`) for ``model_dir`` on 127.0.0.1, always shut
    down; yields its base URL (``http://127.0.0.1:PORT/v1``)."""
    import httpx
    import pytest

    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "transformers"), "serve", str(model_dir), "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
