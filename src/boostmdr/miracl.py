"""Load one language of MIRACL from its raw layout and write the prepared files (docs/formats.md).

The same loader reads the real MIRACL files (once they are on disk) and the synthetic benchmark of
:mod:`boostmdr.demo.synthetic`; both use the raw layout::

    {raw}/miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv    qid<TAB>query
    {raw}/miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv      qid Q0 docid rel
    {raw}/miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz                           {"docid", "title", "text"}

It validates everything and stops at the first problem with a :class:`~boostmdr.formats.FormatError`
naming the file and line: a malformed line, a relevance other than 0 or 1, a duplicate judgement or
docid (naming both lines), a judgement of an unknown query or document, a corrupt gzip. A missing
file is a :class:`FileNotFoundError` naming the expected path. A train query without a positive
judgement is not an error: it is dropped, logged and counted in ``stats.json``.

The corpus is streamed: shards are read in sorted file-name order and ``corpus.jsonl`` keeps that
order. Apart from the judged docids, the only per-passage state is one 64-bit hash per docid (for
the duplicate check), so English's 33M passages need about 270 MB.
"""

from __future__ import annotations

import argparse
import logging
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from boostmdr.formats import (
    FormatError,
    check_id,
    LabelledQuery,
    iter_qrels,
    read_jsonl,
    read_topics,
    write_corpus,
    write_json,
    write_qrels,
    write_topics,
    write_train,
)
from boostmdr.utils import setup_logging

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawLayout:
    """Where the raw files of one language are."""

    raw_dir: Path
    lang: str

    def topics(self, split: str) -> Path:
        return self.raw_dir / f"miracl-v1.0-{self.lang}" / "topics" / f"topics.miracl-v1.0-{self.lang}-{split}.tsv"

    def qrels(self, split: str) -> Path:
        return self.raw_dir / f"miracl-v1.0-{self.lang}" / "qrels" / f"qrels.miracl-v1.0-{self.lang}-{split}.tsv"

    @property
    def corpus_dir(self) -> Path:
        return self.raw_dir / f"miracl-corpus-v1.0-{self.lang}"

    def corpus_shards(self) -> list[Path]:
        """The corpus files, in sorted file-name order (the order of ``corpus.jsonl``)."""
        if not self.corpus_dir.is_dir():
            raise FileNotFoundError(f"{self.corpus_dir}: missing corpus directory (expected docs-*.jsonl.gz inside)")
        shards = sorted(self.corpus_dir.glob("docs-*.jsonl.gz"), key=lambda p: p.name)
        if not shards:
            raise FileNotFoundError(f"{self.corpus_dir}: no corpus files matching docs-*.jsonl.gz")
        return shards


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing {what} (expected the raw MIRACL layout, see docs/formats.md)")
    return path


# ------------------------------------------------------------------------------------------- qrels


@dataclass
class Judgements:
    """The judgements of one split, in file order, with where each docid was first named."""

    path: Path
    by_query: dict[str, list[tuple[str, int]]]
    first_line: dict[str, int]  # docid -> first line naming it


def read_judgements(path: Path, topics: dict[str, str]) -> Judgements:
    """Read and validate MIRACL qrels ``qid Q0 docid rel`` against the split's topics."""
    by_query: dict[str, list[tuple[str, int]]] = {}
    first_line: dict[str, int] = {}
    seen: dict[tuple[str, str], int] = {}
    for lineno, qid, docid, rel_i in iter_qrels(path):
        if rel_i not in (0, 1):
            raise FormatError(path, lineno, f"relevance {rel_i} is not 0 or 1 (MIRACL judgements are binary)")
        if qid not in topics:
            raise FormatError(path, lineno, f"judgement of unknown query {qid!r} (not in the topics file)")
        if (qid, docid) in seen:
            raise FormatError(
                path,
                lineno,
                f"duplicate judgement of query {qid!r}, document {docid!r} (first at line {seen[qid, docid]})",
            )
        seen[qid, docid] = lineno
        by_query.setdefault(qid, []).append((docid, rel_i))
        first_line.setdefault(docid, lineno)
    return Judgements(Path(path), by_query, first_line)


