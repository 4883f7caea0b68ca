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

Beyond the paper (issue 16), each a setting; the paper's protocol above stays the default:

* ``--mode listwise``: one prompt per query (or per window of ``--window`` candidates) lists the numbered
  candidates and is answered with the relevant ones' numbers, as RLHN does (:mod:`boostmdr.listwise`:
  prompt, strict parsing, verdict mapping listed = 2, not listed = 0). Verdict records keep their format
  and gain ``mode`` and ``window``.
* A cascade (:mod:`boostmdr.cascade`): ``verdicts --escalated-by FIRST...`` judges only the queries a
  first judge's verdicts escalate; ``cascade`` merges the two judges' verdicts into one verdict file that
  says which judge decided each candidate.
* ``--structured-output``: the answer is constrained by the backend (:mod:`boostmdr.llm.constraint`):
  pointwise, the nine answers of the prompt's JSON format as a choice list (transformers, vLLM) or their
  JSON schema (HTTP ``response_format``); listwise, see :func:`boostmdr.listwise.constraint_options`. A
  backend that can enforce none of them is refused at start, naming the setting.
* ``--summary``: a JSON file with the job's counts (calls, tokens, cached and unparsed samples, seconds
  spent generating), which the judge evaluation's cost table reads.
* ``--no-positive-reference empty``: a query without a labelled positive gets an empty reference instead
  of failing the job (the human-label evaluation uses it for queries with a single positive).
