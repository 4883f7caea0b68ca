"""File formats shared by every step of the workflow (see docs/formats.md).

Every format that passes between rules has its one reader and its one writer here: JSON lines
(optionally gzipped), topic TSVs, TREC qrels and runs, the prepared ``train.jsonl`` and ``corpus.jsonl``,
candidate positive scores, corpus shard embeddings, verdict files, evaluation records, the negatives
files that miners, the stage-1 judge and the stage-2 generator all write, and stage 3's topic files and
batch manifests. Readers raise
:class:`FormatError`, which names the file and the 1-based line of the problem. Writers go through
:func:`atomic_write`, so a killed step never leaves a complete-looking file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


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


BOM = "\ufeff"
_CONTROL = {chr(c) for c in range(32)} | {chr(127)}


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of a UTF-8 text file (gzip when the name ends in ``.gz``),
    without the line break.

    Lines are decoded one at a time, so a byte that is not UTF-8 is reported at its file, line and column
    instead of as a bare codec error. A byte-order mark at the start of the file is accepted and dropped
    (files saved by some Windows editors carry one); anywhere else it is an ordinary character.
    """
    name = str(path)
    try:
        fh = gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")
        with fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise FormatError(
                        path, lineno, f"not valid UTF-8: byte 0x{raw[err.start]:02x} at column {err.start + 1}"
                    ) from None
                if lineno == 1 and line.startswith(BOM):
                    line = line[1:]
                yield lineno, line.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise FormatError(path, None, f"cannot read ({type(err).__name__}: {err})") from None
    except OSError as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise FormatError(path, None, f"cannot read ({type(err).__name__}: {err})") from None


