"""Stage 1, false-negative selection: an LLM judges each fused candidate against the query and one
labelled positive, and only candidates judged irrelevant stay hard negatives (paper Sec. 3.3, App. B.2).

The protocol, as the authors' code runs it, and the choices made where the paper leaves room:

* **Prompt**: the paper's Table 17 template (``config/prompts/judge.txt``) with the placeholders
  ``{question}``, ``{candidate}`` and ``{reference}``. The reference ("Standard Answer") is ONE
  labelled positive of the query, chosen at random with a seed, the same for all of the query's
  candidates (reference mode ``positive``), or empty (mode ``empty``: Table 5 "w/o ground truth",
  which the prompt allows).
* **Scores**: each sample's output is parsed for Information Accuracy and Information Completeness
  (0/1/2) and combined: any 0 gives 0; otherwise more 1s than 2s gives 1; otherwise 2.
* **Samples and vote**: four samples at the authors' (top_p, temperature) pairs (0.7, 0.4),
  (0.8, 0.6), (0.9, 0.8), (0.8, 0.4); the verdict is the most frequent combined score among the
  samples that parsed. A tie goes to the tied score seen first in sample order (what the authors'
  ``Counter.most_common(1)`` does).
* **Unparsed output** is retried with a new seed (``--retries`` more attempts per sample), then
  recorded with its raw text and never counted as a vote. A candidate with no parsed sample gets
  verdict ``null``; the pool leaves it out (it was never shown to be a true negative; keeping it would
  risk training on a false negative, which is what this stage exists to prevent).
* **Pool**: the candidates whose verdict is in ``--keep`` (default ``0``, as in the authors' code;
  ``0,1`` drops only score 2, the paper's wording) become the query's negatives.

Every generation is cached in an SQLite file keyed by a hash of everything that determines it: the
backend, the model's identity (a content fingerprint for a local model directory), the rendered
prompt (template text, query, reference text and candidate text, after any truncation), temperature,
top-p, seed and the maximum number of new tokens. A rerun (another candidate depth, another fusion)
generates only what it has not seen. Results are committed as each request finishes, so a judge
killed mid-way loses nothing finished. Several judge processes may share one cache file on one machine
(WAL journal, busy timeout); do not share a file over a network file system (use one per chunk there).

CLI::

    python -m boostmdr.judge verdicts --candidates fused.trec --train train.jsonl --corpus corpus.jsonl \\
        --lang sw --chunk 0 --num-chunks 4 --backend transformers --model results/models/tiny-lm \\
        --prompt config/prompts/judge.txt --reference positive --samples 0.7:0.4,0.8:0.6,0.9:0.8,0.8:0.4 \\
        --max-new-tokens 48 --retries 2 --seed 13 --cache results/cache/judge.sqlite --out verdicts.jsonl
    python -m boostmdr.judge pool --verdicts v0.jsonl v1.jsonl --candidates fused.trec --train train.jsonl \\
        --lang sw --keep 0 --source stage1:ensemble --out negatives.jsonl
    python -m boostmdr.judge stats --verdicts v0.jsonl v1.jsonl --lang sw --out stats.json \\
        [--truth RAW/synthetic-truth/sw.train.complete-qrels.tsv]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats import (
    VERDICTS,
    FormatError,
    LabelledQuery,
    Negative,
    NegativesRecord,
    passage_text,
    read_corpus,
    read_qrels,
    read_run,
    read_train,
    read_verdicts,
    shard_bounds,
    write_json,
    write_negatives,
    write_verdicts,
)
from .utils import set_threads, setup_logging

log = logging.getLogger(__name__)

PLACEHOLDERS = ("question", "candidate", "reference")
AUTHORS_SAMPLES = "0.7:0.4,0.8:0.6,0.9:0.8,0.8:0.4"
"""The authors' four samples as ``top_p:temperature`` pairs."""
REFERENCE_MODES = ("positive", "empty")
SCORES = VERDICTS
CACHE_KEY_VERSION = 1


# ------------------------------------------------------------------------------------------ prompt


class TemplateError(ValueError):
    """A prompt template without its placeholders; the message names the file."""