* ``--fill-pool POOL --pool-size N --keep K`` (stage 2's top-up, :mod:`boostmdr.topup`): judge each query's
  candidates in rank order only until as many are kept (verdict in ``K``) as its stage-1 pool ``POOL`` lacks
  of ``N``, in rounds that each judge every unfinished query's next candidates in one batch. The top-up
  takes new candidates in that order and stops when the pool is full, so it reads exactly the verdicts
  judged here: the same pools as judging every candidate, without the verdicts it would never read.
  Pointwise only.

The generic machinery (the prompt template, the generation cache, sample seeds, the cached, batched and
retried generation loop, the backends and their options) lives in :mod:`boostmdr.llm`; this module holds
the judging: the prompt's fields, score parsing, the vote, pools and statistics. Every sample is cached
under a key of everything that determines it (:func:`boostmdr.llm.cache.cache_key`), so a rerun (another
candidate depth, another fusion) generates only what it has not seen, and a judge killed mid-way loses
nothing finished.

CLI::

    python -m boostmdr.judge verdicts --candidates fused.trec --train train.jsonl --corpus corpus.jsonl \\
        --lang sw --chunk 0 --num-chunks 4 --backend transformers --model results/models/tiny-lm \\
        --prompt config/prompts/judge.txt --reference positive --samples 0.7:0.4,0.8:0.6,0.9:0.8,0.8:0.4 \\
        --max-new-tokens 32 --retries 2 --seed 0 --cache results/cache/judge/llm/sw/chunk-0.jsonl --out verdicts.jsonl
    python -m boostmdr.judge pool --verdicts v0.jsonl v1.jsonl --candidates fused.trec --train train.jsonl \\
        --lang sw --keep 0 --source stage1:ensemble --out negatives.jsonl
    python -m boostmdr.judge stats --verdicts v0.jsonl v1.jsonl --lang sw --out stats.json \\
        [--truth RAW/synthetic-truth/sw.train.complete-qrels.tsv]
    python -m boostmdr.judge verdicts ... --mode listwise --prompt config/prompts/judge_listwise.txt --window 20
    python -m boostmdr.judge verdicts ... --escalated-by first-v0.jsonl first-v1.jsonl --out escalated-v0.jsonl
    python -m boostmdr.judge cascade --train train.jsonl --chunk 0 --num-chunks 2 --first first-v0.jsonl first-v1.jsonl \\
        --second escalated-v0.jsonl --first-name llm_small --second-name llm --out v0.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import cascade, listwise
from .formats import (
    VERDICTS,
    FormatError,
    Hit,
    LabelledQuery,
    Negative,
    NegativesRecord,
    passage_text,
    read_corpus,
    read_negatives,
    read_qrels,
    read_run,
    read_train,
    read_verdicts,
    shard_bounds,
    write_json,
    write_negatives,
    write_verdicts,
)
from .llm.cache import GenerationCache
from .llm.constraint import Constraint, pick
from .llm.options import add_backend_arguments, backend_settings
from .llm.prompt import PromptTemplate, TemplateError, truncate_words
from .llm.runner import GenerationRunner, Item, RunnerSettings, parse_samples_spec
from .utils import set_threads, setup_logging

log = logging.getLogger(__name__)

PLACEHOLDERS = ("question", "candidate", "reference")
"""The judge template's placeholders: the query, the candidate passage, the reference positive."""
AUTHORS_SAMPLES = "0.7:0.4,0.8:0.6,0.9:0.8,0.8:0.4"
"""The authors' four samples as ``top_p:temperature`` pairs."""
REFERENCE_MODES = ("positive", "empty")
MODES = ("pointwise", "listwise")
"""How one judge asks: per candidate (the paper) or per window of a query's candidates (RLHN). A cascade
is two judges (:mod:`boostmdr.cascade`), not a mode of one."""
NO_POSITIVE = ("error", "empty")
SCORES = VERDICTS
SEED_NAMESPACE = "judge"
STRUCTURED_SETTING = "structured_output (--structured-output)"


# ------------------------------------------------------------------------------------------ prompt


def load_judge_template(path: str | os.PathLike) -> PromptTemplate:
    """The judge's prompt template from ``path``; a template written with the paper's printed
    placeholders gets a hint."""
    try:
        return PromptTemplate.load(path, PLACEHOLDERS)
    except TemplateError as err:
        text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if "{Input Question}" in text:
            raise TemplateError(
                f"{err} (the paper prints {{Input Question}} etc.; write {{question}}, {{candidate}}, {{reference}})"
            ) from None
        raise


def render_judge_prompt(
    template: PromptTemplate, question: str, candidate: str, reference: str, max_passage_words: int | None = None
) -> str:
    """The prompt for one (question, candidate, reference) triple; passages cut to ``max_passage_words``.

    The tiny LM's fine-tuning (:mod:`boostmdr.demo.tiny_lm`) builds its prompts with this same function.
    """
    return template.render(
        question=" ".join(question.split()),
        candidate=truncate_words(candidate, max_passage_words),
        reference=truncate_words(reference, max_passage_words),
    )


def format_scores(accuracy: int, completeness: int) -> str:
    """The answer the prompt asks for, as a model should write it."""
    return json.dumps({"Information Accuracy": accuracy, "Information Completeness": completeness})


POINTWISE_SCHEMA = {
    "type": "object",
    "properties": {
        "Information Accuracy": {"type": "integer", "enum": list(VERDICTS)},
        "Information Completeness": {"type": "integer", "enum": list(VERDICTS)},
    },
    "required": ["Information Accuracy", "Information Completeness"],
    "additionalProperties": False,
}
"""The JSON schema of the pointwise answer (structured output over a JSON-only backend)."""


def pointwise_constraint_options() -> dict[str, Constraint | None]:
    """The ways to constrain a pointwise answer, in order of preference: the nine answers as written by
    :func:`format_scores` (a choice list), their JSON schema."""
    answers = [format_scores(a, c) for a in VERDICTS for c in VERDICTS]
    return {"choice": Constraint.choice(answers), "regex": None, "json": Constraint.json_schema(POINTWISE_SCHEMA)}


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


def choose_reference(positives: Sequence[str], qid: str, seed: int) -> str:
    """One positive of the query, chosen at random but deterministically from (seed, qid)."""
    if not positives:
        raise ValueError(f"query {qid!r} has no positive to use as the reference")
    return random.Random(f"reference:{seed}:{qid}").choice(list(positives))


# ------------------------------------------------------------------------------------------- judge


@dataclass(frozen=True)
class JudgeSettings:
    """Everything that shapes the verdicts besides the backend and the model."""

    samples: tuple[tuple[float, float], ...] = tuple(parse_samples_spec(AUTHORS_SAMPLES))
    reference: str = "positive"
    max_new_tokens: int = 32
    retries: int = 2
    seed: int = 0
    max_passage_words: int | None = None
    depth: int | None = None
    batch_size: int = 64
    mode: str = "pointwise"
    window: int = 20
    """listwise: candidates per prompt (a query's candidates are split into windows of at most this many)."""
    structured_output: bool = False
    no_positive_reference: str = "error"
    """A query without a labelled positive under reference mode ``positive``: ``error`` (stage 1) or ``empty``."""

    def __post_init__(self) -> None:
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"--reference must be one of {REFERENCE_MODES}, got {self.reference!r}")
        if self.retries < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("--retries must be >= 0, --max-new-tokens and --batch-size >= 1")
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {MODES}, got {self.mode!r}")
        if self.window < 1:
            raise ValueError(f"--window must be >= 1, got {self.window}")
        if self.no_positive_reference not in NO_POSITIVE:
            raise ValueError(f"--no-positive-reference must be one of {NO_POSITIVE}, got {self.no_positive_reference!r}")