def check_id(path: str | os.PathLike, lineno: int | None, kind: str, value: str) -> str:
    """An identifier (query id, docid) free of whitespace and control characters: TREC files are
    whitespace-separated, and a control character is always a corrupted file."""
    if not value:
        raise FormatError(path, lineno, f"empty {kind}")
    bad = [c for c in value if c.isspace() or c in _CONTROL]
    if bad:
        raise FormatError(path, lineno, f"{kind} {value!r} contains whitespace or a control character ({bad[0]!r})")
    return value


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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it into ``path`` only on success.

    An existing ``path`` is replaced whole (no file of an earlier run survives beside the new ones); a step
    killed half-way leaves no complete-looking directory. The directory gets the permissions a normal
    directory gets under the current umask (``mkdtemp`` would leave it 0700, unreadable for a cluster group).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_object(path: str | os.PathLike, lineno: int, line: str) -> dict:
    """One JSON-lines record, an object; bad JSON or another type names the file and line."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        raise FormatError(path, lineno, f"not valid JSON ({err.msg})") from None
    if not isinstance(rec, dict):
        raise FormatError(path, lineno, "expected a JSON object")
    return rec


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every non-empty line; bad JSON names file and line."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        rec = _json_object(path, lineno, line)
        yield lineno, rec


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
    text = "\n".join(line for _, line in iter_lines(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(path, err.lineno, f"not valid JSON ({err.msg})") from None


# --------------------------------------------------------------------------------- topics and qrels


def read_topics(path: str | os.PathLike) -> dict[str, str]:
    """Read ``qid<TAB>query`` lines (MIRACL topics). Query ids are strings."""
    topics: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise FormatError(path, lineno, f"expected 'qid<TAB>query', got {len(parts)} tab-separated fields")
        qid, query = parts[0].strip(), parts[1].strip()
        if not qid or not query:
            raise FormatError(path, lineno, "empty query id or query text")
        check_id(path, lineno, "query id", qid)
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
    for lineno, line in iter_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise FormatError(path, lineno, f"expected 'qid Q0 docid rel', got {len(parts)} fields")
        qid, _, docid, rel = parts
        check_id(path, lineno, "query id", qid)
        check_id(path, lineno, "docid", docid)
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

    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
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


def read_positive_scores(
    path: str | os.PathLike, train: Mapping[str, LabelledQuery] | None = None
) -> dict[str, dict[str, float]]:
    """Read a ``.positives.tsv`` into ``{qid: {docid: score}}``; a repeated (qid, docid) is an error.

    With ``train`` (from :func:`read_train`), a row whose query is not a training query, or whose
    document is not one of that query's positives, is an error: the two files come from different data
    preparations.
    """
    if train is None:
        return nest_by_query(path, iter_positive_scores(path), "score")
    positives = {q.qid: set(q.positives) for q in train.values()}

    def checked() -> Iterator[tuple[int, str, str, float]]:
        for lineno, qid, docid, value in iter_positive_scores(path):
            if qid not in positives:
                raise FormatError(path, lineno, f"query {qid!r} is not in the training file")
            if docid not in positives[qid]:
                raise FormatError(path, lineno, f"document {docid!r} is not a labelled positive of query {qid!r}")
            yield lineno, qid, docid, value

    return nest_by_query(path, checked(), "score")


def write_positive_scores(path: str | os.PathLike, rows: Iterable[tuple[str, str, float]]) -> None:
    """Write ``qid<TAB>docid<TAB>score`` lines atomically."""
    with atomic_write(path) as fh:
        for qid, docid, score in rows:
            fh.write(f"{qid}\t{docid}\t{score:.6f}\n")


# ------------------------------------------------------------------------------ training queries


@dataclass(frozen=True)
class LabelledQuery:
    """One line of a prepared ``train.jsonl``: a training query and its human judgements (``positives``
    judged relevant, ``negatives`` judged non-relevant), in the order of the raw qrels."""

    qid: str
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"qid": self.qid, "query": self.query, "positives": list(self.positives), "negatives": list(self.negatives)}


def read_train(path: str | os.PathLike) -> dict[str, LabelledQuery]:
    """Read a prepared ``train.jsonl`` into ``{qid: LabelledQuery}``, keeping file order."""
    out: dict[str, LabelledQuery] = {}
    for lineno, rec in read_jsonl(path):
        try:
            qid = str(rec["qid"])
            query = rec["query"]
            positives = rec["positives"]
        except KeyError as err:
            raise FormatError(path, lineno, f"train record lacks field {err}") from None
        negatives = rec.get("negatives", [])
        if not isinstance(positives, list) or not isinstance(negatives, list):
            raise FormatError(path, lineno, "'positives' and 'negatives' must be lists of docids")
        if qid in out:
            raise FormatError(path, lineno, f"duplicate query id {qid!r}")
        out[qid] = LabelledQuery(qid, str(query), tuple(map(str, positives)), tuple(map(str, negatives)))
    return out


def write_train(path: str | os.PathLike, records: Iterable[LabelledQuery]) -> int:
    """Write a prepared ``train.jsonl`` atomically; returns the number of queries."""
    return write_jsonl(path, (r.to_json() for r in records))


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
    for lineno, line in iter_lines(path):
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
    """Yield prepared-corpus records ``{"docid", "title", "text"}`` of the 0-based lines ``start <= i <
    stop``, checked: a line that is not JSON, or a record without a docid free of whitespace (TREC runs
    are space-separated) or without a string text, names the file and its 1-based line."""
    for lineno, line in iter_lines(path):
        i = lineno - 1
        if i < start:
            continue
        if stop is not None and i >= stop:
            break
        rec = _json_object(path, lineno, line)
        docid, text, title = rec.get("docid"), rec.get("text"), rec.get("title")
        if not isinstance(docid, str) or not docid or any(c.isspace() or c in _CONTROL for c in docid):
            raise FormatError(path, lineno, f"corpus record needs a non-empty 'docid' string without "
                                            f"whitespace (TREC runs are space-separated), got {docid!r}")
        if not isinstance(text, str):
            raise FormatError(path, lineno, f"corpus record {docid!r} needs a string 'text'")
        if title is not None and not isinstance(title, str):
            raise FormatError(path, lineno, f"corpus record {docid!r}: 'title' must be a string")
        yield rec


def corpus_record(docid: str, title: str, text: str) -> str:
    """One line of a prepared ``corpus.jsonl`` (without the newline)."""
    return json.dumps({"docid": docid, "title": title, "text": text}, ensure_ascii=False)


def write_corpus(path: str | os.PathLike, docs: Iterable[tuple[str, str, str]]) -> int:
    """Write ``(docid, title, text)`` passages as a prepared ``corpus.jsonl`` atomically, in the given
    order; returns the count. An exception raised while ``docs`` is consumed leaves no file."""
    n = 0
    with atomic_write(path) as fh:
        for docid, title, text in docs:
            fh.write(corpus_record(docid, title, text))
            fh.write("\n")
            n += 1
    return n


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


# ----------------------------------------------------------------------------- shard embeddings


def write_shard(path: str | os.PathLike, emb: np.ndarray, ids: Sequence[str]) -> None:
    """Write a corpus shard's embeddings ``.npz`` (``emb`` float32 ``[n, d]``, ``ids`` strings) atomically."""
    import numpy as np

    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"embeddings of shape {emb.shape} do not match {len(ids)} ids")
    ids_arr = np.array(list(ids), dtype=np.str_) if len(ids) else np.zeros(0, dtype="<U1")
    with atomic_write(path, "wb") as fh:
        np.savez(fh, emb=emb, ids=ids_arr)