# ------------------------------------------------------------------------------------------ corpus


def _iter_shard(shard: Path):
    """``(line, record)`` of a corpus shard; a corrupt gzip or bad UTF-8 names the file and line."""
    last = 0
    try:
        for lineno, rec in read_jsonl(shard):
            last = lineno
            yield lineno, rec
    except FormatError as err:
        if err.line is not None:
            raise
        raise FormatError(shard, last + 1, f"unreadable after line {last}: {str(err)[len(err.path) + 2 :]}") from None
    except (zlib.error, UnicodeDecodeError, EOFError) as err:
        raise FormatError(shard, last + 1, f"unreadable after line {last} ({type(err).__name__}: {err})") from None


def _check_record(shard: Path, lineno: int, rec: dict) -> tuple[str, str, str]:
    docid, text, title = rec.get("docid"), rec.get("text"), rec.get("title", "")
    if not isinstance(docid, str) or not docid.strip():
        raise FormatError(shard, lineno, f"missing or empty 'docid' (a non-empty string), got {docid!r}")
    check_id(shard, lineno, "docid", docid)
    if not isinstance(text, str):
        raise FormatError(shard, lineno, f"missing 'text' (a string) for docid {docid!r}")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise FormatError(shard, lineno, f"'title' of docid {docid!r} is not a string")
    return docid, title, text


def _find_duplicate(shards: list[Path], suspects: set[int]) -> None:
    """Second pass over the corpus when two docids share a hash: raise naming both lines if equal."""
    first: dict[str, tuple[Path, int]] = {}
    for shard in shards:
        for lineno, rec in _iter_shard(shard):
            docid = rec["docid"]
            if hash(docid) not in suspects:
                continue
            if docid in first:
                where, line = first[docid]
                raise FormatError(shard, lineno, f"duplicate docid {docid!r} (first at {where}:{line})")
            first[docid] = (shard, lineno)


def _unknown_document(judgements: list[Judgements], missing: set[str], corpus_dir: Path) -> FormatError:
    """The error for judged docids absent from the corpus: names the first in file order."""
    for judged in judgements:
        lines = sorted((judged.first_line[d], d) for d in missing if d in judged.first_line)
        if lines:
            line, docid = lines[0]
            return FormatError(
                judged.path, line,
                f"judgement of unknown document {docid!r} (not in the corpus {corpus_dir}); "
                f"{len(missing)} judged docid(s) missing in total",
            )
    raise AssertionError("missing docids that no judgement names")


def convert_corpus(shards: list[Path], out_path: Path, judgements: list[Judgements]) -> dict:
    """Validate the shards against the judgements and write ``corpus.jsonl``; returns counts.

    Nothing is written if a docid is duplicated or a judged docid is not in the corpus.
    """
    needed = set().union(*(j.first_line for j in judgements))
    counts = {"passages": 0, "empty_texts": 0}

    def passages():
        hashes = array("q")
        found: set[str] = set()
        with tqdm(desc="corpus", unit="passage", unit_scale=True, leave=False) as bar:
            for shard in shards:
                for lineno, rec in _iter_shard(shard):
                    docid, title, text = _check_record(shard, lineno, rec)
                    hashes.append(hash(docid))
                    if docid in needed:
                        found.add(docid)
                    if not text.strip():
                        counts["empty_texts"] += 1
                    yield docid, title, text
                    counts["passages"] += 1
                    if counts["passages"] % 10000 == 0:
                        bar.update(10000)
                log.info("read %s (%d passages so far)", shard, counts["passages"])
            bar.update(counts["passages"] % 10000)
        # Still inside write_corpus's atomic write: a failed check leaves no corpus.jsonl.
        if counts["passages"] == 0:
            raise FormatError(shards[0], None, "the corpus has no passages")
        h = np.sort(np.frombuffer(hashes, dtype=np.int64))
        clash = h[1:][h[1:] == h[:-1]]
        if len(clash):
            _find_duplicate(shards, set(clash.tolist()))
        if needed - found:
            raise _unknown_document(judgements, needed - found, shards[0].parent)

    write_corpus(out_path, passages())
    return counts


