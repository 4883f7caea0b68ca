"""Encode one contiguous shard of a prepared corpus into an ``.npz`` of embeddings and docids.

``python -m boostmdr.encode --model M --corpus results/data/LANG/corpus.jsonl --shard I --num-shards N
--out shard.npz`` encodes lines ``formats.shard_bounds(passages, I, N)`` of the corpus with the
:class:`~boostmdr.encoder.Encoder` and writes ``emb`` (float32 ``[n, d]``) and ``ids`` (docid strings),
atomically. Encoder settings come from the model's ``boostmdr_encoder.json`` or from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from boostmdr.formats import FormatError, open_text, passage_text, read_corpus, read_json, shard_bounds, write_shard
from boostmdr.utils import set_threads, setup_logging

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
"""Texts per encoding batch (corpus shards here, queries in boostmdr.search)."""


def count_lines(path: str | os.PathLike) -> int:
    """Number of non-empty lines of a (possibly gzipped) text file."""
    with open_text(path) as fh:
        return sum(1 for line in fh if line.strip())


def corpus_size(corpus: str | os.PathLike, stats: str | os.PathLike | None = None) -> int:
    """Passages in ``corpus``: from the prepared ``stats.json`` when given, else by counting lines."""
    if stats is None:
        return count_lines(corpus)
    data = read_json(stats)
    n = data.get("passages") if isinstance(data, dict) else None
    if not isinstance(n, int) or n < 0:
        raise FormatError(stats, None, "expected an integer 'passages' field")
    return n


def read_shard_passages(
    corpus: str | os.PathLike, shard: int, num_shards: int, n_passages: int
) -> tuple[list[str], list[str]]:
    """``(docids, texts)`` of shard ``shard`` of ``num_shards`` (contiguous line range)."""
    start, stop = shard_bounds(n_passages, shard, num_shards)
    ids: list[str] = []
    texts: list[str] = []
    for doc in read_corpus(corpus, start, stop):
        ids.append(doc["docid"])
        texts.append(passage_text(doc))
    if len(ids) != stop - start:
        raise FormatError(
            corpus,
            None,
            f"shard {shard}/{num_shards} should hold lines {start}..{stop - 1} but the file has "
            f"only {start + len(ids)} lines (is the passage count from stats.json stale?)",
        )
    return ids, texts


def encode_shard_passages(
    encoder,
    corpus: str | os.PathLike,
    shard: int,
    num_shards: int,
    n_passages: int | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
    max_tokens: int | None = None,
) -> tuple[list[str], np.ndarray]:
    """``(docids, embeddings)`` of shard ``shard`` of ``num_shards``, encoded with ``encoder`` (logged)."""
    if n_passages is None:
        n_passages = count_lines(corpus)
    ids, texts = read_shard_passages(corpus, shard, num_shards, n_passages)
    t0 = time.perf_counter()
    emb = encoder.encode_passages(texts, batch_size=batch_size, show_progress=show_progress, max_tokens=max_tokens)
    dt = time.perf_counter() - t0
    log.info(
        "shard %d/%d of %s: %d passages encoded in %.1f s (%.0f/s), dim %d",
        shard,
        num_shards,
        corpus,
        len(ids),
        dt,
        len(ids) / dt if dt > 0 else 0.0,
        emb.shape[1],
    )
    return ids, emb


def encode_shard(
    encoder,
    corpus: str | os.PathLike,
    shard: int,
    num_shards: int,
    out: str | os.PathLike,
    n_passages: int | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
    max_tokens: int | None = None,
) -> int:
    """Encode one corpus shard with ``encoder`` and write it to ``out``; returns the passage count."""
    ids, emb = encode_shard_passages(encoder, corpus, shard, num_shards, n_passages, batch_size, show_progress, max_tokens)
    write_shard(out, emb, ids)
    log.info("wrote %s", out)
    return len(ids)


def main(argv: Sequence[str] | None = None) -> None:
    from boostmdr.encoder_settings import add_settings_arguments, settings_overrides

    parser = argparse.ArgumentParser(prog="python -m boostmdr.encode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="encoder directory or hub id (offline)")
    parser.add_argument("--corpus", required=True, help="prepared corpus.jsonl")
    parser.add_argument("--stats", default=None, help="prepared stats.json (passage count; else lines are counted)")
    parser.add_argument("--shard", type=int, required=True, help="0-based shard index")
    parser.add_argument("--num-shards", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="most passages per batch")
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="most padded tokens per batch (default: 1024 on CPU, none on GPU)"
    )
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--log", default=None)
    parser.add_argument("--threads", type=int, default=None)
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log)
    set_threads(args.threads)
    if not Path(args.corpus).is_file():
        parser.error(f"--corpus {args.corpus}: no such file")
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard {args.shard} must be in 0..{args.num_shards - 1} (--num-shards {args.num_shards})")
    from boostmdr.encoder import Encoder

    encoder = Encoder.from_pretrained(args.model, overrides=settings_overrides(args))
    encode_shard(
        encoder,
        args.corpus,
        args.shard,
        args.num_shards,
        args.out,
        n_passages=corpus_size(args.corpus, args.stats),
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
    )


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