def read_shard(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a shard ``.npz``: ``(emb float32 [n, d], ids)``; a malformed file names itself."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("emb", "ids") if k not in data.files]
            if missing:
                raise FormatError(path, None, f"shard file lacks the array(s) {missing} (has {data.files})")
            emb = np.ascontiguousarray(data["emb"], dtype=np.float32)
            ids = [str(x) for x in data["ids"]]
    except (ValueError, OSError) as err:
        if isinstance(err, (FormatError, FileNotFoundError)):
            raise
        raise FormatError(path, None, f"not a shard .npz ({err})") from None
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise FormatError(path, None, f"'emb' of shape {emb.shape} does not match {len(ids)} ids")
    return emb, ids


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


# -------------------------------------------------------------------------------------- verdicts

VERDICTS = (0, 1, 2)
"""The judge's relevance grades: 0 irrelevant, 1 partially relevant, 2 highly relevant."""


def read_verdicts(paths: Sequence[str | os.PathLike]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(qid, docid): record}`` from the verdict files of one judge (one per chunk); a candidate
    judged twice, or a verdict outside 0, 1, 2 and null, names its file and line."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for lineno, rec in read_jsonl(path):
            try:
                key = (str(rec["qid"]), str(rec["docid"]))
                verdict = rec["verdict"]
            except KeyError as err:
                raise FormatError(path, lineno, f"verdict record lacks field {err}") from None
            if verdict is not None and verdict not in VERDICTS:
                raise FormatError(path, lineno, f"verdict must be 0, 1, 2 or null, got {verdict!r}")
            if key in out:
                raise FormatError(path, lineno, f"second verdict for query {key[0]!r}, document {key[1]!r}")
            out[key] = rec
    return out


def write_verdicts(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write verdict records (one judged candidate per line) atomically; returns the count."""
    return write_jsonl(path, records)


# ------------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class EvalResult:
    """One run evaluated against one qrels file: the record of ``results/eval/.../{lang}.json``."""

    run: str
    qrels: str
    num_queries: int
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(self.aggregate)

    def values(self, measure: str, qids: Iterable[str] | None = None) -> list[float]:
        """Per-query values of ``measure`` in the order of ``qids`` (default: the qrels order)."""
        if measure not in self.aggregate:
            raise ValueError(f"{self.run}: measure {measure!r} not evaluated; have {', '.join(self.aggregate)}")
        return [self.per_query[q][measure] for q in (self.per_query if qids is None else qids)]

    def to_json(self) -> dict:
        return {
            "run": self.run,
            "qrels": self.qrels,
            "num_queries": self.num_queries,
            "aggregate": dict(self.aggregate),
            "per_query": {q: dict(v) for q, v in self.per_query.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping, source: str = "<eval>") -> EvalResult:
        try:
            res = cls(
                run=str(obj["run"]),
                qrels=str(obj["qrels"]),
                num_queries=int(obj["num_queries"]),
                aggregate={str(k): float(v) for k, v in obj["aggregate"].items()},
                per_query={str(q): {str(k): float(v) for k, v in m.items()} for q, m in obj["per_query"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise FormatError(source, None, f"not an evaluation record ({type(err).__name__}: {err})") from None
        if res.num_queries != len(res.per_query):
            raise FormatError(source, None, f"num_queries {res.num_queries} but {len(res.per_query)} per-query entries")
        return res


def read_eval(path: str | os.PathLike) -> EvalResult:
    return EvalResult.from_json(read_json(path), source=str(path))


def write_eval(path: str | os.PathLike, result: EvalResult) -> None:
    write_json(path, result.to_json())


# ------------------------------------------------------------------------------ stage 3: topics


@dataclass(frozen=True)
class ClassifierLabel:
    """One fastText classifier's top-1 answer: the official label number (``__label__N``), its name from
    the config's label list, and the classifier's probability."""

    number: int
    label: str
    prob: float

    def to_json(self) -> dict:
        return {"number": self.number, "label": self.label, "prob": self.prob}


@dataclass(frozen=True)
class TopicRecord:
    """One line of a topic file: a training query, the passage whose text was classified (``None`` when the
    query itself was, or when there was nothing to classify), every classifier's answer, the topic code,
    and what decided it (a classifier's name, or ``"fallback"``)."""

    qid: str
    lang: str
    topic: str
    docid: str | None
    decided_by: str
    labels: dict[str, ClassifierLabel] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "qid": self.qid,
            "lang": self.lang,
            "docid": self.docid,
            "topic": self.topic,
            "decided_by": self.decided_by,
            "labels": {name: lab.to_json() for name, lab in self.labels.items()},
        }


def read_topic_labels(path: str | os.PathLike) -> list[TopicRecord]:
    """Read a topic file (``results/stage3/topics/{lang}.jsonl``); a query listed twice names its line."""
    out: list[TopicRecord] = []
    seen: set[tuple[str, str]] = set()
    for lineno, rec in read_jsonl(path):
        try:
            labels = {
                str(name): ClassifierLabel(int(v["number"]), str(v["label"]), float(v["prob"]))
                for name, v in rec["labels"].items()
            }
            docid = rec["docid"]
            record = TopicRecord(
                qid=str(rec["qid"]), lang=str(rec["lang"]), topic=str(rec["topic"]),
                docid=None if docid is None else str(docid), decided_by=str(rec["decided_by"]), labels=labels,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise FormatError(path, lineno, f"not a topic record (missing or malformed field: {err})") from None
        key = (record.lang, record.qid)
        if key in seen:
            raise FormatError(path, lineno, f"query {record.qid!r} ({record.lang}) has a second topic line")
        seen.add(key)
        out.append(record)
    return out


def write_topic_labels(path: str | os.PathLike, records: Iterable[TopicRecord]) -> int:
    """Write a topic file atomically, one query per line; returns the count."""
    return write_jsonl(path, (r.to_json() for r in records))


# ---------------------------------------------------------------------- stage 3: batch manifests

MANIFEST_FORMAT = "boostmdr.batch-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestStep:
    """One global batch of a batch manifest: its epoch and step (both 0-based), its queries as
    ``(lang, qid, topic)`` in loss order (``topic`` ``None`` when topics were not used), and per query the
    weight of each hard-negative slot of its group (``None``: the batch is not weighted)."""

    epoch: int
    step: int
    queries: tuple[tuple[str, str, str | None], ...]
    weights: tuple[tuple[float, ...], ...] | None = None

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "queries": [list(q) for q in self.queries],
            "weights": None if self.weights is None else [list(w) for w in self.weights],
        }


def write_manifest(path: str | os.PathLike, header: Mapping[str, Any], steps: Iterable[ManifestStep]) -> int:
    """Write a batch manifest atomically (gzip JSON lines when the name ends in ``.gz``): the header object
    first (it gets ``format`` and ``version``), then one line per step in training order; returns the
    number of steps."""
    n = 0
    with atomic_write(path) as fh:
        head = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **header}
        fh.write(json.dumps(head, ensure_ascii=False))
        fh.write("\n")
        for step in steps:
            fh.write(json.dumps(step.to_json(), ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            n += 1
    return n


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, Any], list[ManifestStep]]:
    """Read a batch manifest: ``(header, steps)``. Checked: the header's format and version, every epoch
    holding ``steps_per_epoch`` consecutive steps, every batch ``batch_size`` queries, and every weight row
    ``group_size - 1`` finite non-negative numbers; a problem names the file and line."""
    import math

    header: dict[str, Any] | None = None
    steps: list[ManifestStep] = []
    for lineno, rec in read_jsonl(path):
        if header is None:
            if rec.get("format") != MANIFEST_FORMAT:
                raise FormatError(path, lineno, f"not a batch manifest (first line lacks format {MANIFEST_FORMAT!r})")
            if rec.get("version") != MANIFEST_VERSION:
                raise FormatError(path, lineno, f"manifest version {rec.get('version')!r}; this reader knows {MANIFEST_VERSION}")
            missing = [k for k in ("batch_size", "group_size", "epochs", "steps_per_epoch") if not isinstance(rec.get(k), int)]
            if missing:
                raise FormatError(path, lineno, f"manifest header lacks the integer field(s) {missing}")
            header = rec
            continue
        per_epoch = header["steps_per_epoch"]
        expected = (len(steps) // per_epoch, len(steps) % per_epoch) if per_epoch else (None, None)
        try:
            step = ManifestStep(
                epoch=int(rec["epoch"]),
                step=int(rec["step"]),
                queries=tuple((str(q[0]), str(q[1]), None if q[2] is None else str(q[2])) for q in rec["queries"]),
                weights=None if rec.get("weights") is None else tuple(tuple(float(x) for x in w) for w in rec["weights"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise FormatError(path, lineno, f"not a manifest step (missing or malformed field: {err})") from None
        if (step.epoch, step.step) != expected:
            raise FormatError(path, lineno, f"expected epoch {expected[0]} step {expected[1]}, got epoch {step.epoch} step {step.step}")
        if len(step.queries) != header["batch_size"]:
            raise FormatError(path, lineno, f"batch of {len(step.queries)} queries; the header says batch_size {header['batch_size']}")
        if step.weights is not None:
            slots = header["group_size"] - 1
            if len(step.weights) != len(step.queries) or any(len(w) != slots for w in step.weights):
                raise FormatError(path, lineno, f"weights must be {len(step.queries)} rows of {slots} (group_size - 1) numbers")
            if any(not math.isfinite(x) or x < 0 for w in step.weights for x in w):
                raise FormatError(path, lineno, "weights must be finite and >= 0")
        steps.append(step)
    if header is None:
        raise FormatError(path, None, "empty batch manifest (no header line)")
    if len(steps) != header["epochs"] * header["steps_per_epoch"]:
        raise FormatError(
            path, None, f"{len(steps)} steps; the header says {header['epochs']} epochs x {header['steps_per_epoch']} steps"
        )
    return header, steps
# ---------------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Instruction:
    """One instruction-tuning record in the Alpaca format (``instruction``, optional ``input``, ``output``).

    ``index`` is the record's 0-based position in the English source file it comes from (kept through
    selection and translation, so every language's copy of a record can be traced back to it); ``lang`` is
    the language the text is in (``en`` for the source).
    """

    instruction: str
    input: str
    output: str
    index: int | None = None
    lang: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"instruction": self.instruction, "input": self.input, "output": self.output}
        if self.index is not None:
            out["index"] = self.index
        if self.lang is not None:
            out["lang"] = self.lang
        return out


def _instruction(path: str | os.PathLike, where: int, rec: Any, line: int | None) -> Instruction:
    what = f"record {where}" if line is None else "record"
    if not isinstance(rec, dict):
        raise FormatError(path, line, f"{what}: expected an object with 'instruction', 'input', 'output'")
    missing = [k for k in ("instruction", "output") if k not in rec]
    if missing:
        raise FormatError(path, line, f"{what}: Alpaca record lacks {missing} (needs instruction, output, optional input)")
    fields = {k: rec.get(k, "") if rec.get(k) is not None else "" for k in ("instruction", "input", "output")}
    bad = [k for k, v in fields.items() if not isinstance(v, str)]
    if bad:
        raise FormatError(path, line, f"{what}: field(s) {bad} must be strings")
    index = rec.get("index", where)
    if isinstance(index, bool) or not isinstance(index, int):
        raise FormatError(path, line, f"{what}: 'index' must be an integer, got {index!r}")
    lang = rec.get("lang")
    return Instruction(fields["instruction"], fields["input"], fields["output"], index, lang)


def read_instructions(path: str | os.PathLike) -> list[Instruction]:
    """Read an Alpaca-format instruction file: a JSON list of records (Stanford Alpaca's ``alpaca_data.json``)
    or JSON lines (``.jsonl``), each ``{"instruction", "input", "output"}``. A record without ``index`` gets its
    0-based position. Errors name the file and the line (JSON lines) or the record's position (JSON list)."""
    name = str(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return [_instruction(path, i, rec, lineno) for i, (lineno, rec) in enumerate(read_jsonl(path))]
    data = read_json(path)
    if not isinstance(data, list):
        raise FormatError(path, None, "expected a JSON list of Alpaca records (or a .jsonl file, one record per line)")
    return [_instruction(path, i, rec, None) for i, rec in enumerate(data)]


def write_instructions(path: str | os.PathLike, records: Iterable[Instruction]) -> int:
    """Write instruction records as JSON lines atomically; returns the count."""
    return write_jsonl(path, (r.to_json() for r in records))


# ----------------------------------------------------------------------------- generated queries

GENERATION_STATUSES = ("ok", "summary_failed", "query_failed", "no_positive")
"""What became of one generation attempt (see :class:`GeneratedQuery`)."""


@dataclass(frozen=True)
class GeneratedQuery:
    """One query written by the stage-2 generator for a training query (one line of a generated-queries
    file, docs/formats.md).

    ``gid`` is the generated query's own id (used in TREC runs; ``<qid>.g<k>``), ``qid`` the training query it
    was written for, ``source_docid`` the positive it was written from, ``summary`` the generator's summary of
    that positive (``None`` without PDBG's summary step, or when it failed) and ``query`` the new query
    (``None`` when generation failed). ``status`` is one of :data:`GENERATION_STATUSES`; only ``ok`` records
    have a query. ``mode`` is ``pdbg`` (summary, then query) or ``direct`` (query from the positive, "w/o
    PDBG"). ``raw`` keeps the generator's raw texts of every attempt, ``generator`` the backend, model and
    fingerprint that wrote it.
    """

    gid: str
    qid: str
    lang: str
    mode: str
    source_docid: str | None
    summary: str | None
    query: str | None
    status: str
    raw: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "gid": self.gid, "qid": self.qid, "lang": self.lang, "mode": self.mode,
            "source_docid": self.source_docid, "summary": self.summary, "query": self.query,
            "status": self.status, "raw": self.raw, "generator": self.generator,
        }  # fmt: skip


def read_generated_queries(path: str | os.PathLike) -> list[GeneratedQuery]:
    """Read a generated-queries file; a malformed record names the file and line."""
    out: list[GeneratedQuery] = []
    seen: set[str] = set()
    for lineno, rec in read_jsonl(path):
        try:
            q = GeneratedQuery(
                gid=str(rec["gid"]), qid=str(rec["qid"]), lang=str(rec["lang"]), mode=str(rec["mode"]),
                source_docid=rec["source_docid"], summary=rec["summary"], query=rec["query"],
                status=str(rec["status"]), raw=rec.get("raw", {}), generator=rec.get("generator", {}),
            )  # fmt: skip
        except KeyError as err:
            raise FormatError(path, lineno, f"generated-query record lacks field {err}") from None
        if q.status not in GENERATION_STATUSES:
            raise FormatError(path, lineno, f"status {q.status!r} is not one of {GENERATION_STATUSES}")
        if (q.status == "ok") != (q.query is not None):
            raise FormatError(path, lineno, f"status {q.status!r} but query {q.query!r}: only 'ok' records have a query")
        if not q.gid or any(c.isspace() for c in q.gid):
            raise FormatError(path, lineno, f"gid {q.gid!r} must be non-empty without whitespace (TREC runs)")
        if q.gid in seen:
            raise FormatError(path, lineno, f"duplicate gid {q.gid!r}")
        seen.add(q.gid)
        out.append(q)
    return out


def write_generated_queries(path: str | os.PathLike, records: Iterable[GeneratedQuery]) -> int:
    """Write generated-query records atomically; returns the count."""
    return write_jsonl(path, (r.to_json() for r in records))


# ---------------------------------------------------------------------------- annotation sheets

GRADES = (0, 1, 2)
"""Human relevance grades of the annotation kit (paper appendix C): 0 irrelevant, 1 partially, 2 relevant."""
SHEET_COLUMNS = ("item_id", "lang", "qid", "docid", "query", "reference", "candidate", "grade")
KEY_COLUMNS = ("item_id", "lang", "qid", "docid", "reference_docid", "verdict")


def sheet_text(text: str) -> str:
    """A text as a sheet cell: every run of whitespace (tabs and line breaks included) becomes one space."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class AnnotationItem:
    """One row of an annotation sheet: a candidate to grade against its query and the reference positive
    the judge saw, and the annotator's grade (``None`` until graded)."""

    item_id: str
    lang: str
    qid: str
    docid: str
    query: str
    reference: str
    candidate: str
    grade: int | None = None

    def row(self) -> list[str]:
        return [self.item_id, self.lang, self.qid, self.docid, sheet_text(self.query), sheet_text(self.reference),
                sheet_text(self.candidate), "" if self.grade is None else str(self.grade)]


@dataclass(frozen=True)
class AnnotationKey:
    """What the annotators do not see: the judge's verdict on an item, and the reference positive's docid."""

    item_id: str
    lang: str
    qid: str
    docid: str
    reference_docid: str | None
    verdict: int


def _write_tsv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    n = 0
    with atomic_write(path) as fh:
        fh.write("\t".join(header) + "\n")
        for row in rows:
            fh.write("\t".join(row) + "\n")
            n += 1
    return n


def _read_tsv(path: str | os.PathLike, header: Sequence[str], what: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a TSV with exactly ``header`` (checked); yields ``(line_number, cells)``; ids unique."""
    seen: set[str] = set()
    first = True
    for lineno, line in iter_lines(path):
        if first:
            first = False
            if line.split("\t") != list(header):
                raise FormatError(path, lineno, f"not a {what}: expected the header {chr(9).join(header)!r}, "
                                                f"got {line[:120]!r}")
            continue
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise FormatError(path, lineno, f"expected {len(header)} tab-separated fields ({', '.join(header)}), "
                                            f"got {len(cells)}")
        if cells[0] in seen:
            raise FormatError(path, lineno, f"item {cells[0]!r} appears twice")
        seen.add(cells[0])
        yield lineno, cells
    if first:
        raise FormatError(path, None, f"empty file; a {what} starts with the header {chr(9).join(header)!r}")


def write_annotation_sheet(path: str | os.PathLike, items: Iterable[AnnotationItem]) -> int:
    """Write an annotation sheet (TSV with :data:`SHEET_COLUMNS`) atomically; returns the number of items."""
    return _write_tsv(path, SHEET_COLUMNS, (item.row() for item in items))


def read_annotation_sheet(path: str | os.PathLike) -> list[AnnotationItem]:
    """Read an annotation sheet, blank or filled; a grade other than empty, 0, 1 or 2 names its line."""
    items = []
    for lineno, cells in _read_tsv(path, SHEET_COLUMNS, "annotation sheet"):
        grade_text = cells[7].strip()
        if grade_text and grade_text not in {str(g) for g in GRADES}:
            raise FormatError(path, lineno, f"grade {grade_text!r} of item {cells[0]!r}: give 0, 1, 2 or leave it empty")
        items.append(AnnotationItem(*cells[:7], grade=int(grade_text) if grade_text else None))
    return items


def write_annotation_key(path: str | os.PathLike, keys: Iterable[AnnotationKey]) -> int:
    """Write the key of a sheet (TSV with :data:`KEY_COLUMNS`) atomically."""
    return _write_tsv(path, KEY_COLUMNS, ([k.item_id, k.lang, k.qid, k.docid, k.reference_docid or "", str(k.verdict)]
                                          for k in keys))


def read_annotation_key(path: str | os.PathLike) -> list[AnnotationKey]:
    keys = []
    for lineno, cells in _read_tsv(path, KEY_COLUMNS, "annotation key"):
        if cells[5] not in {str(v) for v in VERDICTS}:
            raise FormatError(path, lineno, f"verdict {cells[5]!r}: expected 0, 1 or 2")
        keys.append(AnnotationKey(*cells[:4], reference_docid=cells[4] or None, verdict=int(cells[5])))
    return keys
