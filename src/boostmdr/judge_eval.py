"""How far to trust a judge, and what it costs: the judge measured on human labels, its cost measured per
mode, and a dry estimate of what a run would cost before any call.

The paper checks its judge only with a small human study (Table 12). Here any configured judge (pointwise,
listwise or a cascade; :mod:`boostmdr.judge`) is run, exactly as stage 1 runs it (same command, prompt,
samples, vote), on samples whose truth is known, and compared with that truth.

**The held-out sample** (``holdout``): a seeded sample of ``size`` training queries per language
(``random.Random("judge-eval-holdout:<seed>")`` over the queries of train.jsonl, kept in file order).
The judge is not trained in this workflow, so on real data these queries are held out from nothing but
are simply a sample; on the embedded default the tiny judge IS fine-tuned on training labels
(:mod:`boostmdr.demo.tiny_lm`), and the demo's rule passes it this file so that it never sees these
queries (disjoint by construction). Stage 1 still judges the held-out queries' candidates like every
other query's: that is inference, not training.

**Datasets** (``sample``), each written as a train view, a candidate run and the truth (qrels), so the
judge runs on it with its ordinary ``verdicts`` command:

* ``labels``: the held-out queries' human-labelled pairs (MIRACL's train qrels: rel 1 and rel 0; the
  synthetic benchmark's labels the same way). A query's reference positive is chosen with the seed among
  its labelled positives (as stage 1 chooses it), and its OTHER labelled positives and its labelled
  negatives are the candidates, in a seeded random order (the order must not give the labels away; the
  listwise prompt shows it). A pair is therefore never judged against its own passage. A query with a
  single positive has no other positive to refer to: by default (``single_positive: skip``) it is left
  out and counted; with ``empty`` its positive and negatives are judged with an empty reference.
* ``planted`` (synthetic benchmark only, analysis only): the held-out queries' stage-1 candidates (the
  fused run of the full method's ensemble), with the reference stage 1 uses, against the synthetic
  complete truth, whose unlabelled relevant passages are the planted false negatives.

**Measures** (``evaluate``), per language: "relevant" is predicted when the verdict is not in ``keep``
(default 0, as the pool removes it), and is true when the label is 1. Precision, recall (= agreement on
the human-relevant pairs), specificity (= agreement on the human-non-relevant pairs), accuracy and
Cohen's kappa over the pairs with a verdict; pairs without one (no sample parsed) are counted apart.
The confusion matrix of verdict 0/1/2/none against label 0/1 is kept whole. Cost, from the judge jobs'
summaries (``verdicts --summary``): calls (samples generated, retries included), prompt tokens sent (each
call counts its whole prompt, as an API bills it), prompt tokens the backend computed (``prefilled``,
less with prefix sharing), generated tokens and seconds spent generating; for a cascade the first and
second judges' jobs together, and the share of queries escalated. The jobs keep a private generation
cache, so a normal run generates everything it counts; a job killed and rerun takes the finished part
from its cache, and the table shows those cached samples.

**Dry estimate** (``estimate``): the prompts stage 1 would send for the full method's candidates,
rendered from the templates and the data, counted with a local tokenizer or a characters-per-token ratio,
and priced with the config's input and output prices (:mod:`boostmdr.llm.estimate`). Nothing is called.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .formats import (
    FormatError,
    Hit,
    LabelledQuery,
    read_json,
    read_qrels,
    read_run,
    read_topics,
    read_train,
    read_verdicts,
    write_json,
    write_qrels,
    write_run,
    write_topics,
    write_train,
)
from .judge import (
    AUTHORS_SAMPLES,
    JudgeSettings,
    build_tasks,
    choose_reference,
    listwise_windows,
    load_judge_template,
    load_texts,
    parse_keep,
    pointwise_pairs,
)
from .listwise import load_listwise_template
from .llm.estimate import DEFAULT_CHARS_PER_TOKEN, price, token_counter
from .llm.runner import parse_samples_spec
from .tables import Table, TableRow, count, percent
from .utils import setup_logging

log = logging.getLogger(__name__)

DATASETS = ("labels", "planted")
SINGLE_POSITIVE = ("skip", "empty")
DEFAULT_SINGLE_POSITIVE = "skip"
GRADES = ("2", "1", "0", "null")
DEFAULT_HOLDOUT_QUERIES = 100
DEFAULT_ESCALATION_SHARE = 0.35
"""Dry estimate of a cascade: the share of queries assumed to reach the second judge (RLHN's test samples
escalated 17/50 and 19/50 queries, REFERENCE-2.md 1.1); the measured share is in the cost table."""


# --------------------------------------------------------------------------------------------- sample


def holdout_queries(qids: Sequence[str], size: int, seed: int) -> list[str]:
    """A seeded sample of ``size`` query ids (all of them when there are fewer), in their given order."""
    if size < 0:
        raise ValueError(f"the held-out sample size must be >= 0, got {size}")
    chosen = set(random.Random(f"judge-eval-holdout:{seed}").sample(list(qids), min(size, len(qids))))
    return [q for q in qids if q in chosen]


@dataclass
class Sample:
    """A judge-evaluation dataset: the train view the judge reads (queries and their references), the
    candidates it judges, their truth (1 relevant, 0 not) and counts of what was left out."""

    queries: list[LabelledQuery]
    run: dict[str, list[Hit]]
    truth: dict[str, dict[str, int]]
    info: dict[str, Any] = field(default_factory=dict)


LABEL_INFO = ("held_out_queries", "queries", "skipped_queries", "skipped_pairs", "empty_reference_queries", "pairs",
              "relevant_pairs")
PLANTED_INFO = ("held_out_queries", "queries", "skipped_queries", "pairs", "relevant_pairs")


def label_sample(
    train: Mapping[str, LabelledQuery], holdout: Sequence[str], seed: int, single_positive: str = DEFAULT_SINGLE_POSITIVE
) -> Sample:
    """The held-out queries' labelled pairs (see the module doc, ``labels``)."""
    if single_positive not in SINGLE_POSITIVE:
        raise ValueError(f"single_positive must be one of {SINGLE_POSITIVE}, got {single_positive!r}")
    sample = Sample([], {}, {})
    info: Counter[str] = Counter(dict.fromkeys(LABEL_INFO, 0))
    for qid in holdout:
        q = train[qid]
        info["held_out_queries"] += 1
        labelled = list(dict.fromkeys([*q.positives, *q.negatives]))
        if not q.positives or (len(q.positives) == 1 and single_positive == "skip"):
            info["skipped_queries"] += 1
            info["skipped_pairs"] += len(labelled)
            continue
        if len(q.positives) >= 2:
            reference = [choose_reference(q.positives, qid, seed)]
        else:
            reference = []
            info["empty_reference_queries"] += 1
        candidates = [d for d in labelled if d not in reference]
        order = random.Random(f"judge-eval-order:{seed}:{qid}").sample(candidates, len(candidates))
        sample.queries.append(LabelledQuery(qid, q.query, tuple(reference), ()))
        sample.run[qid] = [Hit(d, float(len(order) - i)) for i, d in enumerate(order)]
        positives = set(q.positives)
        sample.truth[qid] = {d: int(d in positives) for d in order}
        info["queries"] += 1
        info["pairs"] += len(order)
        info["relevant_pairs"] += sum(d in positives for d in order)
    sample.info = {"dataset": "labels", "single_positive": single_positive, **{k: info[k] for k in LABEL_INFO}}
    return sample


