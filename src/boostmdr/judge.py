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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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
from .llm.cache import GenerationCache
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
SCORES = VERDICTS
SEED_NAMESPACE = "judge"


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

    def __post_init__(self) -> None:
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"--reference must be one of {REFERENCE_MODES}, got {self.reference!r}")
        if self.retries < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("--retries must be >= 0, --max-new-tokens and --batch-size >= 1")


@dataclass
class _Pair:
    """One judged candidate: where it came from, and the runner item holding its prompt and samples."""

    qid: str
    docid: str
    rank: int
    score: float
    reference_docid: str | None
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
            item = Item.make(f"{qid}\0{hit.docid}", prompt, settings.samples)
            pairs.append(_Pair(qid, hit.docid, rank, hit.score, ref_id, item))
    if skipped_positive:
        log.info("skipped %d candidates that are labelled positives of their query (never judged)", skipped_positive)
    return pairs


def judge_pairs(
    pairs: list[_Pair],
    backend: Any,
    settings: JudgeSettings,
    cache: GenerationCache | None,
) -> Counter[str]:
    """Fill every pair's samples through the generation runner (cache, backend, retries of unparsed
    samples with new seeds). Returns its counters (generated, cached, unparsed, ...)."""
    runner_settings = RunnerSettings(
        max_new_tokens=settings.max_new_tokens,
        retries=settings.retries,
        seed=settings.seed,
        namespace=SEED_NAMESPACE,
        batch_size=settings.batch_size,
    )
    runner = GenerationRunner(backend, runner_settings, parse_scores, cache)
    return runner.run([p.item for p in pairs], desc="judging")


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
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in verdicts.values()),
        "prefilled_tokens": sum(r.get("prefilled_tokens", 0) for r in verdicts.values()),
        "generated_tokens": sum(r.get("generated_tokens", 0) for r in verdicts.values()),
        # new tokens of the samples a rerun took from the cache: what they cost when they were made
        "cached_generated_tokens": sum(r.get("cached_generated_tokens", 0) for r in verdicts.values()),
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
    v.add_argument("--prompt", required=True, help="prompt template with {question}, {candidate}, {reference}")
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
        "--cache",
        default=None,
        help="this job's generation cache file (JSON lines); every *.jsonl beside it is read and reused, only this one is written",
    )
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
        template = load_judge_template(args.prompt)
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