@dataclass
class QueryTask:
    """One query to judge: its reference positive (``None``: empty reference) and its candidates as
    ``(fused rank, hit)``, labelled positives already left out."""

    qid: str
    query: str
    reference_docid: str | None
    candidates: list[tuple[int, Hit]]


@dataclass
class _Pair:
    """One judged candidate: where it came from, and the runner item holding its prompt and samples."""

    qid: str
    docid: str
    rank: int
    score: float
    reference_docid: str | None
    item: Item


@dataclass
class _Window:
    """Listwise: consecutive candidates of one query judged in one prompt (the runner item)."""

    task: QueryTask
    index: int
    members: list[tuple[int, Hit]]
    item: Item


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


def reference_of(q: LabelledQuery, settings: JudgeSettings) -> str | None:
    """The query's reference positive (seeded), or ``None`` for an empty reference (reference mode
    ``empty``, or a query without positives under ``no_positive_reference`` ``empty``)."""
    if settings.reference != "positive" or (not q.positives and settings.no_positive_reference == "empty"):
        return None
    return choose_reference(q.positives, q.qid, settings.seed)


def build_tasks(
    settings: JudgeSettings, train: dict[str, LabelledQuery], run: dict[str, list], qids: Sequence[str]
) -> list[QueryTask]:
    """The queries of ``qids`` that have candidates, each with its reference and its candidates (the top
    ``depth`` of the run, labelled positives left out and counted)."""
    tasks: list[QueryTask] = []
    skipped_positive = 0
    for qid in qids:
        hits = run.get(qid, [])
        if settings.depth is not None:
            hits = hits[: settings.depth]
        if not hits:
            continue
        q = train[qid]
        positives = set(q.positives)
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            if hit.docid in positives:
                skipped_positive += 1
                continue
            candidates.append((rank, hit))
        tasks.append(QueryTask(qid, q.query, reference_of(q, settings), candidates))
    if skipped_positive:
        log.info("skipped %d candidates that are labelled positives of their query (never judged)", skipped_positive)
    return tasks


def pointwise_pairs(
    template: PromptTemplate,
    settings: JudgeSettings,
    tasks: Sequence[QueryTask],
    texts: dict[str, str],
    constraint: Constraint | None = None,
) -> list[_Pair]:
    """One runner item per candidate: the paper's prompt for (question, candidate, reference)."""
    pairs: list[_Pair] = []
    for t in tasks:
        ref_text = texts[t.reference_docid] if t.reference_docid is not None else ""
        for rank, hit in t.candidates:
            prompt = render_judge_prompt(template, t.query, texts[hit.docid], ref_text, settings.max_passage_words)
            item = Item.make(f"{t.qid}\0{hit.docid}", prompt, settings.samples, constraint)
            pairs.append(_Pair(t.qid, hit.docid, rank, hit.score, t.reference_docid, item))
    return pairs


def build_pairs(
    template: PromptTemplate,
    settings: JudgeSettings,
    train: dict[str, LabelledQuery],
    run: dict[str, list],
    qids: Sequence[str],
    texts: dict[str, str],
) -> list[_Pair]:
    """The pointwise pairs of ``qids``' candidates (see :func:`build_tasks` and :func:`pointwise_pairs`)."""
    return pointwise_pairs(template, settings, build_tasks(settings, train, run, qids), texts)