# ------------------------------------------------------------------------------------------ prepare


def prepare(raw_dir: str | Path, lang: str, out_dir: str | Path, eval_split: str = "dev") -> dict:
    """Validate one language's raw files and write the prepared files of docs/formats.md."""
    if eval_split == "train":
        raise ValueError("eval_split must not be 'train' (train queries are for training)")
    layout = RawLayout(Path(raw_dir), lang)
    out = Path(out_dir)
    paths = {
        "train_topics": _require(layout.topics("train"), "train topics"),
        "train_qrels": _require(layout.qrels("train"), "train qrels"),
        "eval_topics": _require(layout.topics(eval_split), f"{eval_split} topics"),
        "eval_qrels": _require(layout.qrels(eval_split), f"{eval_split} qrels"),
    }
    shards = layout.corpus_shards()

    train_topics = read_topics(paths["train_topics"])
    eval_topics = read_topics(paths["eval_topics"])
    train = read_judgements(paths["train_qrels"], train_topics)
    evals = read_judgements(paths["eval_qrels"], eval_topics)
    counts = convert_corpus(shards, out / "corpus.jsonl", [train, evals])

    records, kept_topics, dropped = [], {}, []
    for qid, query in train_topics.items():
        judged = train.by_query.get(qid, [])
        positives = [d for d, r in judged if r == 1]
        if not positives:
            dropped.append(qid)
            continue
        negatives = [d for d, r in judged if r == 0]
        records.append(LabelledQuery(qid, query, tuple(positives), tuple(negatives)))
        kept_topics[qid] = query
    if dropped:
        log.warning(
            "%s: dropped %d of %d train queries without a positive judgement (e.g. %s)",
            paths["train_qrels"], len(dropped), len(train_topics), ", ".join(dropped[:5]),
        )
    eval_no_judgement = [q for q in eval_topics if q not in evals.by_query]
    eval_no_positive = [q for q in evals.by_query if not any(r == 1 for _, r in evals.by_query[q])]
    if eval_no_judgement or eval_no_positive:
        log.warning(
            "%s: %d %s queries have no judgement and %d only rel-0 judgements (they score 0 under trec_eval -c)",
            paths["eval_qrels"], len(eval_no_judgement), eval_split, len(eval_no_positive),
        )

    write_train(out / "train.jsonl", records)
    write_topics(out / "train.topics.tsv", kept_topics)
    write_topics(out / "dev.topics.tsv", eval_topics)
    write_qrels(out / "dev.qrels.tsv", {qid: dict(judged) for qid, judged in evals.by_query.items()})

    stats = {
        "lang": lang,
        "passages": counts["passages"],
        "train_queries": len(records),
        "train_dropped_no_positive": len(dropped),
        "dev_queries": len(eval_topics),
        "eval_split": eval_split,
        "corpus_shards": len(shards),
        "empty_texts": counts["empty_texts"],
        "train_topics_raw": len(train_topics),
        "train_positives": sum(len(r.positives) for r in records),
        "train_negatives": sum(len(r.negatives) for r in records),
        "dev_judgements": sum(len(j) for j in evals.by_query.values()),
        "dev_positives": sum(r for j in evals.by_query.values() for _, r in j),
        "dev_queries_no_positive": len(eval_no_judgement) + len(eval_no_positive),
    }
    write_json(out / "stats.json", stats)
    log.info("prepared %s in %s: %s", lang, out, stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boostmdr.miracl", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="validate one language's raw MIRACL files and write results/data/LANG/")
    p.add_argument(
        "--raw-dir", required=True, help="root of the raw layout (miracl-v1.0-LANG/, miracl-corpus-v1.0-LANG/)"
    )
    p.add_argument("--lang", required=True, help="MIRACL language code, e.g. sw")
    p.add_argument("--out-dir", required=True, help="output directory, e.g. results/data/sw")
    p.add_argument("--eval-split", default="dev", help="split evaluated on (written as dev.topics.tsv / dev.qrels.tsv)")
    p.add_argument("--log", default=None, help="log file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    prepare(args.raw_dir, args.lang, args.out_dir, args.eval_split)
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
