"""Exact dense search over sharded corpus embeddings (faiss ``IndexFlatIP``), merged into one TREC run.

Each shard ``.npz`` (from :mod:`boostmdr.encode`) is loaded, searched exactly by inner product, reduced
to its top ``depth`` per query and merged into the running top ``depth``; only one shard is in memory at a
time. Ranking is deterministic, ties included: score descending, then docid ascending, both inside a
shard (a tie at a shard's cut-off is widened until every tied passage is seen) and across shards.

With ``--corpus`` instead of ``--shards`` the corpus is encoded here, in memory, and searched as one shard:
what ``python -m boostmdr.encode`` and this command do in two jobs, in one (the workflow does so where a
language's corpus is one shard and nothing else reads its index). ``--corpus`` takes several corpora, each
with its own ``--topics``, ``--stats`` and ``--out`` in the same order: one process (one start-up, one model
load) searches several languages, each corpus in memory only while its queries are searched.

Optionally, for every labelled positive of a query (``train.jsonl``), the same model's score is written
as ``qid<TAB>docid<TAB>score``, whichever shard holds the passage: the hard-negative miners compare
candidates against it.

Library entry points: :func:`search_shards` (embeddings in, run out; the generation stage reuses it
with generated queries), :func:`search_embeddings` (the same over embeddings in memory),
:func:`dense_search` (encoder + topics), :func:`encode_corpus`, :func:`topk_inner_product`,
:func:`merge_hits`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from boostmdr.encode import DEFAULT_BATCH_SIZE, corpus_size, encode_shard_passages
from boostmdr.formats import (
    FormatError,
    Hit,
    Run,
    read_shard,
    read_topics,
    read_train,
    sort_hits,
    write_positive_scores,
    write_run,
)
from boostmdr.utils import set_threads, setup_logging

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 100
"""Hits per query (Recall@100 needs 100)."""


# ------------------------------------------------------------------------------------------- search


def topk_inner_product(q_emb: np.ndarray, emb: np.ndarray, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact top-``depth`` rows of ``emb`` by inner product with each query, with every boundary tie.

    Returns, per query, ``(scores, rows)`` holding all rows whose score is at least the ``depth``-th best
    score (so possibly more than ``depth`` when passages tie at the cut-off), best first. Ties are then
    broken by the caller on docids; faiss alone would keep an arbitrary subset of tied rows.
    """
    import faiss

    q_emb = np.ascontiguousarray(q_emb, dtype=np.float32)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, nq = emb.shape[0], q_emb.shape[0]
    if nq and q_emb.shape[1] != emb.shape[1]:
        raise ValueError(f"query vectors have dimension {q_emb.shape[1]} but passages {emb.shape[1]}")
    if n == 0 or nq == 0 or depth <= 0:
        return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(nq)]
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    k = min(n, depth + 1)
    scores, rows = index.search(q_emb, k)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for qi in range(nq):
        s, r = scores[qi], rows[qi]
        kk = k
        # The depth-th score ties with the last one returned: widen until the tie run ends (or all rows).
        while kk < n and kk > depth and s[depth - 1] == s[kk - 1]:
            kk = min(n, kk * 2)
            s2, r2 = index.search(q_emb[qi : qi + 1], kk)
            s, r = s2[0], r2[0]
        cut = min(depth, kk) - 1
        keep = s >= s[cut]
        out.append((s[keep], r[keep].astype(np.int64)))
    return out


def search_shard(q_emb: np.ndarray, emb: np.ndarray, ids: Sequence[str], depth: int) -> list[list[Hit]]:
    """Top ``depth`` hits of one shard per query, ranked by score then docid."""
    return [
        sort_hits(Hit(ids[int(j)], float(s)) for s, j in zip(scores, rows, strict=True))[:depth]
        for scores, rows in topk_inner_product(q_emb, emb, depth)
    ]


def merge_hits(lists: Sequence[Sequence[Hit]], depth: int | None) -> list[Hit]:
    """Merge ranked lists of the same query (from different shards) into one top ``depth`` list."""
    merged = sort_hits(h for hits in lists for h in hits)
    return merged if depth is None else merged[:depth]


@dataclass
class SearchResult:
    run: Run
    """Top ``depth`` hits per query id (queries with no hits are absent)."""
    positive_scores: list[tuple[str, str, float]] = field(default_factory=list)
    """``(qid, docid, score)`` for each requested positive, in query order then positive order."""


def search_shards(
    q_emb: np.ndarray,
    qids: Sequence[str],
    shards: Sequence[str | os.PathLike],
    depth: int,
    positives: Mapping[str, Sequence[str]] | None = None,
    show_progress: bool = True,
) -> SearchResult:
    """Search each shard file in turn, keeping the running top ``depth`` per query (one shard in memory
    at a time); see :func:`search_embeddings`."""
    from tqdm.auto import tqdm

    if not shards:
        raise ValueError("no shard files to search")
    paths = tqdm(shards, desc="search shards", disable=not show_progress or len(shards) < 2)
    return search_embeddings(q_emb, qids, ((str(p), *read_shard(p)) for p in paths), depth, positives)