def listwise_windows(
    template: PromptTemplate,
    settings: JudgeSettings,
    tasks: Sequence[QueryTask],
    texts: dict[str, str],
    constraints: dict[int, Constraint] | None = None,
) -> list[_Window]:
    """One runner item per window of each query's candidates (:func:`boostmdr.listwise.windows`);
    ``constraints`` maps a window size to its structured-output constraint."""
    out: list[_Window] = []
    for t in tasks:
        ref_text = texts[t.reference_docid] if t.reference_docid is not None else ""
        for w, (start, stop) in enumerate(listwise.windows(len(t.candidates), settings.window)):
            members = t.candidates[start:stop]
            prompt = listwise.render_listwise_prompt(
                template, t.query, [texts[hit.docid] for _, hit in members], ref_text, settings.max_passage_words
            )
            key = "\0".join([t.qid, *(hit.docid for _, hit in members)])
            constraint = (constraints or {}).get(len(members))
            out.append(_Window(t, w, members, Item.make(key, prompt, settings.samples, constraint)))
    return out


def _runner_settings(settings: JudgeSettings, namespace: str) -> RunnerSettings:
    return RunnerSettings(
        max_new_tokens=settings.max_new_tokens,
        retries=settings.retries,
        seed=settings.seed,
        namespace=namespace,
        batch_size=settings.batch_size,
    )


def judge_pairs(
    pairs: list[_Pair],
    backend: Any,
    settings: JudgeSettings,
    cache: GenerationCache | None,
) -> Counter[str]:
    """Fill every pair's samples through the generation runner (cache, backend, retries of unparsed
    samples with new seeds). Returns its counters (generated, cached, unparsed, ...)."""
    runner = GenerationRunner(backend, _runner_settings(settings, SEED_NAMESPACE), parse_scores, cache)
    return runner.run([p.item for p in pairs], desc="judging")


def judge_windows(
    windows: list[_Window], backend: Any, settings: JudgeSettings, cache: GenerationCache | None
) -> Counter[str]:
    """Fill every window's samples, strictly parsed for the window's size (one runner pass per size)."""
    counts: Counter[str] = Counter()
    sizes = sorted({len(w.members) for w in windows})
    for size in sizes:
        items = [w.item for w in windows if len(w.members) == size]
        runner = GenerationRunner(
            backend,
            _runner_settings(settings, listwise.SEED_NAMESPACE),
            lambda text, n=size: listwise.parse_listwise(text, n),
            cache,
        )
        counts.update(runner.run(items, desc=f"judging listwise ({size} candidates)"))
    return counts


def verdict_record(
    pair: _Pair, lang: str, reference_mode: str, max_new_tokens: int, meta: dict[str, Any]
) -> dict[str, Any]:
    samples = pair.item.samples
    scores = [s.parsed.score if s.parsed else None for s in samples]
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
            for s in samples
        ],
        "votes": {str(k): v for k, v in sorted(votes.items())},
        "verdict": majority_vote(scores),
        "prompt_sha256": hashlib.sha256(pair.item.prompt.encode("utf-8")).hexdigest(),
        "prompt_tokens": pair.item.prompt_tokens,
        "prefilled_tokens": pair.item.prefilled_tokens,
        "generated_tokens": pair.item.generated_tokens,
        "cached_generated_tokens": pair.item.cached_generated_tokens,
        **meta,
    }