def planted_sample(
    train: Mapping[str, LabelledQuery],
    holdout: Sequence[str],
    run: Mapping[str, list[Hit]],
    truth: Mapping[str, Mapping[str, int]],
) -> Sample:
    """The held-out queries' stage-1 candidates against the complete truth (see the module doc, ``planted``)."""
    sample = Sample([], {}, {})
    info: Counter[str] = Counter(dict.fromkeys(PLANTED_INFO, 0))
    for qid in holdout:
        q = train[qid]
        info["held_out_queries"] += 1
        positives = set(q.positives)
        hits = [h for h in run.get(qid, []) if h.docid not in positives]
        if not hits:
            info["skipped_queries"] += 1
            continue
        sample.queries.append(q)
        sample.run[qid] = hits
        sample.truth[qid] = {h.docid: int(truth.get(qid, {}).get(h.docid, 0) > 0) for h in hits}
        info["queries"] += 1
        info["pairs"] += len(hits)
        info["relevant_pairs"] += sum(sample.truth[qid].values())
    sample.info = {"dataset": "planted", **{k: info[k] for k in PLANTED_INFO}}
    return sample


def write_sample(sample: Sample, train_path: str, candidates_path: str, truth_path: str, info_path: str) -> None:
    write_train(train_path, sample.queries)
    write_run(candidates_path, sample.run, tag="judge-eval")
    write_qrels(truth_path, sample.truth)
    write_json(info_path, sample.info)
    log.info("judge-evaluation sample: %s", sample.info)