_PLACEHOLDER_RE = re.compile(r"\{(question|candidate|reference)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """The judge prompt with ``{question}``, ``{candidate}`` and ``{reference}`` placeholders.

    Every other brace is literal text (the template shows the JSON answer format), so rendering is a
    single pass over the three placeholders, never ``str.format``; a passage that happens to contain
    ``{reference}`` is not expanded again.
    """

    text: str
    source: str = "<string>"

    def __post_init__(self) -> None:
        found = Counter(m.group(1) for m in _PLACEHOLDER_RE.finditer(self.text))
        missing = [p for p in PLACEHOLDERS if not found[p]]
        if missing:
            hint = ""
            if "{Input Question}" in self.text:
                hint = " (the paper prints {Input Question} etc.; write {question}, {candidate}, {reference})"
            raise TemplateError(
                f"{self.source}: prompt template lacks placeholder(s) "
                f"{', '.join('{' + p + '}' for p in missing)}{hint}; it needs each of "
                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        repeated = [p for p in PLACEHOLDERS if found[p] > 1]
        if repeated:
            raise TemplateError(
                f"{self.source}: placeholder(s) {', '.join('{' + p + '}' for p in repeated)} appear more than "
                "once; each must appear exactly once"
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> PromptTemplate:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"{path}: prompt template file not found") from None
        return cls(text, str(path))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def pieces(self) -> tuple[list[str], list[str]]:
        """The literal texts around the placeholders (one more than the placeholders) and the placeholder
        names, in the template's order."""
        parts = _PLACEHOLDER_RE.split(self.text)
        return parts[0::2], parts[1::2]

    def render(self, question: str, candidate: str, reference: str) -> str:
        values = {"question": question, "candidate": candidate, "reference": reference}
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.text)