def window_records(window: _Window, lang: str, max_new_tokens: int, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One verdict record per candidate of a listwise window (see :mod:`boostmdr.listwise`: listed = 2,
    not listed = 0; the window's tokens on the record at position 1)."""
    item = window.item
    ref = window.task.reference_docid
    out = []
    for pos, (rank, hit) in enumerate(window.members, start=1):
        scores = [
            None if s.parsed is None else (listwise.LISTED if pos in s.parsed else listwise.NOT_LISTED)
            for s in item.samples
        ]
        votes = Counter(x for x in scores if x is not None)
        first = pos == 1
        out.append(
            {
                "qid": window.task.qid,
                "docid": hit.docid,
                "rank": rank,
                "score": hit.score,
                "lang": lang,
                "reference_mode": "positive" if ref is not None else "empty",
                "reference_docid": ref,
                "samples": [
                    {
                        "top_p": s.top_p,
                        "temperature": s.temperature,
                        "max_tokens": max_new_tokens,
                        "score": score,
                        "listed": sorted(s.parsed) if s.parsed is not None else None,
                        "attempts": s.attempts,
                    }
                    for s, score in zip(item.samples, scores)
                ],
                "votes": {str(k): v for k, v in sorted(votes.items())},
                "verdict": majority_vote(scores),
                "prompt_sha256": hashlib.sha256(item.prompt.encode("utf-8")).hexdigest(),
                "prompt_tokens": item.prompt_tokens if first else 0,
                "prefilled_tokens": item.prefilled_tokens if first else 0,
                "generated_tokens": item.generated_tokens if first else 0,
                "cached_generated_tokens": item.cached_generated_tokens if first else 0,
                "mode": "listwise",
                "window": {"index": window.index, "size": len(window.members), "position": pos},
                **meta,
            }
        )
    return out


def structured_constraints(
    settings: JudgeSettings, backend: Any, tasks: Sequence[QueryTask]
) -> tuple[Constraint | None, dict[int, Constraint]]:
    """The structured-output constraint of the pointwise answer and of each listwise window size (none
    unless ``settings.structured_output``); a ValueError naming the setting when the backend cannot
    enforce any form of the answer."""
    if not settings.structured_output:
        return None, {}
    supported = getattr(backend, "CONSTRAINTS", ())
    if settings.mode == "pointwise":
        return pick(pointwise_constraint_options(), supported, STRUCTURED_SETTING, backend.NAME), {}
    sizes = {stop - start for t in tasks for start, stop in listwise.windows(len(t.candidates), settings.window)}
    return None, {n: pick(listwise.constraint_options(n), supported, STRUCTURED_SETTING, backend.NAME) for n in sizes}


@dataclass(frozen=True)
class FillTarget:
    """Judge only until each query's pool is full (module docstring, ``--fill-pool``): per query, how many kept
    candidates it still needs and the docids the top-up skips (its pool's negatives and its positives)."""

    need: dict[str, int]
    seen: dict[str, frozenset[str]]
    keep: frozenset[int]

    @classmethod
    def from_pool(cls, pool_path: str | os.PathLike, size: int, keep: frozenset[int]) -> "FillTarget":
        if size < 1:
            raise ValueError(f"--pool-size must be >= 1, got {size}")
        need, seen = {}, {}
        for rec in read_negatives(pool_path):
            kept = rec.negatives[:size]  # as the top-up cuts it
            need[rec.qid] = size - len(kept)
            seen[rec.qid] = frozenset([n.docid for n in kept] + list(rec.positives))
        return cls(need, seen, keep)


def judge_until_full(
    tasks: Sequence[QueryTask],
    target: FillTarget,
    template: PromptTemplate,
    settings: JudgeSettings,
    texts: dict[str, str],
    backend: Any,
    cache: GenerationCache | None,
    constraint: Constraint | None = None,
) -> tuple[list[_Pair], Counter[str]]:
    """Judge each task's candidates in rank order until ``target.need`` of them are kept (or none is left), a round
    at a time: every unfinished query's next (still needed) candidates, all judged in one batch. Returns the judged
    pairs in task and rank order, and the runner's counters."""
    queue = {t.qid: [c for c in t.candidates if c[1].docid not in target.seen.get(t.qid, ())] for t in tasks}
    left = {t.qid: target.need.get(t.qid, 0) for t in tasks}
    judged: dict[str, list[_Pair]] = {t.qid: [] for t in tasks}
    counts: Counter[str] = Counter()
    rounds = 0
    while True:
        batch = []
        for t in tasks:
            take = min(left[t.qid], len(queue[t.qid]))
            if take > 0:
                batch.append(QueryTask(t.qid, t.query, t.reference_docid, queue[t.qid][:take]))
                queue[t.qid] = queue[t.qid][take:]
        if not batch:
            break
        rounds += 1
        pairs = pointwise_pairs(template, settings, batch, texts, constraint)
        counts.update(judge_pairs(pairs, backend, settings, cache))
        for pair in pairs:
            judged[pair.qid].append(pair)
            scores = [x.parsed.score if x.parsed else None for x in pair.item.samples]
            if majority_vote(scores) in target.keep:
                left[pair.qid] -= 1
    pairs = [p for t in tasks for p in judged[t.qid]]
    total = sum(len(t.candidates) for t in tasks)
    log.info(
        "judged %d of %d candidates in %d round(s), until each pool was full; %d queries still short of N",
        len(pairs), total, rounds, sum(1 for q in left.values() if q > 0),
    )
    counts["fill_rounds"] = rounds
    return pairs, counts


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
    escalated_by: Sequence[str | os.PathLike] = (),
    summary_path: str | os.PathLike | None = None,
    fill: FillTarget | None = None,
) -> Counter[str]:
    """Judge the candidates of one chunk of queries and write the verdict file. With ``escalated_by`` (a
    first judge's verdict files), judge only the chunk's queries those verdicts escalate
    (:func:`boostmdr.cascade.escalation`). With ``summary_path``, also write the job's counts there. With
    ``fill``, judge each query's candidates only until its pool is full (:func:`judge_until_full`)."""
    if fill is not None and settings.mode != "pointwise":
        raise ValueError("--fill-pool judges candidate by candidate: it needs --mode pointwise")
    train = read_train(train_path)
    run = read_run(candidates)
    unknown = sorted(set(run) - train.keys())
    if unknown:
        raise FormatError(candidates, None, f"{len(unknown)} queries are not in {train_path}, e.g. {unknown[:3]}")
    qids = select_chunk(list(train), chunk, num_chunks)
    escalation: dict[str, Any] | None = None
    if escalated_by:
        decisions = cascade.escalations(read_verdicts(escalated_by).values())
        chunk_decisions = [decisions[q] for q in qids if q in decisions]
        escalation = {
            "queries": len(chunk_decisions),
            "escalated": sum(d.escalated for d in chunk_decisions),
            "reasons": dict(sorted(Counter(r for d in chunk_decisions for r in d.reasons).items())),
        }
        qids = [q for q in qids if q in decisions and decisions[q].escalated]
        log.info(
            "%s chunk %d/%d: the first judge escalates %d of %d queries (%s)",
            lang, chunk, num_chunks, escalation["escalated"], escalation["queries"], escalation["reasons"],
        )
    if settings.reference == "positive" and settings.no_positive_reference == "error":
        no_pos = [q for q in qids if run.get(q) and not train[q].positives]
        if no_pos:
            raise FormatError(
                train_path, None, f"queries without positives cannot use --reference positive: {no_pos[:3]}"
            )
    tasks = build_tasks(settings, train, run, qids)
    pointwise_constraint, window_constraints = structured_constraints(settings, backend, tasks)
    wanted = {hit.docid for t in tasks for _, hit in t.candidates}
    wanted.update(t.reference_docid for t in tasks if t.reference_docid is not None)
    texts = load_texts(corpus_path, wanted)
    pairs: list[_Pair] = []
    windows: list[_Window] = []
    if fill is not None:
        prompts = sum(len(t.candidates) for t in tasks)  # at most: set to those judged afterwards
    elif settings.mode == "pointwise":
        pairs = pointwise_pairs(template, settings, tasks, texts, pointwise_constraint)
        prompts = len(pairs)
    else:
        windows = listwise_windows(template, settings, tasks, texts, window_constraints)
        prompts = len(windows)
    log.info(
        "%s chunk %d/%d: %d queries, %d candidates to judge %s in %d prompts with %s (%s), %d samples each%s",
        lang,
        chunk,
        num_chunks,
        len(qids),
        sum(len(t.candidates) for t in tasks),
        settings.mode,
        prompts,
        backend.NAME,
        backend.model_id,
        len(settings.samples),
        (", structured output" if settings.structured_output else "")
        + (", each query's only until its pool is full (at most)" if fill is not None else ""),
    )
    cache = GenerationCache(cache_path) if cache_path else None
    started = time.monotonic()
    try:
        if fill is not None:
            pairs, counts = judge_until_full(tasks, fill, template, settings, texts, backend, cache, pointwise_constraint)
            prompts = len(pairs)
        elif settings.mode == "pointwise":
            counts = judge_pairs(pairs, backend, settings, cache)
        else:
            counts = judge_windows(windows, backend, settings, cache)
    finally:
        if cache is not None:
            cache.close()
    seconds = time.monotonic() - started
    meta = {
        "backend": backend.NAME,
        "model": backend.model_id,
        "model_fingerprint": backend.fingerprint(),
        "template_sha256": template.sha256,
    }
    if settings.structured_output:
        meta["structured_output"] = True
    if settings.mode == "pointwise":
        records = [
            verdict_record(p, lang, "positive" if p.reference_docid is not None else "empty", settings.max_new_tokens, meta)
            for p in pairs
        ]
    else:
        records = [r for w in windows for r in window_records(w, lang, settings.max_new_tokens, meta)]
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
    if summary_path is not None:
        write_json(
            summary_path,
            {
                "lang": lang,
                "mode": settings.mode,
                "backend": backend.NAME,
                "model": backend.model_id,
                "structured_output": settings.structured_output,
                "chunk": chunk,
                "num_chunks": num_chunks,
                "queries": len(tasks),
                "candidates": len(records),
                "prompts": prompts,
                "samples_per_prompt": len(settings.samples),
                "calls": counts["generated"],
                "cached_samples": counts["cached"],
                "unparsed_samples": counts["unparsed_samples"],
                "prompt_tokens": counts["prompt_tokens"],
                "prefilled_tokens": counts["prefilled_tokens"],
                "generated_tokens": counts["generated_tokens"],
                "seconds": round(seconds, 3),
                "verdicts": dict(sorted(verdicts.items())),
                "escalation": escalation,
            },
        )
    return counts


def run_cascade(
    train_path: str | os.PathLike,
    first_paths: Sequence[str | os.PathLike],
    second_paths: Sequence[str | os.PathLike],
    first_name: str,
    second_name: str,
    out: str | os.PathLike,
    chunk: int = 0,
    num_chunks: int = 1,
) -> list[dict[str, Any]]:
    """Merge a cascade's verdicts for one chunk of queries (:func:`boostmdr.cascade.merge`) and write them."""
    qids = select_chunk(list(read_train(train_path)), chunk, num_chunks)
    records = cascade.merge(
        qids, read_verdicts(first_paths).values(), read_verdicts(second_paths).values(), first_name, second_name
    )
    write_verdicts(out, records)
    decided = Counter(r["decided_by"] for r in records)
    escalated = {r["qid"] for r in records if r["cascade"]["escalated"]}
    log.info(
        "cascade chunk %d/%d: %d verdicts (%s), %d of %d queries escalated",
        chunk, num_chunks, len(records), dict(decided), len(escalated), len({r["qid"] for r in records}),
    )
    return records


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
        "prompt_tokens": sum(_tokens(r, "prompt_tokens") for r in verdicts.values()),
        "prefilled_tokens": sum(_tokens(r, "prefilled_tokens") for r in verdicts.values()),
        "generated_tokens": sum(_tokens(r, "generated_tokens") for r in verdicts.values()),
        # new tokens of the samples a rerun took from the cache: what they cost when they were made
        "cached_generated_tokens": sum(_tokens(r, "cached_generated_tokens") for r in verdicts.values()),
    }
    decided = Counter(str(r["decided_by"]) for r in verdicts.values() if "decided_by" in r)
    if decided:  # a cascade's verdicts
        queries = {r["qid"]: r["cascade"]["escalated"] for r in verdicts.values()}
        out["decided_by"] = dict(sorted(decided.items()))
        out["escalated_queries"] = sum(queries.values())
        out["escalation_rate"] = sum(queries.values()) / len(queries) if queries else None
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