# --------------------------------------------------------------------------------------------- measures


def confusion(records: Sequence[Mapping[str, Any]], truth: Mapping[str, Mapping[str, int]], source: str = "") -> dict:
    """``{label: {verdict: count}}`` for labels "1", "0" and verdicts "2", "1", "0", "null"; every judged
    pair must have a label (a FormatError naming ``source`` otherwise)."""
    out = {label: dict.fromkeys(GRADES, 0) for label in ("1", "0")}
    for r in records:
        try:
            label = truth[str(r["qid"])][str(r["docid"])]
        except KeyError:
            raise FormatError(source, None, f"judged pair ({r['qid']}, {r['docid']}) has no label in the truth") from None
        grade = "null" if r["verdict"] is None else str(r["verdict"])
        out["1" if label > 0 else "0"][grade] += 1
    return out


def agreement(matrix: Mapping[str, Mapping[str, int]], keep: frozenset[int] = frozenset({0})) -> dict[str, Any]:
    """Precision, recall, specificity, accuracy and Cohen's kappa of "relevant" (verdict outside ``keep``)
    against the labels, over the pairs with a verdict; ``None`` where a measure has no denominator."""
    removed = [g for g in GRADES if g != "null" and int(g) not in keep]
    kept = [g for g in GRADES if g != "null" and int(g) in keep]
    tp = sum(matrix["1"][g] for g in removed)
    fn = sum(matrix["1"][g] for g in kept)
    fp = sum(matrix["0"][g] for g in removed)
    tn = sum(matrix["0"][g] for g in kept)
    n = tp + fn + fp + tn

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    kappa = None
    if n:
        observed = (tp + tn) / n
        expected = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / (n * n)
        kappa = (observed - expected) / (1 - expected) if expected < 1 else None
    return {
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "accuracy": ratio(tp + tn, n),
        "kappa": kappa,
        "null_verdicts": matrix["1"]["null"] + matrix["0"]["null"],
    }


COST_FIELDS = ("calls", "cached_samples", "unparsed_samples", "prompt_tokens", "prefilled_tokens", "generated_tokens", "seconds")


