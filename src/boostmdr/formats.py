"""File formats shared by every step of the workflow (see docs/formats.md).

Everything here reads or writes plain files: JSON lines (optionally gzipped), TREC runs, TREC qrels,
topic TSVs and the negatives files that miners, the stage-1 judge and the stage-2 generator all write.
Readers raise :class:`FormatError`, which names the file and the 1-based line of the problem.
Writers go through :func:`atomic_write`, so a killed step never leaves a complete-looking file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class FormatError(ValueError):
    """A malformed input file; the message names the file and, where known, the line."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------------------------- files


def open_text(path: str | os.PathLike, mode: str = "rt") -> IO[str]:
    """Open a text file, transparently gzip-compressed when the name ends in ``.gz``."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wt", compresslevel: int = 6) -> Iterator[IO]:
    """Write ``path`` through a temporary sibling that is renamed into place only on success.

    A step killed half-way leaves no file at ``path`` (only a ``.tmp`` sibling that the next run
    overwrites), so Snakemake and the user never see a truncated output that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if str(path).endswith(".gz"):
            # No file name and a zero timestamp in the gzip header: the same content gives the same bytes.
            with open(tmp, "wb") as raw_file:
                gz = gzip.GzipFile(filename="", mode="wb", compresslevel=compresslevel, fileobj=raw_file, mtime=0)
                fh: IO = gz if "b" in mode else io.TextIOWrapper(gz, encoding="utf-8")
                with fh:
                    yield fh
        else:
            with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
                yield fh
        # mkstemp creates the file 0600; give it the permissions a normal file gets under the current umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every non-empty line; bad JSON names file and line."""
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    raise FormatError(path, lineno, f"not valid JSON ({err.msg})") from None
                if not isinstance(rec, dict):
                    raise FormatError(path, lineno, "expected a JSON object")
                yield lineno, rec
    except (gzip.BadGzipFile, EOFError, OSError, zlib.error, UnicodeDecodeError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise FormatError(path, None, f"cannot read ({type(err).__name__}: {err})") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically, one JSON object per line; returns the count."""
    n = 0
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=False)
        fh.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open_text(path) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as err:
            raise FormatError(path, err.lineno, f"not valid JSON ({err.msg})") from None


# --------------------------------------------------------------------------------- topics and qrels


def read_topics(path: str | os.PathLike) -> dict[str, str]:
    """Read ``qid<TAB>query`` lines (MIRACL topics). Query ids are strings."""
    topics: dict[str, str] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise FormatError(path, lineno, f"expected 'qid<TAB>query', got {len(parts)} tab-separated fields")
            qid, query = parts[0].strip(), parts[1].strip()
            if not qid or not query:
                raise FormatError(path, lineno, "empty query id or query text")
            if qid in topics:
                raise FormatError(path, lineno, f"duplicate query id {qid!r}")
            topics[qid] = query
    return topics


def write_topics(path: str | os.PathLike, topics: dict[str, str] | Iterable[tuple[str, str]]) -> None:
    items = topics.items() if isinstance(topics, dict) else topics
    with atomic_write(path) as fh:
        for qid, query in items:
            if "\t" in query or "\n" in query:
                raise ValueError(f"query {qid!r} contains a tab or newline")
            fh.write(f"{qid}\t{query}\n")


def iter_qrels(path: str | os.PathLike) -> Iterator[tuple[int, str, str, int]]:
    """Yield ``(line_number, qid, docid, rel)`` for every TREC qrels line ``qid Q0 docid rel``."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise FormatError(path, lineno, f"expected 'qid Q0 docid rel', got {len(parts)} fields")
            qid, _, docid, rel = parts
            try:
                rel_i = int(rel)
            except ValueError:
                raise FormatError(path, lineno, f"relevance {rel!r} is not an integer") from None
            yield lineno, qid, docid, rel_i


def nest_by_query(
    path: str | os.PathLike, rows: Iterable[tuple[int, str, str, Any]], what: str
) -> dict[str, dict[str, Any]]:
    """``{qid: {docid: value}}`` from ``(line_number, qid, docid, value)`` rows of ``path``; a repeated
    (qid, docid) is an error naming its line and ``what`` the value is."""
    out: dict[str, dict[str, Any]] = {}
    for lineno, qid, docid, value in rows:
        docs = out.setdefault(qid, {})
        if docid in docs:
            raise FormatError(path, lineno, f"duplicate {what} for query {qid!r}, document {docid!r}")
        docs[docid] = value
    return out


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read TREC qrels ``qid Q0 docid rel`` (whitespace separated) into ``{qid: {docid: rel}}``."""
    return nest_by_query(path, iter_qrels(path), "judgement")


def write_qrels(path: str | os.PathLike, qrels: dict[str, dict[str, int]]) -> None:
    with atomic_write(path) as fh:
        for qid, docs in qrels.items():
            for docid, rel in docs.items():
                fh.write(f"{qid} Q0 {docid} {rel}\n")


def iter_positive_scores(path: str | os.PathLike) -> Iterator[tuple[int, str, str, float]]:
    """Yield ``(line_number, qid, docid, score)`` for every ``qid<TAB>docid<TAB>score`` line of a
    candidate run's ``.positives.tsv`` (docs/formats.md)."""
    import math

    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise FormatError(path, lineno, f"expected 'qid<TAB>docid<TAB>score', got {len(parts)} fields")
            qid, docid, score = (p.strip() for p in parts)
            try:
                value = float(score)
            except ValueError:
                raise FormatError(path, lineno, f"score {score!r} is not a number") from None
            if not math.isfinite(value):
                raise FormatError(path, lineno, f"score {score!r} is not finite")
            yield lineno, qid, docid, value


def read_positive_scores(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read a ``.positives.tsv`` into ``{qid: {docid: score}}``; a repeated (qid, docid) is an error."""
    return nest_by_query(path, iter_positive_scores(path), "score")


# -------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float


Run = dict[str, list[Hit]]
"""A ranked list per query id, best first."""


def sort_hits(hits: Iterable[Hit]) -> list[Hit]:
    """Deterministic ranking: score descending, ties broken by docid ascending (as Pyserini does)."""
    return sorted(hits, key=lambda h: (-h.score, h.docid))


def read_run(path: str | os.PathLike) -> Run:
    """Read a TREC run ``qid Q0 docid rank score tag``; hits are returned sorted by score."""
    run: dict[str, list[Hit]] = {}
    seen: set[tuple[str, str]] = set()
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise FormatError(path, lineno, f"expected 'qid Q0 docid rank score tag', got {len(parts)} fields")
            qid, _, docid, _rank, score, _tag = parts
            try:
                s = float(score)
            except ValueError:
                raise FormatError(path, lineno, f"score {score!r} is not a number") from None
            if (qid, docid) in seen:
                raise FormatError(path, lineno, f"document {docid!r} appears twice for query {qid!r}")
            seen.add((qid, docid))
            run.setdefault(qid, []).append(Hit(docid, s))
    return {qid: sort_hits(hits) for qid, hits in run.items()}


def write_run(path: str | os.PathLike, run: Run, tag: str, depth: int | None = None) -> None:
    """Write a TREC run atomically; hits are re-sorted deterministically and cut at ``depth``."""
    with atomic_write(path) as fh:
        for qid, hits in run.items():
            ranked = sort_hits(hits)
            if depth is not None:
                ranked = ranked[:depth]
            for rank, hit in enumerate(ranked, start=1):
                fh.write(f"{qid} Q0 {hit.docid} {rank} {hit.score:.6f} {tag}\n")


# ------------------------------------------------------------------------------------------ corpus


def read_corpus(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[dict]:
    """Yield prepared-corpus records ``{"docid", "title", "text"}`` for lines ``start <= i < stop``."""
    with open_text(path) as fh:
        for i, line in enumerate(fh):
            if i < start:
                continue
            if stop is not None and i >= stop:
                break
            yield json.loads(line)


def passage_text(doc: dict, separator: str = " ") -> str:
    """The text a retriever sees for a passage: title and text joined (Tevatron's convention)."""
    title = doc.get("title") or ""
    return f"{title}{separator}{doc['text']}" if title else doc["text"]


def shard_bounds(n_items: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` line range of shard ``shard`` (0-based) out of ``num_shards``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for {num_shards} shards")
    base, extra = divmod(n_items, num_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


# ------------------------------------------------------------------------------------- negatives


@dataclass
class Negative:
    """One hard negative of a query: its docid, the score that ranked it, and where it came from.

    ``source`` is a short provenance tag, e.g. ``"miner:naive_topk"``, ``"stage1:rrf"``,
    ``"stage2:pdbg"``; ``extra`` holds any step-specific detail (verdict, fused rank, ...).
    """

    docid: str
    score: float | None = None
    rank: int | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"docid": self.docid, "score": self.score, "rank": self.rank, "source": self.source}
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass
class NegativesRecord:
    """One line of a negatives file: a training query, its positives and its chosen negatives."""

    qid: str
    query: str
    lang: str
    positives: list[str]
    negatives: list[Negative]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "qid": self.qid,
            "query": self.query,
            "lang": self.lang,
            "positives": list(self.positives),
            "negatives": [n.to_json() for n in self.negatives],
        }
        if self.meta:
            out["meta"] = self.meta
        return out


def read_negatives(path: str | os.PathLike) -> list[NegativesRecord]:
    """Read a negatives file (docs/formats.md); errors name the file and line."""
    out: list[NegativesRecord] = []
    for lineno, rec in read_jsonl(path):
        try:
            negs = [
                Negative(
                    docid=str(n["docid"]),
                    score=n.get("score"),
                    rank=n.get("rank"),
                    source=n.get("source", ""),
                    extra=n.get("extra", {}),
                )
                for n in rec["negatives"]
            ]
            out.append(
                NegativesRecord(
                    qid=str(rec["qid"]),
                    query=rec["query"],
                    lang=rec["lang"],
                    positives=[str(p) for p in rec["positives"]],
                    negatives=negs,
                    meta=rec.get("meta", {}),
                )
            )
        except (KeyError, TypeError) as err:
            raise FormatError(path, lineno, f"not a negatives record (missing or malformed field: {err})") from None
    return out


def write_negatives(path: str | os.PathLike, records: Iterable[NegativesRecord]) -> int:
    return write_jsonl(path, (r.to_json() for r in records))