def _tokens(record: dict[str, Any], kind: str) -> int:
    """A verdict record's tokens of one kind; a cascade's escalated record adds its first judge's."""
    first = (record.get("cascade") or {}).get("first_tokens") or {}
    return int(record.get(kind, 0) or 0) + int(first.get(kind, 0) or 0)


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m boostmdr.judge", description="Stage 1: the LLM false-negative judge.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verdicts", help="judge the candidates of one chunk of training queries")
    v.add_argument("--candidates", required=True, help="fused candidate run (TREC), positives removed")
    v.add_argument("--train", required=True, help="prepared train.jsonl")
    v.add_argument("--corpus", required=True, help="prepared corpus.jsonl")
    v.add_argument("--lang", required=True)
    v.add_argument("--chunk", type=int, default=0, help="0-based chunk of the training queries to judge")
    v.add_argument("--num-chunks", type=int, default=1)
    add_backend_arguments(v)
    d = JudgeSettings()
    v.add_argument(
        "--prompt", required=True,
        help="prompt template: {question}, {candidate}, {reference} (pointwise); {question}, {reference}, {candidates} (listwise)",
    )
    v.add_argument("--reference", choices=REFERENCE_MODES, default=d.reference)
    v.add_argument("--samples", default=AUTHORS_SAMPLES, help="comma list of top_p:temperature, one per sample")
    v.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    v.add_argument("--retries", type=int, default=d.retries, help="extra attempts for a sample whose output does not parse")
    v.add_argument("--seed", type=int, default=d.seed, help="reference choice and sampling seeds")
    v.add_argument(
        "--max-passage-words", type=int, default=0, help="cut candidate and reference to this many words (0: no cut)"
    )
    v.add_argument("--depth", type=int, default=None, help="judge only the top N candidates of each query")
    v.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts handed to the backend at once")
    v.add_argument(
        "--mode", choices=MODES, default=d.mode,
        help="pointwise: one prompt per candidate (the paper); listwise: one per window of a query's candidates (RLHN)",
    )
    v.add_argument("--window", type=int, default=d.window, help="listwise: candidates per prompt")
    v.add_argument(
        "--structured-output", action="store_true",
        help="constrain the answer with the backend's structured output (refused where the backend has none)",
    )
    v.add_argument(
        "--no-positive-reference", choices=NO_POSITIVE, default=d.no_positive_reference,
        help="a query without a positive under --reference positive: fail (error) or judge it with an empty reference",
    )
    v.add_argument(
        "--escalated-by", nargs="+", default=[],
        help="a cascade's first judge's verdict files: judge only the queries they escalate",
    )
    v.add_argument("--summary", default=None, help="also write the job's counts (calls, tokens, seconds) here (JSON)")
    v.add_argument(
        "--cache",
        default=None,
        help="this job's generation cache file (JSON lines); every *.jsonl beside it is read and reused, only this one is written",
    )
    v.add_argument(
        "--fill-pool", default=None,
        help="stage 2: the stage-1 pool (negatives.jsonl) the candidates top up; judge each query's candidates in "
        "rank order only until it holds --pool-size negatives with a verdict in --keep",
    )  # fmt: skip
    v.add_argument("--pool-size", type=int, default=None, help="with --fill-pool: N")
    v.add_argument("--keep", default="0", help="with --fill-pool: the verdicts the top-up keeps (0, or 0,1)")
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

    c = sub.add_parser("cascade", help="merge a cascade's first- and second-judge verdicts for one chunk of queries")
    c.add_argument("--train", required=True, help="prepared train.jsonl (the chunk's queries, in its order)")
    c.add_argument("--chunk", type=int, default=0)
    c.add_argument("--num-chunks", type=int, default=1)
    c.add_argument("--first", nargs="+", required=True, help="the first judge's verdict files (every chunk)")
    c.add_argument("--second", nargs="*", default=[], help="the second judge's verdicts on the escalated queries")
    c.add_argument("--first-name", required=True)
    c.add_argument("--second-name", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--log", default=None)

    st = sub.add_parser("stats", help="elimination rate, and precision/recall against synthetic truth")
    st.add_argument("--verdicts", nargs="+", required=True)
    st.add_argument("--lang", required=True)
    st.add_argument("--keep", default="0")
    st.add_argument("--truth", default=None, help="synthetic-truth/{lang}.train.complete-qrels.tsv (analysis only)")
    st.add_argument("--out", required=True)
    st.add_argument("--threads", type=int, default=None)
    st.add_argument("--log", default=None)
    return p


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
            mode=args.mode,
            window=args.window,
            structured_output=args.structured_output,
            no_positive_reference=args.no_positive_reference,
        )
        fill = None
        if (args.fill_pool is None) != (args.pool_size is None):
            parser.error("--fill-pool and --pool-size go together")
        if args.fill_pool is not None:
            if args.mode != "pointwise":
                parser.error("--fill-pool judges candidate by candidate: it needs --mode pointwise")
            fill = FillTarget.from_pool(args.fill_pool, args.pool_size, parse_keep(args.keep))
        template = load_judge_template(args.prompt) if args.mode == "pointwise" else listwise.load_listwise_template(args.prompt)
        with get_backend(args.backend, **backend_settings(args, seed=args.seed)) as backend:
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
                escalated_by=args.escalated_by,
                summary_path=args.summary,
                fill=fill,
            )
    elif args.command == "cascade":
        if not 0 <= args.chunk < args.num_chunks:
            parser.error(f"--chunk {args.chunk} out of range for --num-chunks {args.num_chunks} (chunks are 0-based)")
        run_cascade(
            args.train, args.first, args.second, args.first_name, args.second_name, args.out, args.chunk, args.num_chunks
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
    from boostmdr.cli import run

    run(main)