def job_cost(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summed cost of a judge's jobs (one, or a cascade's first and second), and its escalation."""
    cost: dict[str, Any] = {k: sum(s.get(k, 0) or 0 for s in summaries) for k in COST_FIELDS}
    cost["seconds"] = round(cost["seconds"], 3)
    cost["queries"] = summaries[0].get("queries", 0) if summaries else 0
    cost["samples"] = sum((s.get("candidates", 0) if s.get("mode") == "pointwise" else s.get("prompts", 0))
                          * s.get("samples_per_prompt", 0) for s in summaries)
    escalation = next((s["escalation"] for s in summaries if s.get("escalation")), None)
    if escalation is not None:
        cost["escalated_queries"] = escalation["escalated"]
        cost["escalation_rate"] = escalation["escalated"] / escalation["queries"] if escalation["queries"] else None
    return cost


def evaluate(
    verdict_paths: Sequence[str | os.PathLike],
    truth_path: str | os.PathLike,
    sample_info: Mapping[str, Any],
    summaries: Sequence[Mapping[str, Any]],
    keep: frozenset[int] = frozenset({0}),
    **identity: Any,
) -> dict[str, Any]:
    """The evaluation record of one judge on one dataset and language (see the module doc)."""
    records = list(read_verdicts(verdict_paths).values())
    truth = read_qrels(truth_path)
    wanted = {(q, d) for q, docs in truth.items() for d in docs}
    judged = {(str(r["qid"]), str(r["docid"])) for r in records}
    if wanted - judged:
        missing = sorted(wanted - judged)
        raise FormatError(verdict_paths[0], None, f"{len(missing)} sampled pairs have no verdict, e.g. {missing[:3]}")
    matrix = confusion(records, truth, str(truth_path))
    samples = [s for r in records for s in r.get("samples", [])]
    out: dict[str, Any] = {
        **identity,
        "keep": sorted(keep),
        "sample": dict(sample_info),
        "pairs": len(records),
        "relevant_pairs": sum(matrix["1"].values()),
        "confusion": matrix,
        **agreement(matrix, keep),
        "unparsed_sample_rate": sum(s.get("score") is None for s in samples) / len(samples) if samples else None,
        "cost": job_cost(summaries),
    }
    decided = Counter(str(r["decided_by"]) for r in records if "decided_by" in r)
    if decided:
        out["decided_by"] = dict(sorted(decided.items()))
    return out


# -------------------------------------------------------------------------------------------- estimate


def estimate(
    candidates: str | os.PathLike,
    train_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    template_path: str | os.PathLike,
    settings: JudgeSettings,
    tokenizer: str | None = None,
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
    price_input: float | None = None,
    price_output: float | None = None,
) -> dict[str, Any]:
    """What judging every query of ``train_path`` on ``candidates`` would send and cost (no call is made)."""
    train = read_train(train_path)
    run = read_run(candidates)
    tasks = build_tasks(settings, train, run, list(train))
    wanted = {hit.docid for t in tasks for _, hit in t.candidates}
    wanted.update(t.reference_docid for t in tasks if t.reference_docid is not None)
    texts = load_texts(corpus_path, wanted)
    if settings.mode == "pointwise":
        items = [p.item for p in pointwise_pairs(load_judge_template(template_path), settings, tasks, texts)]
    else:
        items = [w.item for w in listwise_windows(load_listwise_template(template_path), settings, tasks, texts)]
    counter = token_counter(tokenizer, chars_per_token)
    per_sample = len(settings.samples)
    prompt_tokens = sum(counter.count(it.prompt) for it in items) * per_sample
    calls = len(items) * per_sample
    output_tokens = calls * settings.max_new_tokens
    return {
        "mode": settings.mode,
        "queries": len(tasks),
        "candidates": sum(len(t.candidates) for t in tasks),
        "prompts": len(items),
        "calls": calls,
        "prompt_tokens": prompt_tokens,
        "output_tokens_max": output_tokens,
        "token_source": counter.source,
        "price_input_per_1m": price_input,
        "price_output_per_1m": price_output,
        "cost": price(prompt_tokens, output_tokens, price_input, price_output),
    }


# ---------------------------------------------------------------------------------------------- tables


def _sum(records: Sequence[Mapping[str, Any]], *path: str) -> float:
    total = 0.0
    for r in records:
        value: Any = r
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        total += value or 0
    return total


def _pct(value: float | None) -> str:
    return "n/a" if value is None else percent(value)


LABEL_ROWS: tuple[tuple[str, Any, bool], ...] = (
    ("Queries judged", lambda r: r["sample"].get("queries", 0), False),
    ("Queries left out (single positive)", lambda r: r["sample"].get("skipped_queries", 0), False),
    ("Pairs judged", lambda r: r["pairs"], False),
    ("Human-relevant pairs (%)", lambda r: r["relevant_pairs"] / r["pairs"] if r["pairs"] else None, True),
    ("Precision of relevant (%)", lambda r: r["precision"], True),
    ("Recall of relevant (%)", lambda r: r["recall"], True),
    ("Agreement on human 0: verdict 0 (%)", lambda r: r["specificity"], True),
    ("Cohen's kappa", lambda r: r["kappa"], False),
    *(
        (f"Human {label} -> verdict {grade} (%)", (lambda r, label=label, grade=grade: _share(r, label, grade)), True)
        for label in ("1", "0")
        for grade in GRADES
    ),
    ("Unparsed samples (%)", lambda r: r["unparsed_sample_rate"], True),
)


def _share(record: Mapping[str, Any], label: str, grade: str) -> float | None:
    row = record["confusion"][label]
    total = sum(row.values())
    return row[grade] / total if total else None


def _fmt(value: Any, is_fraction: bool, label: str) -> str:
    if value is None:
        return "n/a"
    if is_fraction:
        return percent(value)
    if label.startswith("Cohen"):
        return f"{value:.2f}"
    return count(value)


def labels_table(
    records: Mapping[tuple[str, str], Mapping[str, Any]], judges: Sequence[tuple[str, str]], languages: Sequence[str],
    title: str,
) -> Table:
    """Rows = statistics grouped by judge, columns ``Avg`` (mean over the languages that have the value)
    then each language. ``records[(judge, lang)]`` are :func:`evaluate` records."""
    rows = []
    for judge, label in judges:
        for name, get, is_fraction in LABEL_ROWS:
            values = [get(records[(judge, lang)]) for lang in languages]
            present = [v for v in values if v is not None]
            avg = sum(present) / len(present) if present else None
            rows.append(TableRow(name, tuple(_fmt(v, is_fraction, name) for v in [avg, *values]), group=label))
    return Table(title=title, columns=("Avg", *languages), group=True, rows=tuple(rows),
                 label_header="Statistic", group_header="Judge")


COST_COLUMNS = (
    "Queries", "Pairs", "Calls", "Calls / query", "Prompt tokens", "Prefilled tokens", "Generated tokens",
    "Wall s", "Escalated (%)", "Unparsed (%)", "Precision (%)", "Recall (%)",
)


def cost_row(records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """One judge on one dataset, summed over languages; precision and recall pooled over their pairs."""
    queries = _sum(records, "cost", "queries")
    calls = _sum(records, "cost", "calls")
    matrix = {label: {g: int(_sum(records, "confusion", label, g)) for g in GRADES} for label in ("1", "0")}
    keep = frozenset(records[0]["keep"]) if records else frozenset({0})
    pooled = agreement(matrix, keep)
    escalated = [r["cost"].get("escalated_queries") for r in records]
    esc = sum(e for e in escalated if e is not None) / queries if queries and None not in escalated else None
    samples = _sum(records, "cost", "samples")
    unparsed = _sum(records, "cost", "unparsed_samples") / samples if samples else None
    return (
        count(queries), count(_sum(records, "pairs")), count(calls),
        f"{calls / queries:.1f}" if queries else "n/a",
        count(_sum(records, "cost", "prompt_tokens")), count(_sum(records, "cost", "prefilled_tokens")),
        count(_sum(records, "cost", "generated_tokens")), f"{_sum(records, 'cost', 'seconds'):.1f}",
        _pct(esc), _pct(unparsed), _pct(pooled["precision"]), _pct(pooled["recall"]),
    )


DATASET_LABELS = {"labels": "Held-out labels", "planted": "Candidates vs. planted truth"}


def cost_table(
    records: Mapping[tuple[str, str, str], Mapping[str, Any]],
    datasets: Sequence[str],
    judges: Sequence[tuple[str, str]],
    languages: Sequence[str],
    title: str,
) -> Table:
    """Rows = judges grouped by dataset, columns :data:`COST_COLUMNS`, totals over ``languages``.
    ``records[(dataset, judge, lang)]`` are :func:`evaluate` records."""
    rows = []
    for dataset in datasets:
        for judge, label in judges:
            recs = [records[(dataset, judge, lang)] for lang in languages]
            rows.append(TableRow(label, cost_row(recs), group=DATASET_LABELS.get(dataset, dataset)))
    return Table(title=title, columns=COST_COLUMNS, group=True, rows=tuple(rows), label_header="Judge",
                 group_header="Dataset")


ESTIMATE_COLUMNS = ("Queries", "Calls", "Prompt tokens", "Output tokens (max)", "Input / 1M", "Output / 1M",
                    "Cost", "Tokens counted with")


def combine_estimates(parts: Sequence[tuple[Mapping[str, Any], float]]) -> dict[str, Any]:
    """A cascade's estimate: each part (a judge's estimate, the share of queries it sees) scaled and summed."""
    out: dict[str, Any] = {"queries": parts[0][0]["queries"]}
    for key in ("calls", "prompt_tokens", "output_tokens_max"):
        out[key] = round(sum(p[key] * share for p, share in parts))
    costs = [p["cost"] for p, _ in parts]
    out["cost"] = None if None in costs else sum(c * share for c, (_, share) in zip(costs, parts))
    out["token_source"] = "; ".join(dict.fromkeys(p["token_source"] for p, _ in parts))
    out["price_input_per_1m"] = out["price_output_per_1m"] = None
    return out


def estimate_table(rows: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], title: str) -> Table:
    """Rows = judges, each the sum of its per-language estimates."""
    out = []
    for label, recs in rows:
        costs = [r["cost"] for r in recs]
        pin = {r["price_input_per_1m"] for r in recs}
        pout = {r["price_output_per_1m"] for r in recs}
        out.append(TableRow(label, (
            count(_sum(recs, "queries")), count(_sum(recs, "calls")), count(_sum(recs, "prompt_tokens")),
            count(_sum(recs, "output_tokens_max")),
            "n/a" if None in pin else "/".join(f"{p:g}" for p in sorted(pin)),
            "n/a" if None in pout else "/".join(f"{p:g}" for p in sorted(pout)),
            "n/a (no price)" if None in costs else f"{sum(costs):,.2f}",
            "; ".join(dict.fromkeys(r["token_source"] for r in recs)),
        )))
    return Table(title=title, columns=ESTIMATE_COLUMNS, group=False, rows=tuple(out), label_header="Judge")


def write_tables(smk: Any) -> None:
    """Snakemake ``script:`` entry point (``scripts/judge_eval_table.py``). Params: ``languages`` and ``spec``:
    ``kind`` (``labels``, ``cost`` or ``estimate``), ``judges`` (``[{name, label, parts: [[judge, share],
    ...]}]``; parts only for ``estimate``), ``datasets`` (``cost``), ``title``, ``pattern`` (the path of one
    input with ``{dataset}``, ``{judge}`` and ``{lang}`` fields). Every file the pattern names must be an input."""
    from .tables import write_table

    logs = list(smk.log) if smk.log else []
    setup_logging(logs[0] if logs else None)
    spec = smk.params.spec
    languages = list(smk.params.languages)
    judges = list(spec["judges"])
    inputs = {os.path.normpath(str(p)) for p in smk.input}

    def load(**fields: str) -> dict[str, Any]:
        path = os.path.normpath(spec["pattern"].format(**fields))
        if path not in inputs:
            raise ValueError(f"{path} is not an input of the rule; declare it in input:")
        return read_json(path)

    kind, title = spec["kind"], spec["title"]
    if kind == "labels":
        recs = {(j["name"], lang): load(judge=j["name"], lang=lang) for j in judges for lang in languages}
        table = labels_table(recs, [(j["name"], j["label"]) for j in judges], languages, title)
    elif kind == "cost":
        datasets = list(spec["datasets"])
        recs = {
            (d, j["name"], lang): load(dataset=d, judge=j["name"], lang=lang)
            for d in datasets for j in judges for lang in languages
        }
        table = cost_table(recs, datasets, [(j["name"], j["label"]) for j in judges], languages, title)
    elif kind == "estimate":
        rows = []
        for j in judges:
            per_lang = [
                combine_estimates([(load(judge=part, lang=lang), share) for part, share in j["parts"]])
                if len(j["parts"]) > 1 else load(judge=j["parts"][0][0], lang=lang)
                for lang in languages
            ]
            rows.append((j["label"], per_lang))
        table = estimate_table(rows, title)
    else:
        raise ValueError(f"params.spec kind {kind!r}: choose one of labels, cost, estimate")
    write_table(table, [str(o) for o in smk.output])


# ------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m boostmdr.judge_eval", description="Judge evaluation and cost.")
    sub = p.add_subparsers(dest="command", required=True)

    h = sub.add_parser("holdout", help="a seeded sample of training queries, held out from judge fine-tuning")
    h.add_argument("--train", required=True)
    h.add_argument("--size", type=int, default=DEFAULT_HOLDOUT_QUERIES, help="queries per language")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--out", required=True, help="topics file (qid<TAB>query) of the held-out queries")

    s = sub.add_parser("sample", help="a judge-evaluation dataset: train view, candidates and truth")
    s.add_argument("--dataset", choices=DATASETS, required=True)
    s.add_argument("--train", required=True)
    s.add_argument("--holdout", required=True)
    s.add_argument("--seed", type=int, default=0, help="labels: reference choice and candidate order")
    s.add_argument("--single-positive", choices=SINGLE_POSITIVE, default=DEFAULT_SINGLE_POSITIVE)
    s.add_argument("--candidates", default=None, help="planted: the stage-1 fused run")
    s.add_argument("--truth", default=None, help="planted: the synthetic complete qrels (analysis only)")
    s.add_argument("--out-train", required=True)
    s.add_argument("--out-candidates", required=True)
    s.add_argument("--out-truth", required=True)
    s.add_argument("--out-info", required=True)

    e = sub.add_parser("evaluate", help="a judge's verdicts on a sample against its truth, with its cost")
    e.add_argument("--verdicts", nargs="+", required=True)
    e.add_argument("--truth", required=True)
    e.add_argument("--sample-info", required=True)
    e.add_argument("--summaries", nargs="+", required=True, help="the judge jobs' --summary files")
    e.add_argument("--keep", default="0", help="verdicts that mean 'not relevant' (the pool's keep; default 0)")
    e.add_argument("--dataset", required=True)
    e.add_argument("--judge", required=True)
    e.add_argument("--mode", required=True)
    e.add_argument("--lang", required=True)
    e.add_argument("--out", required=True)

    d = JudgeSettings()
    x = sub.add_parser("estimate", help="dry estimate of a judge's calls, tokens and price (calls nothing)")
    x.add_argument("--candidates", required=True)
    x.add_argument("--train", required=True)
    x.add_argument("--corpus", required=True)
    x.add_argument("--lang", required=True)
    x.add_argument("--judge", required=True)
    x.add_argument("--mode", choices=("pointwise", "listwise"), default=d.mode)
    x.add_argument("--prompt", required=True)
    x.add_argument("--reference", choices=("positive", "empty"), default=d.reference)
    x.add_argument("--samples", default=AUTHORS_SAMPLES)
    x.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    x.add_argument("--max-passage-words", type=int, default=0)
    x.add_argument("--window", type=int, default=d.window)
    x.add_argument("--seed", type=int, default=d.seed)
    x.add_argument("--tokenizer", default=None, help="local tokenizer/model directory (else --chars-per-token)")
    x.add_argument("--chars-per-token", type=float, default=DEFAULT_CHARS_PER_TOKEN)
    x.add_argument("--price-input", type=float, default=None, help="price per 1M prompt tokens")
    x.add_argument("--price-output", type=float, default=None, help="price per 1M output tokens")
    x.add_argument("--out", required=True)
    for sp in (h, s, e, x):
        sp.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    if args.command == "holdout":
        train = read_train(args.train)
        qids = holdout_queries(list(train), args.size, args.seed)
        write_topics(args.out, [(q, " ".join(train[q].query.split())) for q in qids])
        log.info("held out %d of %d training queries -> %s", len(qids), len(train), args.out)
    elif args.command == "sample":
        train = read_train(args.train)
        holdout = list(read_topics(args.holdout))
        unknown = [q for q in holdout if q not in train]
        if unknown:
            raise FormatError(args.holdout, None, f"{len(unknown)} held-out queries are not in {args.train}: {unknown[:3]}")
        if args.dataset == "labels":
            sample = label_sample(train, holdout, args.seed, args.single_positive)
        else:
            if not (args.candidates and args.truth):
                parser.error("sample --dataset planted needs --candidates (the fused run) and --truth")
            sample = planted_sample(train, holdout, read_run(args.candidates), read_qrels(args.truth))
        write_sample(sample, args.out_train, args.out_candidates, args.out_truth, args.out_info)
    elif args.command == "evaluate":
        record = evaluate(
            args.verdicts, args.truth, read_json(args.sample_info), [read_json(p) for p in args.summaries],
            parse_keep(args.keep), lang=args.lang, dataset=args.dataset, judge=args.judge, mode=args.mode,
        )
        write_json(args.out, record)
        log.info(
            "%s %s %s: %d pairs, precision %s, recall %s, %d calls",
            args.judge, args.dataset, args.lang, record["pairs"], record["precision"], record["recall"],
            record["cost"]["calls"],
        )
    else:
        settings = JudgeSettings(
            samples=tuple(parse_samples_spec(args.samples)),
            reference=args.reference,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            max_passage_words=args.max_passage_words or None,
            mode=args.mode,
            window=args.window,
        )
        record = estimate(
            args.candidates, args.train, args.corpus, args.prompt, settings, args.tokenizer, args.chars_per_token,
            args.price_input, args.price_output,
        )
        record.update(judge=args.judge, lang=args.lang)
        write_json(args.out, record)
        log.info(
            "%s %s: %d calls, %d prompt tokens, at most %d output tokens (%s): cost %s",
            args.judge, args.lang, record["calls"], record["prompt_tokens"], record["output_tokens_max"],
            record["token_source"], record["cost"],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
