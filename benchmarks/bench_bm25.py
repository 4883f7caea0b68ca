"""BM25 throughput: boostmdr.bm25 vs Pyserini used directly, on the same Lucene index and queries.

Data: a synthetic corpus of 50,000 short passages (8 to 30 pseudo-words drawn from a Zipf-like
vocabulary of 20,000 lowercase pseudo-words) and 2,000 queries of 2 to 6 words taken from random
passages, indexed as Swahili (whitespace analyzer).

Search (the main number): ours is ``BM25Searcher.search`` + ``formats.write_run``; the reference is
what ``python -m pyserini.search.lucene --bm25 --batch-size N`` does: ``LuceneSearcher`` with
``set_language``/``set_bm25``, ``batch_search`` in batches of the same size, written by Pyserini's
own ``TrecWriter``. Both return depth 100 with the same thread count.
Fairness: the JVM starts once per process, so both run in ONE worker process on one searcher JVM:
a warm-up pass first (JIT compilation, page cache), then rounds in which the two sides take turns
batch by batch on the same queries (which side goes first alternates), the median round of each
reported. Sharing the process removes start-up and JVM-to-JVM differences; interleaving batch by batch
spreads the load of other jobs on this shared machine evenly over both sides. The two runs are
also compared line by line (same documents and scores per query).

Indexing (secondary): our ``index`` step (corpus conversion to a JsonCollection + Anserini
``IndexCollection``) vs Anserini's ``IndexCollection`` alone on an already converted collection,
each in its own process including JVM start, same thread count, alternating, best of two.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_DOCS = 50_000
N_QUERIES = 2_000
VOCAB = 20_000
DEPTH = 100
BATCH = 250
THREADS = 1
ROUNDS = 3
INDEX_ROUNDS = 2
SEED = 11
LANG = "sw"
REPO = Path(__file__).resolve().parents[1]


def make_data(out: Path, n_docs: int = N_DOCS, n_queries: int = N_QUERIES, seed: int = SEED) -> tuple[Path, Path]:
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwyz" for v in "aeiou"]
    vocab: list[str] = []
    seen: set[str] = set()
    while len(vocab) < VOCAB:
        w = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    weights = [1.0 / (r + 1) for r in range(VOCAB)]  # Zipf-like word frequencies
    corpus, topics = out / "corpus.jsonl", out / "topics.tsv"
    docs = []
    with open(corpus, "w", encoding="utf-8") as fh:
        for i in range(n_docs):
            words = rng.choices(vocab, weights, k=rng.randint(8, 30))
            docs.append(words)
            fh.write(json.dumps({"docid": f"{i}#0", "title": words[0], "text": " ".join(words[1:])}) + "\n")
    with open(topics, "w", encoding="utf-8") as fh:
        for q in range(n_queries):
            words = docs[rng.randrange(n_docs)]
            fh.write(f"q{q}\t{' '.join(rng.sample(words, min(len(words), rng.randint(2, 6))))}\n")
    return corpus, topics


# ------------------------------------------------------------------------------- worker (own process)


def _worker_index_ours(corpus: str, index: str) -> dict:
    t0 = time.perf_counter()
    from boostmdr.bm25 import build_index

    meta = build_index(corpus, LANG, index, threads=THREADS)
    return {"seconds": time.perf_counter() - t0, "docs": meta.indexed}


def _worker_index_direct(collection: str, index: str) -> dict:
    t0 = time.perf_counter()
    from boostmdr.lucene import import_pyserini

    import_pyserini("pyserini.pyclass")
    from jnius import autoclass

    args = ["-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator", "-input", collection,
            "-index", index, "-language", LANG, "-storeRaw", "-threads", str(THREADS), "-quiet"]
    autoclass("io.anserini.index.IndexCollection").main(args)
    return {"seconds": time.perf_counter() - t0}


def _worker_search(index: str, topics_path: str, out_dir: str) -> dict:
    from boostmdr import formats
    from boostmdr.bm25 import BM25Searcher, BM25Settings
    from boostmdr.lucene import import_pyserini

    out = Path(out_dir)
    topics = formats.read_topics(topics_path)
    ours = BM25Searcher(index, LANG, BM25Settings(k1=0.9, b=0.4, depth=DEPTH))
    lucene = import_pyserini("pyserini.search.lucene")
    writer_mod = import_pyserini("pyserini.output_writer")
    ref = lucene.LuceneSearcher(index)
    ref.set_language(LANG)
    ref.set_bm25(0.9, 0.4)

    def one_round(ours_path: Path, ref_path: Path, items: dict[str, str]) -> tuple[float, float]:
        """Both sides over the same batches, interleaved batch by batch (first side alternating)."""
        qids = list(items)
        t_ours = t_ref = 0.0
        run: dict = {}
        writer = writer_mod.get_output_writer(str(ref_path), writer_mod.OutputFormat.TREC, "w", max_hits=DEPTH,
                                              tag="bm25")
        with writer:
            for i, s in enumerate(range(0, len(qids), BATCH)):
                batch = qids[s:s + BATCH]
                sub = {q: items[q] for q in batch}
                for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                    t0 = time.perf_counter()
                    if side == 0:  # ours: BM25Searcher.search (hits become formats.Hit)
                        run.update(ours.search(sub, threads=THREADS, batch_size=BATCH))
                        t_ours += time.perf_counter() - t0
                    else:  # reference: LuceneSearcher.batch_search + Pyserini's TrecWriter
                        results = ref.batch_search([items[q] for q in batch], batch, DEPTH, THREADS)
                        for q in batch:
                            writer.write(q, results[q])
                        t_ref += time.perf_counter() - t0
        t0 = time.perf_counter()
        formats.write_run(ours_path, run, tag="bm25", depth=DEPTH)
        t_ours += time.perf_counter() - t0
        return t_ours, t_ref

    one_round(out / "warm-ours.trec", out / "warm-ref.trec", dict(list(topics.items())[:2 * BATCH]))
    t_ours, t_ref = [], []
    for _ in range(ROUNDS):
        a, b = one_round(out / "ours.trec", out / "ref.trec", topics)
        t_ours.append(a)
        t_ref.append(b)

    def keyed(path: Path) -> dict:
        rows: dict[str, set] = {}
        for line in path.read_text().splitlines():
            q, _, d, _, s, _ = line.split()
            rows.setdefault(q, set()).add((d, s))
        return rows

    a, b = keyed(out / "ours.trec"), keyed(out / "ref.trec")
    same_lines = (out / "ours.trec").read_text() == (out / "ref.trec").read_text()
    return {"ours": t_ours, "ref": t_ref, "queries": len(topics), "same_hits": a == b, "same_lines": same_lines}


WORKERS = {"index-ours": _worker_index_ours, "index-direct": _worker_index_direct, "search": _worker_search}


def _spawn(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_bm25", name, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_bm25 worker {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> list[str]:
    from boostmdr.bm25 import write_json_collection

    with tempfile.TemporaryDirectory(prefix="bench-bm25-") as tmp:
        tmp_path = Path(tmp)
        corpus, topics = make_data(tmp_path)
        write_json_collection(corpus, tmp_path / "collection", num_files=THREADS)
        ix_ours, ix_ref = [], []
        for i in range(INDEX_ROUNDS):  # alternate the two indexers; the index of the last round is searched
            ix_ours.append(_spawn("index-ours", str(corpus), str(tmp_path / "index-ours"))["seconds"])
            ix_ref.append(_spawn("index-direct", str(tmp_path / "collection"), str(tmp_path / f"index-direct{i}"))[
                "seconds"])
        res = _spawn("search", str(tmp_path / "index-ours"), str(topics), str(tmp_path))

    med_ours, med_ref = statistics.median(res["ours"]), statistics.median(res["ref"])
    n = res["queries"]
    qps_ours, qps_ref = n / med_ours, n / med_ref
    return [
        f"   corpus {N_DOCS} passages, {n} queries, depth {DEPTH}, batch {BATCH}, threads {THREADS}, "
        f"{ROUNDS} alternating rounds (median)",
        f"   search  boostmdr.bm25 : {qps_ours:8.0f} queries/s  ({med_ours:.2f} s; rounds "
        + ", ".join(f"{t:.2f}" for t in res["ours"]) + ")",
        f"   search  pyserini      : {qps_ref:8.0f} queries/s  ({med_ref:.2f} s; rounds "
        + ", ".join(f"{t:.2f}" for t in res["ref"]) + ")",
        f"   search  ratio ours/pyserini throughput: {qps_ours / qps_ref:.2f}   "
        f"same hits and scores: {res['same_hits']}; identical files: {res['same_lines']}",
        f"   index   boostmdr.bm25 (convert + index): {min(ix_ours):.1f} s;  "
        f"Anserini IndexCollection alone: {min(ix_ref):.1f} s;  ratio {min(ix_ours) / min(ix_ref):.2f}  "
        f"(best of {INDEX_ROUNDS}, each a fresh process with JVM start)",
    ]


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = WORKERS[sys.argv[1]](*sys.argv[2:])
    sys.stdout.write(json.dumps(result) + "\n")