def truncate_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` whitespace-separated words (``None`` or 0: the whole text)."""
    text = " ".join(text.split())
    if not max_words:
        return text
    words = text.split(" ")
    return text if len(words) <= max_words else " ".join(words[:max_words])


def render_judge_prompt(
    template: PromptTemplate, question: str, candidate: str, reference: str, max_passage_words: int | None = None
) -> str:
    """The prompt for one (question, candidate, reference) triple; passages cut to ``max_passage_words``.

    The tiny LM's fine-tuning (:mod:`boostmdr.tiny_lm`) builds its prompts with this same function.
    """
    return template.render(
        " ".join(question.split()),
        truncate_words(candidate, max_passage_words),
        truncate_words(reference, max_passage_words),
    )


def format_scores(accuracy: int, completeness: int) -> str:
    """The answer the prompt asks for, as a model should write it."""
    return json.dumps({"Information Accuracy": accuracy, "Information Completeness": completeness})


# ----------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ParsedScores:
    accuracy: int | None
    completeness: int | None
    score: int


_VALUE = r"[\s\"'*`]*[:=]?[\s\"'*`]*(\d+(?:[./]\d+)*)"
_ACCURACY_RE = re.compile(r"accuracy" + _VALUE, re.IGNORECASE)
_COMPLETENESS_RE = re.compile(r"completeness" + _VALUE, re.IGNORECASE)
_BARE_SCORE_RE = re.compile(r"^\s*[\"'`]*([012])[\"'`.]*\s*$")


def _first_score(pattern: re.Pattern[str], text: str) -> int | None:
    for m in pattern.finditer(text):
        if m.group(1) in ("0", "1", "2"):
            return int(m.group(1))
    return None


def combine_scores(accuracy: int, completeness: int) -> int:
    """The authors' combination: any 0 gives 0; otherwise more 1s than 2s gives 1; otherwise 2."""
    pair = (accuracy, completeness)
    if any(s not in SCORES for s in pair):
        raise ValueError(f"scores must be 0, 1 or 2, got {pair}")
    if 0 in pair:
        return 0
    return 1 if pair.count(1) > pair.count(2) else 2


def parse_scores(text: str) -> ParsedScores | None:
    """Read both criteria from a model's output, tolerating JSON-ish variants.

    Accepted: keys with or without "Information", any case, quoted or not, ``:`` or ``=``, markdown
    emphasis or code fences around them, text before or after. Each criterion's first value that is
    exactly 0, 1 or 2 counts (an echoed ``{0/1/2}`` or a ``1.5`` does not). An output that is only a
    single 0/1/2 is read as the combined score (the authors' earlier prompt asked for one number).
    ``None`` when the output cannot be read.
    """
    acc = _first_score(_ACCURACY_RE, text)
    comp = _first_score(_COMPLETENESS_RE, text)
    if acc is not None and comp is not None:
        return ParsedScores(acc, comp, combine_scores(acc, comp))
    m = _BARE_SCORE_RE.match(text)
    if m:
        return ParsedScores(None, None, int(m.group(1)))
    return None


def majority_vote(scores: Sequence[int | None]) -> int | None:
    """Most frequent score among the parsed samples (``None`` entries are unparsed and ignored).

    Ties go to the tied score that appears first in sample order, which is what the authors'
    ``Counter(scores).most_common(1)`` returns. ``None`` when no sample parsed.
    """
    counts: dict[int, int] = {}
    for s in scores:
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(s for s, c in counts.items() if c == best)


def parse_samples_spec(spec: str) -> list[tuple[float, float]]:
    """``"0.7:0.4,0.8:0.6"`` -> ``[(top_p, temperature), ...]``; errors name the setting."""
    out: list[tuple[float, float]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            top_p_s, temp_s = part.split(":")
            top_p, temp = float(top_p_s), float(temp_s)
        except ValueError:
            raise ValueError(f"--samples: {part!r} is not 'top_p:temperature' (e.g. {AUTHORS_SAMPLES})") from None
        if not 0 < top_p <= 1 or temp < 0:
            raise ValueError(f"--samples: {part!r} needs 0 < top_p <= 1 and temperature >= 0")
        out.append((top_p, temp))
    if not out:
        raise ValueError(f"--samples is empty; the authors use {AUTHORS_SAMPLES}")
    return out


def sample_seed(seed: int, qid: str, docid: str, sample: int, attempt: int) -> int:
    """The seed of one attempt of one sample of one (query, candidate) pair: stable across runs, distinct
    per pair, sample and attempt. Seeds shared across pairs would make every pair's k-th sample use the
    same random numbers, so where the model is unsure all pairs would get the same verdict."""
    digest = hashlib.sha256(f"judge:{seed}:{qid}\0{docid}:{sample}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def choose_reference(positives: Sequence[str], qid: str, seed: int) -> str:
    """One positive of the query, chosen at random but deterministically from (seed, qid)."""
    if not positives:
        raise ValueError(f"query {qid!r} has no positive to use as the reference")
    return random.Random(f"reference:{seed}:{qid}").choice(list(positives))


# ------------------------------------------------------------------------------------------- cache


class GenerationCache:
    """Raw generations in an SQLite file, keyed by :func:`cache_key`; safe for several processes on
    one machine (WAL journal, busy timeout). Each :meth:`put` commits at once."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 120.0) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: SQLite refused the WAL journal (got %s); concurrent judges will wait on locks", path, mode)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS generations ("
            " key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER, generated_tokens INTEGER,"
            " backend TEXT, model TEXT, created REAL)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = self.conn.execute(
                f"SELECT key, text FROM generations WHERE key IN ({','.join('?' * len(part))})", part
            ).fetchall()
            out.update(rows)
        return out

    def put_many(self, rows: Sequence[tuple[str, str, int, int, str, str]]) -> None:
        """Insert ``(key, text, prompt_tokens, generated_tokens, backend, model)`` rows in one transaction."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)", [(*r, now) for r in rows]
            )

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self.conn.close()


def cache_key(
    backend: str, model_fingerprint: str, prompt: str, top_p: float, temperature: float, max_tokens: int, seed: int
) -> str:
    """Hash of everything that determines one generation. The rendered prompt carries the template
    text, the query, the reference text and the candidate text."""
    payload = json.dumps(
        {
            "v": CACHE_KEY_VERSION,
            "backend": backend,
            "model": model_fingerprint,
            "prompt": prompt,
            "top_p": top_p,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------- judge


@dataclass(frozen=True)
class JudgeSettings:
    """Everything that shapes the verdicts besides the backend and the model."""

    samples: tuple[tuple[float, float], ...] = tuple(parse_samples_spec(AUTHORS_SAMPLES))
    reference: str = "positive"
    max_new_tokens: int = 48
    retries: int = 2
    seed: int = 13
    max_passage_words: int | None = None
    depth: int | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"--reference must be one of {REFERENCE_MODES}, got {self.reference!r}")
        if self.retries < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("--retries must be >= 0, --max-new-tokens and --batch-size >= 1")


@dataclass
class _Sample:
    top_p: float
    temperature: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    parsed: ParsedScores | None = None


@dataclass
class _Pair:
    qid: str
    docid: str
    rank: int
    score: float
    reference_docid: str | None
    prompt: str
    samples: list[_Sample]
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0


def select_chunk(qids: Sequence[str], chunk: int, num_chunks: int) -> list[str]:
    """The contiguous block of queries (in train.jsonl order) that chunk ``chunk`` of ``num_chunks`` judges."""
    start, stop = shard_bounds(len(qids), chunk, num_chunks)
    return list(qids[start:stop])


def load_texts(corpus_path: str | os.PathLike, wanted: set[str]) -> dict[str, str]:
    """Passage texts (title and text, as retrievers see them) of the wanted docids."""
    texts: dict[str, str] = {}
    for doc in read_corpus(corpus_path):
        docid = str(doc["docid"])
        if docid in wanted:
            texts[docid] = passage_text(doc)
    missing = wanted - texts.keys()
    if missing:
        raise FormatError(
            corpus_path, None, f"{len(missing)} judged docid(s) are not in the corpus, e.g. {sorted(missing)[:3]}"
        )
    return texts


def build_pairs(
    template: PromptTemplate,
    settings: JudgeSettings,
    train: dict[str, LabelledQuery],
    run: dict[str, list],
    qids: Sequence[str],
    texts: dict[str, str],
) -> list[_Pair]:
    pairs: list[_Pair] = []
    skipped_positive = 0
    for qid in qids:
        hits = run.get(qid, [])
        if settings.depth is not None:
            hits = hits[: settings.depth]
        if not hits:
            continue
        q = train[qid]
        ref_id = choose_reference(q.positives, qid, settings.seed) if settings.reference == "positive" else None
        ref_text = texts[ref_id] if ref_id is not None else ""
        positives = set(q.positives)
        for rank, hit in enumerate(hits, start=1):
            if hit.docid in positives:
                skipped_positive += 1
                continue
            prompt = render_judge_prompt(template, q.query, texts[hit.docid], ref_text, settings.max_passage_words)
            samples = [_Sample(top_p, temp) for top_p, temp in settings.samples]
            pairs.append(_Pair(qid, hit.docid, rank, hit.score, ref_id, prompt, samples))
    if skipped_positive:
        log.info("skipped %d candidates that are labelled positives of their query (never judged)", skipped_positive)
    return pairs


def judge_pairs(
    pairs: list[_Pair],
    backend: Any,
    settings: JudgeSettings,
    cache: GenerationCache | None,
) -> Counter[str]:
    """Fill every pair's samples: from the cache where possible, else from the backend; retry
    unparsed samples with new seeds. Returns counters (generated, cached, unparsed, ...)."""
    from .llm import SamplingSettings

    fingerprint = backend.fingerprint()
    counts: Counter[str] = Counter()
    for attempt in range(settings.retries + 1):
        todo: list[tuple[_Pair, int, SamplingSettings, str]] = []
        for pair in pairs:
            for i, s in enumerate(pair.samples):
                if s.parsed is None and len(s.attempts) == attempt:
                    ss = SamplingSettings(
                        s.temperature,
                        s.top_p,
                        settings.max_new_tokens,
                        sample_seed(settings.seed, pair.qid, pair.docid, i, attempt),
                    )
                    key = cache_key(
                        backend.NAME, fingerprint, pair.prompt, s.top_p, s.temperature, ss.max_tokens, ss.seed
                    )
                    todo.append((pair, i, ss, key))
        if not todo:
            break
        hits = cache.get_many(k for *_, k in todo) if cache is not None else {}
        requests: dict[int, list[tuple[int, SamplingSettings, str]]] = {}
        order: list[_Pair] = []
        for pair, i, ss, key in todo:
            if key in hits:
                _record(pair.samples[i], ss.seed, hits[key], cached=True)
                counts["cached"] += 1
            else:
                if id(pair) not in requests:
                    requests[id(pair)] = []
                    order.append(pair)
                requests[id(pair)].append((i, ss, key))
        if attempt:
            log.info(
                "retry %d: %d unparsed samples (%d from cache)",
                attempt,
                len(todo),
                len(todo) - sum(map(len, requests.values())),
            )
        _generate(order, requests, backend, settings, cache, counts, desc=f"judging (attempt {attempt + 1})")
    for pair in pairs:
        counts["unparsed_samples"] += sum(s.parsed is None for s in pair.samples)
    return counts


def _generate(
    order: list[_Pair],
    requests: dict[int, list[tuple[int, Any, str]]],
    backend: Any,
    settings: JudgeSettings,
    cache: GenerationCache | None,
    counts: Counter[str],
    desc: str,
) -> None:
    """Generate the missing samples of ``order`` (pairs) in batches; commit each finished request."""
    from tqdm import tqdm

    from .llm import BackendError, GenerationRequest

    with tqdm(total=len(order), desc=desc, unit="prompt", disable=not order) as bar:
        for b in range(0, len(order), settings.batch_size):
            batch = order[b : b + settings.batch_size]
            reqs = [GenerationRequest(p.prompt, tuple(ss for _, ss, _ in requests[id(p)])) for p in batch]
            for j, res in backend.iter_generate(reqs):
                pair = batch[j]
                wanted = requests[id(pair)]
                if len(res.texts) != len(wanted):
                    raise BackendError(
                        f"{backend.NAME} backend returned {len(res.texts)} texts for {len(wanted)} samples"
                    )
                share = len(wanted)
                rows = []
                for (i, ss, key), text in zip(wanted, res.texts):
                    _record(pair.samples[i], ss.seed, text, cached=False)
                    rows.append(
                        (key, text, res.prompt_tokens, res.generated_tokens // share, backend.NAME, backend.model_id)
                    )
                if cache is not None:
                    cache.put_many(rows)
                pair.prompt_tokens += res.prompt_tokens
                pair.prefilled_tokens += res.prefilled_tokens
                pair.generated_tokens += res.generated_tokens
                counts["generated"] += len(wanted)
                counts["prefilled_tokens"] += res.prefilled_tokens
                counts["generated_tokens"] += res.generated_tokens
                bar.update(1)


def _record(sample: _Sample, seed: int, text: str, cached: bool) -> None:
    parsed = parse_scores(text)
    sample.attempts.append({"seed": seed, "raw": text, "parsed": parsed is not None, "cached": cached})
    if parsed is not None:
        sample.parsed = parsed


def verdict_record(
    pair: _Pair, lang: str, reference_mode: str, max_new_tokens: int, meta: dict[str, Any]
) -> dict[str, Any]:
    scores = [s.parsed.score if s.parsed else None for s in pair.samples]
    votes = Counter(s for s in scores if s is not None)
    return {
        "qid": pair.qid,
        "docid": pair.docid,
        "rank": pair.rank,
        "score": pair.score,
        "lang": lang,
        "reference_mode": reference_mode,
        "reference_docid": pair.reference_docid,
        "samples": [
            {
                "top_p": s.top_p,
                "temperature": s.temperature,
                "max_tokens": max_new_tokens,
                "accuracy": s.parsed.accuracy if s.parsed else None,
                "completeness": s.parsed.completeness if s.parsed else None,
                "score": s.parsed.score if s.parsed else None,
                "attempts": s.attempts,
            }
            for s in pair.samples
        ],
        "votes": {str(k): v for k, v in sorted(votes.items())},
        "verdict": majority_vote(scores),
        "prompt_sha256": hashlib.sha256(pair.prompt.encode("utf-8")).hexdigest(),
        "prompt_tokens": pair.prompt_tokens,
        "prefilled_tokens": pair.prefilled_tokens,
        "generated_tokens": pair.generated_tokens,
        **meta,
    }


def run_verdicts(
    candidates: str | os.PathLike,
    train_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    lang: str,
    backend: Any,
    template: PromptTemplate,
    settings: JudgeSettings,
    out: str | os.PathLike,
    chunk: int = 0,
    num_chunks: int = 1,
    cache_path: str | os.PathLike | None = None,
) -> Counter[str]:
    """Judge the candidates of one chunk of queries and write the verdict file."""
    train = read_train(train_path)
    run = read_run(candidates)
    unknown = sorted(set(run) - train.keys())
    if unknown:
        raise FormatError(candidates, None, f"{len(unknown)} queries are not in {train_path}, e.g. {unknown[:3]}")
    qids = select_chunk(list(train), chunk, num_chunks)
    if settings.reference == "positive":
        no_pos = [q for q in qids if run.get(q) and not train[q].positives]
        if no_pos:
            raise FormatError(
                train_path, None, f"queries without positives cannot use --reference positive: {no_pos[:3]}"
            )
    wanted: set[str] = set()
    for q in qids:
        hits = run.get(q, [])[: settings.depth] if settings.depth is not None else run.get(q, [])
        wanted.update(h.docid for h in hits)
        if settings.reference == "positive" and hits:
            wanted.add(choose_reference(train[q].positives, q, settings.seed))
    texts = load_texts(corpus_path, wanted)
    pairs = build_pairs(template, settings, train, run, qids, texts)
    log.info(
        "%s chunk %d/%d: %d queries, %d candidates to judge with %s (%s), %d samples each",
        lang,
        chunk,
        num_chunks,
        len(qids),
        len(pairs),
        backend.NAME,
        backend.model_id,
        len(settings.samples),
    )
    cache = GenerationCache(cache_path) if cache_path else None
    try:
        counts = judge_pairs(pairs, backend, settings, cache)
    finally:
        if cache is not None:
            cache.close()
    meta = {
        "backend": backend.NAME,
        "model": backend.model_id,
        "model_fingerprint": backend.fingerprint(),
        "template_sha256": template.sha256,
    }
    records = [verdict_record(p, lang, settings.reference, settings.max_new_tokens, meta) for p in pairs]
    write_verdicts(out, records)
    verdicts = Counter(str(r["verdict"]) for r in records)
    counts.update({f"verdict_{k}": v for k, v in verdicts.items()})
    log.info(
        "wrote %d verdicts to %s: %s; %d samples generated, %d from cache, %d unparsed after retries; "
        "%d prompt tokens prefilled, %d generated",
        len(records),
        out,
        dict(sorted(verdicts.items())),
        counts["generated"],
        counts["cached"],
        counts["unparsed_samples"],
        counts["prefilled_tokens"],
        counts["generated_tokens"],
    )
    return counts


# -------------------------------------------------------------------------------------------- pool


def parse_keep(spec: str) -> frozenset[int]:
    try:
        keep = frozenset(int(x) for x in spec.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--keep {spec!r}: give verdicts to keep as a comma list of 0, 1, 2 (e.g. 0 or 0,1)") from None
    if not keep or not keep <= set(SCORES):
        raise ValueError(f"--keep {spec!r}: give verdicts to keep as a comma list of 0, 1, 2 (e.g. 0 or 0,1)")
    return keep


def build_pool(
    candidates: str | os.PathLike,
    train_path: str | os.PathLike,
    lang: str,
    source: str,
    keep: frozenset[int] | None,
    verdict_paths: Sequence[str | os.PathLike] = (),
    depth: int | None = None,
) -> list[NegativesRecord]:
    """The negatives of every training query: its candidates whose verdict is in ``keep`` (fused rank
    order). ``keep=None`` keeps every candidate unjudged (Table 5 "w/o LLM judgment")."""
    train = read_train(train_path)
    run = read_run(candidates)
    verdicts = read_verdicts(verdict_paths) if keep is not None else {}
    records: list[NegativesRecord] = []
    missing: list[tuple[str, str]] = []
    totals: Counter[str] = Counter()
    for qid, q in train.items():
        positives = set(q.positives)
        ranked = run.get(qid, [])[:depth] if depth is not None else run.get(qid, [])
        negatives: list[Negative] = []
        n_candidates = removed = unjudged = 0
        for rank, hit in enumerate(ranked, start=1):
            if hit.docid in positives:
                continue
            n_candidates += 1
            if keep is None:
                negatives.append(Negative(hit.docid, hit.score, rank, source, {"judged": False}))
                continue
            rec = verdicts.get((qid, hit.docid))
            if rec is None:
                missing.append((qid, hit.docid))
                continue
            v = rec["verdict"]
            if v is None:
                unjudged += 1
            elif v in keep:
                negatives.append(
                    Negative(hit.docid, hit.score, rank, source, {"verdict": v, "votes": rec.get("votes", {})})
                )
            else:
                removed += 1
        totals["candidates"] += n_candidates
        totals["kept"] += len(negatives)
        totals["removed"] += removed
        totals["unjudged"] += unjudged
        meta: dict[str, Any] = {"candidates": n_candidates}
        if keep is not None:
            meta.update(removed=removed, unjudged=unjudged)
        records.append(NegativesRecord(qid, q.query, lang, list(q.positives), negatives, meta))
    if missing:
        raise FormatError(
            candidates,
            None,
            f"{len(missing)} candidates have no verdict in {list(map(str, verdict_paths))}, e.g. {missing[:3]}: "
            "pass the verdict files of every chunk, made from this candidate file",
        )
    log.info(
        "%s pool: %d queries, %d candidates, %d kept, %d removed by the judge, %d left out as unjudged (null verdict)",
        lang,
        len(records),
        totals["candidates"],
        totals["kept"],
        totals["removed"],
        totals["unjudged"],
    )
    return records


# ------------------------------------------------------------------------------------------- stats


def verdict_stats(
    verdict_paths: Sequence[str | os.PathLike],
    lang: str,
    keep: frozenset[int] = frozenset({0}),
    truth_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Elimination rate (Table 8, last row) and, with the synthetic complete qrels, the judge's
    precision and recall at finding planted false negatives (positive class: truly relevant;
    predicted positive: removed). Null verdicts are counted apart and left out of both."""
    verdicts = read_verdicts(verdict_paths)
    judged = [r for r in verdicts.values() if r["verdict"] is not None]
    removed = [r for r in judged if r["verdict"] not in keep]
    by_verdict = Counter(str(r["verdict"]) for r in verdicts.values())
    samples = [s for r in verdicts.values() for s in r.get("samples", [])]
    out: dict[str, Any] = {
        "lang": lang,
        "keep": sorted(keep),
        "candidates": len(verdicts),
        "judged": len(judged),
        "null_verdicts": len(verdicts) - len(judged),
        "removed": len(removed),
        "elimination_rate": len(removed) / len(judged) if judged else None,
        "verdicts": dict(sorted(by_verdict.items())),
        "unparsed_sample_rate": (sum(s.get("score") is None for s in samples) / len(samples)) if samples else None,
        "prefilled_tokens": sum(r.get("prefilled_tokens", 0) for r in verdicts.values()),
        "generated_tokens": sum(r.get("generated_tokens", 0) for r in verdicts.values()),
    }
    if truth_path is not None:
        truth = read_qrels(truth_path)
        relevant = [truth.get(r["qid"], {}).get(r["docid"], 0) > 0 for r in judged]
        predicted = [r["verdict"] not in keep for r in judged]
        tp = sum(a and b for a, b in zip(relevant, predicted))
        fp = sum(p and not a for a, p in zip(relevant, predicted))
        fn = sum(a and not p for a, p in zip(relevant, predicted))
        tn = len(judged) - tp - fp - fn
        out["truth"] = {
            "qrels": str(truth_path),
            "false_negative_rate_among_candidates": sum(relevant) / len(relevant) if relevant else None,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "true_negatives": tn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "accuracy": (tp + tn) / len(judged) if judged else None,
        }
    return out


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from .llm import BACKENDS

    p = argparse.ArgumentParser(prog="python -m boostmdr.judge", description="Stage 1: the LLM false-negative judge.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verdicts", help="judge the candidates of one chunk of training queries")
    v.add_argument("--candidates", required=True, help="fused candidate run (TREC), positives removed")
    v.add_argument("--train", required=True, help="prepared train.jsonl")
    v.add_argument("--corpus", required=True, help="prepared corpus.jsonl")
    v.add_argument("--lang", required=True)
    v.add_argument("--chunk", type=int, default=0, help="0-based chunk of the training queries to judge")
    v.add_argument("--num-chunks", type=int, default=1)
    v.add_argument("--backend", choices=sorted(BACKENDS), required=True)
    v.add_argument(
        "--model", required=True, help="model directory or hub id (transformers, vllm) or served model name (http)"
    )
    v.add_argument("--device", default="auto", help="transformers: cpu, cuda, auto")
    v.add_argument("--dtype", default="auto", help="transformers/vllm: auto, float32, bfloat16, float16")
    v.add_argument(
        "--max-batch-rows",
        type=int,
        default=64,
        help="transformers: rows (prompts x samples) decoded together; at most --samples' count: one prompt at a time",
    )
    v.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model")
    v.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm")
    v.add_argument("--max-model-len", type=int, default=None, help="vllm: context length to reserve")
    v.add_argument("--base-url", default=None, help="http: e.g. http://127.0.0.1:8000/v1")
    v.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="http: NAME of the environment variable holding the key"
    )
    v.add_argument("--endpoint", choices=["completions", "chat"], default="completions", help="http: API to call")
    v.add_argument("--concurrency", type=int, default=4, help="http: requests in flight")
    v.add_argument("--timeout", type=float, default=120.0, help="http: seconds per request")
    v.add_argument("--max-retries", type=int, default=6, help="http: retries on 429/5xx/connection errors")
    v.add_argument("--prompt", required=True, help="prompt template with {question}, {candidate}, {reference}")
    v.add_argument("--reference", choices=REFERENCE_MODES, default="positive")
    v.add_argument("--samples", default=AUTHORS_SAMPLES, help="comma list of top_p:temperature, one per sample")
    v.add_argument("--max-new-tokens", type=int, default=48)
    v.add_argument("--retries", type=int, default=2, help="extra attempts for a sample whose output does not parse")
    v.add_argument("--seed", type=int, default=13, help="reference choice and sampling seeds")
    v.add_argument(
        "--max-passage-words", type=int, default=0, help="cut candidate and reference to this many words (0: no cut)"
    )
    v.add_argument("--depth", type=int, default=None, help="judge only the top N candidates of each query")
    v.add_argument("--batch-size", type=int, default=64, help="prompts handed to the backend at once")
    v.add_argument("--cache", default=None, help="SQLite generation cache (shared across runs and chunks)")
    v.add_argument("--out", required=True)
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--log", default=None)

    pl = sub.add_parser("pool", help="merge verdict files into the negatives file")
    pl.add_argument("--verdicts", nargs="*", default=[])
    pl.add_argument("--candidates", required=True)
    pl.add_argument("--train", required=True)
    pl.add_argument("--lang", required=True)
    pl.add_argument("--keep", default="0", help="verdicts kept as negatives: 0 (authors' code) or 0,1 (drop only 2)")
    pl.add_argument("--no-judge", action="store_true", help="keep every candidate (Table 5 'w/o LLM judgment')")
    pl.add_argument("--depth", type=int, default=None)
    pl.add_argument("--source", required=True, help="provenance tag, e.g. stage1:ensemble")
    pl.add_argument("--out", required=True)
    pl.add_argument("--threads", type=int, default=None)
    pl.add_argument("--log", default=None)

    st = sub.add_parser("stats", help="elimination rate, and precision/recall against synthetic truth")
    st.add_argument("--verdicts", nargs="+", required=True)
    st.add_argument("--lang", required=True)
    st.add_argument("--keep", default="0")
    st.add_argument("--truth", default=None, help="synthetic-truth/{lang}.train.complete-qrels.tsv (analysis only)")
    st.add_argument("--out", required=True)
    st.add_argument("--threads", type=int, default=None)
    st.add_argument("--log", default=None)
    return p


def backend_settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend == "transformers":
        return {"model": args.model, "device": args.device, "dtype": args.dtype, "max_batch_rows": args.max_batch_rows}
    if args.backend == "vllm":
        return {
            "model": args.model,
            "tensor_parallel_size": args.tensor_parallel_size,
            "dtype": args.dtype,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_model_len": args.max_model_len,
            "seed": args.seed,
        }
    if not args.base_url:
        raise ValueError("--backend http needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    return {
        "model": args.model,
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "endpoint": args.endpoint,
        "concurrency": args.concurrency,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    set_threads(args.threads)
    if args.command == "verdicts":
        from .llm import get_backend

        if not 0 <= args.chunk < args.num_chunks:
            parser.error(f"--chunk {args.chunk} out of range for --num-chunks {args.num_chunks} (chunks are 0-based)")
        settings = JudgeSettings(
            samples=tuple(parse_samples_spec(args.samples)),
            reference=args.reference,
            max_new_tokens=args.max_new_tokens,
            retries=args.retries,
            seed=args.seed,
            max_passage_words=args.max_passage_words or None,
            depth=args.depth,
            batch_size=args.batch_size,
        )
        template = PromptTemplate.load(args.prompt)
        with get_backend(args.backend, **backend_settings(args)) as backend:
            set_threads(args.threads)  # again: the backend may have imported torch just now
            log.info("backend: %s", backend.describe())
            run_verdicts(
                args.candidates,
                args.train,
                args.corpus,
                args.lang,
                backend,
                template,
                settings,
                args.out,
                chunk=args.chunk,
                num_chunks=args.num_chunks,
                cache_path=args.cache,
            )
    elif args.command == "pool":
        keep = None if args.no_judge else parse_keep(args.keep)
        if keep is not None and not args.verdicts:
            parser.error("pool: give --verdicts (every chunk's file) or --no-judge")
        records = build_pool(args.candidates, args.train, args.lang, args.source, keep, args.verdicts, args.depth)
        write_negatives(args.out, records)
    else:
        stats = verdict_stats(args.verdicts, args.lang, parse_keep(args.keep), args.truth)
        write_json(args.out, stats)
        log.info("%s: elimination rate %s", args.lang, stats["elimination_rate"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
