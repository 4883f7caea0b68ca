"""Stage 2, positive-driven back-forward generation (PDBG): new queries written from a training query's
positive, to retrieve more hard negatives for queries whose stage-1 pool is short (paper Sec. 3.4).

For every training query whose stage-1 pool holds fewer than N negatives, the generator LLM

1. **summarises the positive** (the authors' ``generate_summary.py`` prompt, ``config/prompts/pdbg_summary.txt``:
   "The following text is in {language}. Please summarize it in the same language. ...Summary:"), then
2. **writes a new query from the summary** (``generate_query.py``'s prompt, ``config/prompts/pdbg_query.txt``),

both in the query's language, with the authors' sampling: temperature 0.7, top-p 0.9, at most 256 new tokens
for the summary and 128 for the query. The templates are files a user can replace; the summary template has
the placeholders ``{language}`` (the language's English name) and ``{passage}``, and may also use ``{query}``
(the paper says the positive is summarised "in terms of the corresponding query", the authors' prompt does
not show the model the query: the shipped template follows the code). The query template has ``{language}``
and ``{summary}``.

**w/o PDBG** (Table 6) is defined here as: the new query is written from the positive passage directly, in one
step, with ``config/prompts/pdbg_direct.txt`` (the query prompt with "this text" in place of "this summary"
and the passage in place of the summary), with the query step's sampling; no summary is made. Everything
downstream (retrieval, judging, top-up) is the same. **w/o MIFT** runs the same steps with the base model
instead of the instruction-tuned one.

The positive is one labelled positive chosen with :func:`boostmdr.judge.choose_reference` from the
generator's seed: with the judge's seed (both 0 by default) it is the positive the stage-1 judge used as
its reference, as in the authors' code (which summarises the judge's "standard answer").
``queries_per_query`` (default 1, the paper's "a new query") draws that many summaries (one sample each,
own seed) and one query from each. Prompts are written as the model's user turn by
:class:`~boostmdr.llm.prompt.TurnFormat` (the same format MIFT trains on).

Everything runs through :class:`boostmdr.llm.runner.GenerationRunner`, so any backend works (transformers,
vLLM, an OpenAI-compatible server), every generation is cached one file per job, and a killed job loses
nothing it finished. An output that is empty after cleaning (:func:`clean_summary`, :func:`clean_query`) is
retried with a new seed; a query whose summary or new query still fails is recorded with its status and
gets no new candidates (the top-up records its shortfall).

Outputs: the generated queries (docs/formats.md, :class:`~boostmdr.formats.GeneratedQuery`), a topics file
(``gid<TAB>query``) and a ``train.jsonl`` of the generated queries with their original query's positives,
so the stage-1 retrieval and fusion rules run on them unchanged, and statistics.

``python -m boostmdr.generate --pool pool.jsonl --train train.jsonl --corpus corpus.jsonl --lang sw --pool-size 30
--backend transformers --model M [--adapter A] --summary-prompt S --query-prompt Q --mode pdbg --out q.jsonl
--topics q.tsv --queries-train q.train.jsonl --stats q.json --cache cache.jsonl``
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .formats import (
    GeneratedQuery,
    LabelledQuery,
    NegativesRecord,
    read_negatives,
    read_train,
    write_generated_queries,
    write_json,
    write_topics,
    write_train,
)
from .judge import choose_reference, load_texts
from .languages import language_name
from .llm.cache import GenerationCache
from .llm.prompt import PROMPT_FORMATS, PromptTemplate, TemplateError, TurnFormat, truncate_words
from .llm.runner import GenerationRunner, Item, RunnerSettings
from .utils import set_threads, setup_logging

log = logging.getLogger(__name__)

MODES = ("pdbg", "direct")
SEED_NAMESPACE = "pdbg"
SUMMARY_PLACEHOLDERS = ("language", "passage")
QUERY_PLACEHOLDERS = ("language", "summary")
DIRECT_PLACEHOLDERS = ("language", "passage")
_LABEL = re.compile(r"^\s*(?:summary|query|search query|new query)\s*[:：]\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»「」"


@dataclass(frozen=True)
class GenerationSettings:
    """The authors' sampling (temperature 0.7, top-p 0.9; 256 and 128 new tokens) and the run's settings."""

    mode: str = "pdbg"
    temperature: float = 0.7
    top_p: float = 0.9
    summary_max_new_tokens: int = 256
    query_max_new_tokens: int = 128
    queries_per_query: int = 1
    max_passage_words: int | None = None
    retries: int = 2
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.queries_per_query < 1 or self.summary_max_new_tokens < 1 or self.query_max_new_tokens < 1:
            raise ValueError("queries_per_query and the max new tokens must be >= 1")


def load_summary_template(path: str | os.PathLike) -> PromptTemplate:
    """The summary template: ``{language}`` and ``{passage}``, and ``{query}`` if the file uses it."""
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        raise TemplateError(f"{path}: prompt template file not found") from None
    names = SUMMARY_PLACEHOLDERS + (("query",) if "{query}" in text else ())
    return PromptTemplate(text, names, str(path))


def clean_summary(text: str) -> str | None:
    """A summary as one line: a leading "Summary:" label removed, white space collapsed; ``None`` if empty."""
    text = " ".join(_LABEL.sub("", text.strip()).split())
    return text or None


def clean_query(text: str) -> str | None:
    """A query: the first non-empty line, without a leading "Query:" label or surrounding quotes, white space
    collapsed (a topics file holds one line per query); ``None`` if nothing is left."""
    for line in text.strip().splitlines():
        line = " ".join(_LABEL.sub("", line).split()).strip(_QUOTES).strip()
        if line:
            return line
    return None


@dataclass
class _Job:
    """The generation of one training query: its positive and its runner items."""

    record: NegativesRecord
    positive: str
    first: Item
    """The summary item (pdbg) or the query item (direct)."""
    queries: list[Item | None]
    """pdbg: one query item per summary sample (``None`` where the summary failed)."""


def select_queries(pool: Sequence[NegativesRecord], size: int) -> list[NegativesRecord]:
    """The records whose stage-1 pool holds fewer than ``size`` negatives (and that have a positive)."""
    return [r for r in pool if len(r.negatives) < size and r.positives]


def generate_queries(
    records: Sequence[NegativesRecord],
    texts: dict[str, str],
    lang: str,
    backend: Any,
    turn: TurnFormat,
    templates: dict[str, PromptTemplate],
    s: GenerationSettings,
    cache: GenerationCache | None = None,
) -> tuple[list[GeneratedQuery], Counter[str]]:
    """Write ``s.queries_per_query`` new queries for each record (module docstring)."""
    name = language_name(lang)

    def runner(max_new_tokens: int, parse: Any) -> GenerationRunner:
        return GenerationRunner(
            backend,
            RunnerSettings(max_new_tokens, s.retries, s.seed, SEED_NAMESPACE, s.batch_size),
            parse,
            cache,
        )

    samples = [(s.top_p, s.temperature)] * s.queries_per_query
    jobs: list[_Job] = []
    for r in records:
        positive = choose_reference(r.positives, r.qid, s.seed)
        passage = truncate_words(texts[positive], s.max_passage_words)
        if s.mode == "pdbg":
            values = {"language": name, "passage": passage}
            if "query" in templates["summary"].placeholders:
                values["query"] = " ".join(r.query.split())
            prompt = turn.wrap(templates["summary"].render(**values))
            first = Item.make(f"{r.qid}\0summary\0{positive}", prompt, samples)
        else:
            prompt = turn.wrap(templates["direct"].render(language=name, passage=passage))
            first = Item.make(f"{r.qid}\0direct\0{positive}", prompt, samples)
        jobs.append(_Job(r, positive, first, []))
    counts: Counter[str] = Counter()
    if s.mode == "pdbg":
        counts.update(runner(s.summary_max_new_tokens, clean_summary).run([j.first for j in jobs], desc=f"{lang} summaries"))
        for j in jobs:
            for k, sample in enumerate(j.first.samples):
                if sample.parsed is None:
                    j.queries.append(None)
                    continue
                prompt = turn.wrap(templates["query"].render(language=name, summary=sample.parsed))
                j.queries.append(Item.make(f"{j.record.qid}\0query\0{k}", prompt, [(s.top_p, s.temperature)]))
        second = [q for j in jobs for q in j.queries if q is not None]
        counts.update({f"query_{k}": v for k, v in runner(s.query_max_new_tokens, clean_query).run(second, desc=f"{lang} queries").items()})
    else:
        counts.update(runner(s.query_max_new_tokens, clean_query).run([j.first for j in jobs], desc=f"{lang} queries"))

    meta = {"backend": backend.NAME, "model": backend.model_id, "fingerprint": backend.fingerprint(), "turn_format": turn.kind}
    out: list[GeneratedQuery] = []
    for j in jobs:
        for k in range(s.queries_per_query):
            raw: dict[str, Any] = {}
            summary = query = None
            if s.mode == "pdbg":
                first = j.first.samples[k]
                raw["summary"] = [a["raw"] for a in first.attempts]
                summary = first.parsed
                item = j.queries[k]
                if item is not None:
                    raw["query"] = [a["raw"] for a in item.samples[0].attempts]
                    query = item.samples[0].parsed
                status = "summary_failed" if summary is None else "query_failed" if query is None else "ok"
            else:
                sample = j.first.samples[k]
                raw["query"] = [a["raw"] for a in sample.attempts]
                query = sample.parsed
                status = "ok" if query is not None else "query_failed"
            counts[f"status_{status}"] += 1
            out.append(
                GeneratedQuery(f"{j.record.qid}.g{k}", j.record.qid, lang, s.mode, j.positive, summary, query, status, raw, meta)
            )
    return out, counts


def run_generation(
    pool_path: str | os.PathLike,
    train_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    lang: str,
    size: int,
    backend: Any,
    turn: TurnFormat,
    templates: dict[str, PromptTemplate],
    s: GenerationSettings,
    outputs: dict[str, str],
    cache_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Select the short pools, generate, and write the four outputs (queries, topics, train, stats)."""
    pool = read_negatives(pool_path)
    train = read_train(train_path)
    stray = [r.qid for r in pool if r.qid not in train]
    if stray:
        raise ValueError(f"{pool_path}: {len(stray)} queries are not in {train_path}, e.g. {stray[:3]}")
    chosen = select_queries(pool, size)
    wanted = {choose_reference(r.positives, r.qid, s.seed) for r in chosen}
    texts = load_texts(corpus_path, wanted) if wanted else {}
    log.info("%s: %d of %d training queries have fewer than %d stage-1 negatives", lang, len(chosen), len(pool), size)
    cache = GenerationCache(cache_path) if cache_path else None
    try:
        generated, counts = generate_queries(chosen, texts, lang, backend, turn, templates, s, cache)
    finally:
        if cache is not None:
            cache.close()
    ok = [g for g in generated if g.status == "ok"]
    write_generated_queries(outputs["out"], generated)
    write_topics(outputs["topics"], [(g.gid, g.query) for g in ok])
    write_train(outputs["train"], [LabelledQuery(g.gid, g.query, train[g.qid].positives) for g in ok])  # type: ignore[arg-type]
    stats = {
        "mode": s.mode,
        "pool_size": size,
        "training_queries": len(pool),
        "below_pool_size": len(chosen),
        "generated": len(generated),
        "ok": len(ok),
        "summary_failed": counts["status_summary_failed"],
        "query_failed": counts["status_query_failed"],
        "samples_from_cache": counts["cached"] + counts["query_cached"],
        "generated_tokens": counts["generated_tokens"] + counts["query_generated_tokens"],
        "prefilled_tokens": counts["prefilled_tokens"] + counts["query_prefilled_tokens"],
        "generator": {"backend": backend.NAME, "model": backend.model_id, "turn_format": turn.kind},
        "settings": {k: v for k, v in s.__dict__.items()},
    }
    write_json(outputs["stats"], {"lang": lang, "generation": stats})
    log.info(
        "%s: %d generated queries, %d ok, %d summary and %d query failures; %d new tokens",
        lang, len(generated), len(ok), stats["summary_failed"], stats["query_failed"], stats["generated_tokens"],
    )  # fmt: skip
    return stats


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from .llm.options import add_backend_arguments

    p = argparse.ArgumentParser(prog="python -m boostmdr.generate", description="Stage 2: positive-driven back-forward generation.")
    p.add_argument("--pool", required=True, help="stage-1 negatives file of the language")
    p.add_argument("--train", required=True, help="prepared train.jsonl")
    p.add_argument("--corpus", required=True, help="prepared corpus.jsonl")
    p.add_argument("--lang", required=True)
    p.add_argument("--pool-size", type=int, required=True, help="N: queries with fewer stage-1 negatives get new queries")
    add_backend_arguments(p)
    d = GenerationSettings()
    p.add_argument("--mode", choices=MODES, default=d.mode, help="pdbg: summary then query; direct: 'w/o PDBG'")
    p.add_argument("--summary-prompt", default=None, help="summary template ({language}, {passage}[, {query}]); mode pdbg")
    p.add_argument("--query-prompt", default=None, help="query template ({language}, {summary}); mode pdbg")
    p.add_argument("--direct-prompt", default=None, help="query-from-passage template ({language}, {passage}); mode direct")
    p.add_argument("--prompt-format", choices=PROMPT_FORMATS, default="auto")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--summary-max-new-tokens", type=int, default=d.summary_max_new_tokens)
    p.add_argument("--query-max-new-tokens", type=int, default=d.query_max_new_tokens)
    p.add_argument("--queries-per-query", type=int, default=d.queries_per_query)
    p.add_argument("--max-passage-words", type=int, default=0, help="cut the positive to this many words (0: whole)")
    p.add_argument("--retries", type=int, default=d.retries)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--cache", default=None, help="this job's generation cache file; every *.jsonl beside it is read")
    p.add_argument("--out", required=True, help="generated queries (JSON lines)")
    p.add_argument("--topics", required=True, help="gid<TAB>query of the usable generated queries")
    p.add_argument("--queries-train", required=True, help="train.jsonl of the generated queries (original positives)")
    p.add_argument("--stats", required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .llm import get_backend
    from .llm.options import backend_settings

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    set_threads(args.threads)
    s = GenerationSettings(
        args.mode, args.temperature, args.top_p, args.summary_max_new_tokens, args.query_max_new_tokens,
        args.queries_per_query, args.max_passage_words or None, args.retries, args.seed, args.batch_size,
    )  # fmt: skip
    needed = ("summary_prompt", "query_prompt") if s.mode == "pdbg" else ("direct_prompt",)
    missing = [f"--{n.replace('_', '-')}" for n in needed if not getattr(args, n)]
    if missing:
        parser.error(f"--mode {s.mode} needs {' and '.join(missing)}")
    templates = (
        {"summary": load_summary_template(args.summary_prompt), "query": PromptTemplate.load(args.query_prompt, QUERY_PLACEHOLDERS)}
        if s.mode == "pdbg"
        else {"direct": PromptTemplate.load(args.direct_prompt, DIRECT_PLACEHOLDERS)}
    )
    turn = TurnFormat.for_model(args.prompt_format, args.model)
    outputs = {"out": args.out, "topics": args.topics, "train": args.queries_train, "stats": args.stats}
    with get_backend(args.backend, **backend_settings(args, seed=args.seed)) as backend:
        set_threads(args.threads)
        log.info("backend: %s", backend.describe())
        run_generation(
            args.pool, args.train, args.corpus, args.lang, args.pool_size, backend, turn, templates, s, outputs, args.cache
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