def search_embeddings(
    q_emb: np.ndarray,
    qids: Sequence[str],
    sources: Iterable[tuple[str, np.ndarray, Sequence[str]]],
    depth: int,
    positives: Mapping[str, Sequence[str]] | None = None,
) -> SearchResult:
    """Search passage embeddings ``(name, vectors [n, d], docids)`` from ``sources`` in turn, keeping the
    running top ``depth`` per query.

    ``q_emb`` rows match ``qids``. With ``positives`` (``{qid: [docid, ...]}``), also scores each
    listed positive against its query, in whichever source holds it; a positive found in none is an
    error naming it.
    """
    if len(qids) != len(q_emb):
        raise ValueError(f"{len(qids)} query ids but {len(q_emb)} query vectors")
    if len(set(qids)) != len(qids):
        raise ValueError("duplicate query ids")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    q_emb = np.ascontiguousarray(q_emb, dtype=np.float32)
    best: list[list[Hit]] = [[] for _ in qids]
    qrow = {q: i for i, q in enumerate(qids)}
    wanted: dict[str, list[tuple[int, int]]] = {}  # docid -> [(query row, position in the output)]
    pos_out: list[tuple[str, str, float] | None] = []
    for qid, docids in (positives or {}).items():
        if qid not in qrow:
            raise ValueError(f"positives given for query {qid!r}, which is not among the searched queries")
        for docid in docids:
            wanted.setdefault(docid, []).append((qrow[qid], len(pos_out)))
            pos_out.append(None)
    seen_docs = n_sources = 0
    for name, emb, ids in sources:
        t0 = time.perf_counter()
        seen_docs += len(ids)
        n_sources += 1
        if len(ids) and len(q_emb) and emb.shape[1] != q_emb.shape[1]:
            raise FormatError(
                name,
                None,
                f"passage vectors have dimension {emb.shape[1]} but the queries {q_emb.shape[1]} "
                "(shards encoded with a different model?)",
            )
        for i, hits in enumerate(search_shard(q_emb, emb, ids, depth)):
            best[i] = merge_hits([best[i], hits], depth)
        if wanted:
            row_of = {d: j for j, d in enumerate(ids)}
            for docid, targets in wanted.items():
                j = row_of.get(docid)
                if j is None:
                    continue
                for qi, slot in targets:
                    pos_out[slot] = (qids[qi], docid, float(np.dot(q_emb[qi], emb[j])))
        log.info("searched %s (%d passages) in %.1f s", name, len(ids), time.perf_counter() - t0)
        del emb, ids
    missing = sorted({docid for docid, targets in wanted.items() if pos_out[targets[0][1]] is None})
    if missing:
        raise ValueError(
            f"{len(missing)} labelled positive(s) are in none of the {n_sources} shards "
            f"({seen_docs} passages), e.g. {missing[:5]}; were the shards made from the same corpus?"
        )
    run = {qid: hits for qid, hits in zip(qids, best, strict=True) if hits}
    return SearchResult(run, [p for p in pos_out if p is not None])


def dense_search(
    encoder,
    topics: Mapping[str, str],
    shards: Sequence[str | os.PathLike] | Sequence[tuple[str, np.ndarray, Sequence[str]]],
    depth: int,
    positives: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 64,
) -> SearchResult:
    """Encode ``topics`` (``{qid: query}``) as queries with ``encoder`` and search ``shards``: shard files
    (:func:`search_shards`) or passage embeddings already in memory (:func:`search_embeddings`)."""
    qids = list(topics)
    t0 = time.perf_counter()
    q_emb = encoder.encode_queries([topics[q] for q in qids], batch_size=batch_size, show_progress=len(qids) > 2000)
    log.info("encoded %d queries in %.1f s", len(qids), time.perf_counter() - t0)
    if shards and isinstance(shards[0], tuple):
        return search_embeddings(q_emb, qids, shards, depth, positives)
    return search_shards(q_emb, qids, shards, depth, positives)


def encode_corpus(encoder, corpus: str | os.PathLike, stats: str | os.PathLike | None, batch_size: int,
                  max_tokens: int | None) -> tuple[str, np.ndarray, list[str]]:  # fmt: skip
    """The whole corpus encoded in memory, as one source for :func:`search_embeddings` (what
    ``python -m boostmdr.encode`` writes as a single shard, without the file)."""
    ids, emb = encode_shard_passages(encoder, corpus, 0, 1, corpus_size(corpus, stats), batch_size, False, max_tokens)
    return str(corpus), emb, ids


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    from boostmdr.encoder_settings import add_settings_arguments, settings_overrides

    parser = argparse.ArgumentParser(prog="python -m boostmdr.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="encoder directory or hub id (offline)")
    parser.add_argument("--topics", required=True, nargs="+", help="qid<TAB>query file (with --corpus: one per corpus)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--shards", nargs="+", help="shard .npz files (from boostmdr.encode) of one corpus")
    where.add_argument(
        "--corpus", nargs="+",
        help="prepared corpus.jsonl file(s): each is encoded here, in memory, and searched (one shard) with the "
        "--topics, --stats and --out at its position",
    )  # fmt: skip
    parser.add_argument("--stats", nargs="+", default=None, help="with --corpus: prepared stats.json (passage count), one per corpus")
    parser.add_argument(
        "--max-tokens", type=int, default=None,
        help="with --corpus: most padded tokens per passage batch (default: 1024 on CPU, none on GPU)",
    )  # fmt: skip
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    parser.add_argument("--tag", required=True, help="run tag (6th TREC column)")
    parser.add_argument("--out", required=True, nargs="+", help="output TREC run (with --corpus: one per corpus)")
    parser.add_argument(
        "--positives", nargs="+", default=None,
        help="prepared train.jsonl: score every labelled positive (with --corpus: one per corpus)",
    )  # fmt: skip
    parser.add_argument(
        "--positive-scores-out", nargs="+", default=None, help="qid<TAB>docid<TAB>score output, one per --positives"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="query encoding batch size")
    parser.add_argument("--log", default=None)
    parser.add_argument("--threads", type=int, default=None)
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log)
    set_threads(args.threads)
    if (args.positives is None) != (args.positive_scores_out is None):
        parser.error("--positives and --positive-scores-out go together")
    if any(c.isspace() for c in args.tag) or not args.tag:
        parser.error(f"--tag {args.tag!r} must be non-empty and contain no whitespace")
    sets = len(args.corpus) if args.corpus else 1
    per_set = (("--topics", args.topics), ("--out", args.out), ("--stats", args.stats), ("--positives", args.positives),
               ("--positive-scores-out", args.positive_scores_out))  # fmt: skip
    for flag, values in per_set:
        if values is not None and len(values) != sets:
            what = f"{sets} --corpus file(s)" if args.corpus else "--shards (the shards of one corpus)"
            parser.error(f"{flag}: {len(values)} given for {what}; give one per corpus, in the same order")
    outputs = [*args.out, *(args.positive_scores_out or [])]
    if len(set(outputs)) != len(outputs):
        parser.error(f"the same output file is given twice: {outputs}")
    for p in [*args.topics, *(args.shards or args.corpus), *(args.positives or [])]:
        if not Path(p).is_file():
            parser.error(f"input file not found: {p}")
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)

    all_topics = [read_topics(t) for t in args.topics]
    all_positives = [
        labelled_positives(path, topics_path, topics)
        for path, topics_path, topics in zip(args.positives, args.topics, all_topics, strict=True)
    ] if args.positives else [None] * sets  # fmt: skip
    from boostmdr.encoder import Encoder

    encoder = Encoder.from_pretrained(args.model, overrides=settings_overrides(args))
    for i, (topics, positives, out) in enumerate(zip(all_topics, all_positives, args.out, strict=True)):
        if args.corpus:
            stats = args.stats[i] if args.stats else None
            sources = [encode_corpus(encoder, args.corpus[i], stats, args.batch_size, args.max_tokens)]
        else:
            sources = args.shards
        result = dense_search(encoder, topics, sources, args.depth, positives, batch_size=args.batch_size)
        del sources
        write_run(out, result.run, args.tag, args.depth)
        log.info("wrote %s: %d of %d queries, depth %d", out, len(result.run), len(topics), args.depth)
        if args.positive_scores_out:
            write_positive_scores(args.positive_scores_out[i], result.positive_scores)
            log.info("wrote %s: %d positive scores", args.positive_scores_out[i], len(result.positive_scores))


def labelled_positives(
    train_path: str | os.PathLike, topics_path: str | os.PathLike, topics: Mapping[str, str]
) -> dict[str, list[str]]:
    """``{qid: [positive docid, ...]}`` of ``train.jsonl`` for the queries of ``topics``; every labelled query must
    be among them."""
    all_pos = {qid: list(q.positives) for qid, q in read_train(train_path).items()}
    unknown = [q for q in all_pos if q not in topics]
    if unknown:
        raise ValueError(
            f"{train_path}: {len(unknown)} queries are not in {topics_path} (e.g. {unknown[:5]}); "
            "the positives and topics must describe the same training queries"
        )
    return {q: all_pos[q] for q in topics if q in all_pos}


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
