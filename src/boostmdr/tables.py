"""Every table the workflow writes, built as a :class:`Table` and rendered as CSV, Markdown and LaTeX
(booktabs) by one set of renderers.

The builders are pure functions (dicts in, a :class:`Table` out); the ``write_*`` functions at the end are
the entry points of the rules' ``script:`` shims in ``scripts/``, which read the rule's inputs and write
its outputs atomically. The cost tables are built by :mod:`boostmdr.cost` and rendered here too.

Layouts:

* **languages** (:func:`language_table`): one row per system, columns ``Avg`` then one column per
  language in the given order; cells are one measure in percent with one decimal.
  ``Avg`` is the mean over the languages of the per-language aggregate (computed before rounding).
* **summary** (:func:`summary_table`): one row per variant, columns the language-averaged value of
  each measure (default ``Avg nDCG@10`` and ``Avg R@100``), for ablation tables.

* **statistics** (:func:`stats_table`): one row per statistic of a step (e.g. the stage-1 judge's
  elimination rate, or its precision against the synthetic benchmark's planted truth), columns ``Avg``
  then each language; percentages with one decimal, counts with thousands separators. A table may read
  several statistics files per language (Table 8: the final pools' and the stage-1 judge's); their records
  are merged, and two files giving one key different values is an error.
* **topics** (:func:`topic_table`, the paper's Table 13): one row per language and a ``Total`` row,
  columns the topic codes in the scheme's order and ``Total``; counts of training queries.
* **batches** (:func:`batch_table`): one row per system, columns what its batch manifest's statistics
  say (share of one-language batches, distinct topics per batch and the most the data allows, queries used
  per epoch, mean weight, each language's share of steps).

Rows are dicts ``{"label", "backbone", "variant"}`` (optionally ``"group"``, printed as the first
column, for tables that group systems by backbone), or ``{"label", "pending": "reason"}`` for a
system that is not built yet: it is printed with its reason instead of numbers.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MEASURE_LABELS = {"ndcg_cut_10": "nDCG@10", "recall_100": "R@100"}
SUMMARY_MEASURES = ("ndcg_cut_10", "recall_100")

Scores = Mapping[tuple[str, str], Mapping[str, Mapping[str, float]]]
"""``{(backbone, variant): {lang: {measure: value}}}``: the aggregates of the eval files."""


class TableError(ValueError):
    """A table cannot be built as specified; the message names the row, language or setting."""


@dataclass(frozen=True)
class RowSpec:
    label: str
    backbone: str | None = None
    variant: str | None = None
    group: str | None = None
    pending: str | None = None

    @classmethod
    def from_dict(cls, row: Mapping, index: int = 0) -> RowSpec:
        if not isinstance(row, Mapping):
            raise TableError(f"row {index}: expected a mapping, got {type(row).__name__}")
        unknown = set(row) - {"label", "backbone", "variant", "group", "pending"}
        if unknown:
            raise TableError(f"row {index}: unknown keys {sorted(unknown)}; "
                             f"allowed: label, backbone, variant, group, pending")
        label = row.get("label")
        if not isinstance(label, str) or not label:
            raise TableError(f"row {index}: needs a non-empty 'label'")
        spec = cls(label=label, backbone=row.get("backbone"), variant=row.get("variant"),
                   group=row.get("group"), pending=row.get("pending"))
        if spec.pending is None and not (spec.backbone and spec.variant):
            raise TableError(f"row {index} ({label!r}): needs 'backbone' and 'variant', or 'pending': reason")
        if spec.pending is not None and (not isinstance(spec.pending, str) or not spec.pending):
            raise TableError(f"row {index} ({label!r}): 'pending' must be a non-empty reason")
        return spec

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.backbone), str(self.variant))


@dataclass(frozen=True)
class TableRow:
    """One printed row: its label, its cells (``None`` while pending) or the pending reason, its group."""

    label: str
    cells: tuple[str, ...] | None
    pending: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Table:
    """A table independent of the output format: title, value columns, rows of formatted cells."""

    title: str
    columns: tuple[str, ...]
    """Value columns, after the label column (and the group column when ``group``)."""
    group: bool
    """Whether the first column is the rows' group."""
    rows: tuple[TableRow, ...]
    label_header: str = "System"
    """Header of the label column."""
    group_header: str = "Group"
    """Header of the group column (when ``group``)."""


def measure_label(measure: str) -> str:
    return MEASURE_LABELS.get(measure, measure)


def percent(value: float) -> str:
    """A fraction as percent with one decimal, half up (``0.4123`` -> ``41.2``, ``0.7505`` -> ``75.1``).

    Rounds the shortest decimal form of the percentage, as a reader would round the printed number;
    plain ``f"{x:.1f}"`` would print 75.0 for 75.05, whose binary value lies just below it.
    """
    if not math.isfinite(value):
        raise TableError(f"cannot print non-finite value {value}")
    rounded = Decimal(repr(100.0 * value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return str(abs(rounded) if rounded.is_zero() else rounded)


def _parse_rows(rows: Sequence[Mapping]) -> list[RowSpec]:
    if not rows:
        raise TableError("a table needs at least one row")
    return [RowSpec.from_dict(r, i) for i, r in enumerate(rows)]


def _value(scores: Scores, row: RowSpec, lang: str, measure: str) -> float:
    try:
        return float(scores[row.key][lang][measure])
    except KeyError:
        raise TableError(
            f"row {row.label!r}: no {measure} for {row.backbone}/{row.variant} in language {lang!r}"
        ) from None


def _mean_over_languages(scores: Scores, row: RowSpec, languages: Sequence[str], measure: str) -> float:
    return math.fsum(_value(scores, row, lang, measure) for lang in languages) / len(languages)


def language_table(rows: Sequence[Mapping], languages: Sequence[str], measure: str, scores: Scores,
                   title: str = "") -> Table:
    """Rows = systems, columns ``Avg`` then each language (percent, one decimal)."""
    if not languages:
        raise TableError("a table needs at least one language")
    specs = _parse_rows(rows)
    out = []
    for r in specs:
        if r.pending is not None:
            out.append(TableRow(r.label, None, r.pending, r.group))
            continue
        per_lang = [_value(scores, r, lang, measure) for lang in languages]
        avg = math.fsum(per_lang) / len(per_lang)
        out.append(TableRow(r.label, tuple(percent(v) for v in [avg, *per_lang]), None, r.group))
    return Table(title=title, columns=("Avg", *languages), group=any(r.group is not None for r in specs),
                 rows=tuple(out))


def summary_table(rows: Sequence[Mapping], languages: Sequence[str], scores: Scores, title: str = "",
                  measures: Sequence[str] = SUMMARY_MEASURES) -> Table:
    """Rows = variants, one column per measure: its mean over ``languages`` (percent, one decimal)."""
    if not languages:
        raise TableError("a table needs at least one language")
    if not measures:
        raise TableError("a summary table needs at least one measure")
    specs = _parse_rows(rows)
    out = []
    for r in specs:
        if r.pending is not None:
            out.append(TableRow(r.label, None, r.pending, r.group))
            continue
        cells = tuple(percent(_mean_over_languages(scores, r, languages, m)) for m in measures)
        out.append(TableRow(r.label, cells, None, r.group))
    return Table(title=title, columns=tuple(f"Avg {measure_label(m)}" for m in measures),
                 group=any(r.group is not None for r in specs), rows=tuple(out))


# ------------------------------------------------------------------------------------------ statistics

Statistic = tuple[str, Callable[[Mapping[str, Any]], Any], bool]
"""``(row label, value from a language's statistics record, whether the value is a fraction printed in %)``."""

STATS_TABLES: dict[str, tuple[str, tuple[Statistic, ...]]] = {
    "elimination": (
        "Elimination: share of judged candidates the LLM judge removed (paper Table 8, last row)",
        (
            ("Elimination (%)", lambda s: s["elimination_rate"], True),
            ("Judged candidates", lambda s: s["judged"], False),
            ("Removed", lambda s: s["removed"], False),
            ("No parsed verdict", lambda s: s["null_verdicts"], False),
        ),
    ),
    "judge_quality": (
        "Judge quality against the synthetic benchmark's planted false negatives (analysis only; never read by the method)",
        (
            ("Planted false negatives among candidates (%)", lambda s: s["truth"]["false_negative_rate_among_candidates"], True),
            ("Precision (%)", lambda s: s["truth"]["precision"], True),
            ("Recall (%)", lambda s: s["truth"]["recall"], True),
            ("Accuracy (%)", lambda s: s["truth"]["accuracy"], True),
        ),
    ),
    "table8": (
        "Table 8: hard negatives of the final pools from retrieval (stage 1) and from the LLM (stage 2); "
        "elimination: share of judged stage-1 candidates the LLM judge removed",
        (
            ("From Retrieval (%)", lambda s: s["pool"]["from_retrieval_share"], True),
            ("From LLM (%)", lambda s: s["pool"]["from_llm_share"], True),
            ("Elimination (%)", lambda s: s["elimination_rate"], True),
        ),
    ),
    "stage2": (
        "Stage 2: generation and top-up per language",
        (
            ("Queries below N", lambda s: s["pool"]["below_pool_size"], False),
            ("Usable generated queries", lambda s: s["generation"]["ok"], False),
            ("Failed generations", lambda s: s["generation"]["summary_failed"] + s["generation"]["query_failed"], False),
            ("Round trip: source positive in top k (%)", lambda s: s["roundtrip"]["round_trip_share"], True),
            ("Round trip: any positive in top k (%)", lambda s: s["roundtrip"]["any_positive_share"], True),
            ("New candidates considered", lambda s: s["pool"]["new_considered"], False),
            ("Removed by the judge (%)", lambda s: s["pool"]["new_removed_share"], True),
            ("Negatives from stage 2", lambda s: s["pool"]["from_stage2"], False),
            ("Queries short of N", lambda s: s["pool"]["queries_with_shortfall"], False),
            ("Missing negatives (all queries)", lambda s: s["pool"]["shortfall"], False),
        ),
    ),
    "generation_false_negatives": (
        "Planted false negatives among the negatives generation brought in, with and without the judge "
        "(synthetic benchmark; analysis only, never read by the method)",
        (
            ("Generated negatives, judged top-up", lambda s: s["false_negatives"]["stage2_judged"]["negatives"], False),
            ("  planted false negatives (%)", lambda s: s["false_negatives"]["stage2_judged"]["share"], True),
            ("Generated negatives, unjudged top-up", lambda s: s["false_negatives"]["stage2_unjudged"]["negatives"], False),
            ("  planted false negatives (%)", lambda s: s["false_negatives"]["stage2_unjudged"]["share"], True),
            ("Stage-1 negatives: planted false negatives (%)", lambda s: s["false_negatives"]["stage1"]["share"], True),
        ),
    ),
}
"""The statistics tables: name -> (title, rows)."""


def count(value: float) -> str:
    """A count with thousands separators; a mean of counts keeps one decimal."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def stats_table(
    rows: Sequence[Statistic], stats: Mapping[str, Mapping[str, Any]], languages: Sequence[str], title: str = ""
) -> Table:
    """Rows = statistics, columns ``Avg`` then each language. ``Avg`` is the mean over the languages where the
    value exists; a missing value (e.g. no precision without any removal) prints ``n/a``."""
    missing = [lang for lang in languages if lang not in stats]
    if missing:
        raise TableError(f"no statistics for language(s) {missing}; have {sorted(stats)}")
    out = []
    for label, get, is_fraction in rows:
        values = [get(stats[lang]) for lang in languages]
        present = [v for v in values if v is not None]
        avg = math.fsum(present) / len(present) if present else None
        fmt = percent if is_fraction else count
        out.append(TableRow(label, tuple("n/a" if v is None else fmt(v) for v in [avg, *values])))
    return Table(title=title, columns=("Avg", *languages), group=False, rows=tuple(out), label_header="Statistic")


# ------------------------------------------------------------------------------------- stage 3 tables


def topic_table(counts: Mapping[str, Mapping[str, int]], languages: Sequence[str], topics: Sequence[str],
                title: str = "") -> Table:
    """Rows = languages then ``Total``, columns = topic codes then ``Total`` (counts of training queries).

    A topic found in the counts but not in ``topics`` is an error: the scheme and the topic files disagree."""
    missing = [lang for lang in languages if lang not in counts]
    if missing:
        raise TableError(f"no topic counts for language(s) {missing}; have {sorted(counts)}")
    unknown = sorted({t for lang in languages for t in counts[lang] if t not in topics})
    if unknown:
        raise TableError(f"topic(s) {unknown} are not in the scheme's topics {list(topics)}")
    rows = []
    totals = [0] * len(topics)
    for lang in languages:
        values = [int(counts[lang].get(t, 0)) for t in topics]
        totals = [a + b for a, b in zip(totals, values)]
        rows.append(TableRow(lang, tuple(count(v) for v in [*values, sum(values)])))
    rows.append(TableRow("Total", tuple(count(v) for v in [*totals, sum(totals)])))
    return Table(title=title, columns=(*topics, "Total"), group=False, rows=tuple(rows), label_header="Lang")


def _fixed(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def batch_table(rows: Sequence[Mapping], stats: Mapping[str, Mapping[str, Any]], languages: Sequence[str],
                title: str = "") -> Table:
    """Rows = systems, columns = statistics of each row's batch manifest (``stats`` by row label)."""
    specs = _parse_rows(rows)
    columns = ("One-language batches (%)", "Distinct topics / batch", "Most the data allows",
               "Queries used / epoch (%)", "Mean weight", *(f"{lang} steps (%)" for lang in languages),
               "Mixed steps (%)")
    out = []
    for r in specs:
        if r.pending is not None:
            out.append(TableRow(r.label, None, r.pending, r.group))
            continue
        if r.label not in stats:
            raise TableError(f"row {r.label!r}: no batch statistics")
        s = stats[r.label]
        distinct, attainable = s.get("distinct_topics_per_batch"), s.get("attainable_topics_per_batch")
        share = s["language_step_share"]
        cells = (
            percent(s["one_language_batch_share"]),
            _fixed(distinct["mean"] if distinct else None),
            _fixed(attainable["mean"] if attainable else None),
            percent(s["queries_used_share"]),
            _fixed(s.get("mean_weight"), 3),
            *(percent(share.get(lang, 0.0)) for lang in languages),
            percent(share.get("mixed", 0.0)),
        )
        out.append(TableRow(r.label, cells, None, r.group))
    return Table(title=title, columns=columns, group=any(r.group is not None for r in specs), rows=tuple(out))


# ------------------------------------------------------------------------------------------ renderers


def to_csv(table: Table) -> str:
    """CSV: ``[group,]system,<columns>,note``; a pending row has empty value cells and its reason in ``note``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    lead = [table.group_header.lower()] if table.group else []
    w.writerow([*lead, table.label_header.lower(), *table.columns, "note"])
    for row in table.rows:
        lead = [row.group or ""] if table.group else []
        values = list(row.cells) if row.cells is not None else [""] * len(table.columns)
        w.writerow([*lead, row.label, *values, row.pending or ""])
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """GitHub Markdown; the group is printed on the first row of each run of equal groups."""
    head = ([table.group_header] if table.group else []) + [table.label_header, *table.columns]
    align = ([":--"] if table.group else []) + [":--"] + ["--:"] * len(table.columns)
    lines = []
    if table.title:
        lines += [f"**{_md_escape(table.title)}**", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(align) + "|")
    previous = object()
    for row in table.rows:
        lead = []
        if table.group:
            lead = [_md_escape(row.group or "") if row.group != previous else ""]
            previous = row.group
        if row.cells is not None:
            values = list(row.cells)
        else:
            values = [f"*{_md_escape(row.pending or '')}*"] + [""] * (len(table.columns) - 1)
        lines.append("| " + " | ".join([*lead, _md_escape(row.label), *values]) + " |")
    return "\n".join(lines) + "\n"


_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment; groups are separated by ``\\midrule``."""
    n_lead = 2 if table.group else 1
    spec = "l" * n_lead + "r" * len(table.columns)
    head = ([table.group_header] if table.group else []) + [table.label_header, *table.columns]
    lines = [r"\begin{table}[t]", r"\centering"]
    if table.title:
        lines.append(rf"\caption{{{tex_escape(table.title)}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(tex_escape(h) for h in head) + r" \\", r"\midrule"]
    previous = object()
    for i, row in enumerate(table.rows):
        lead = []
        if table.group:
            if row.group != previous and i > 0:
                lines.append(r"\midrule")
            lead = [tex_escape(row.group or "") if row.group != previous else ""]
            previous = row.group
        if row.cells is None:
            values = [rf"\multicolumn{{{len(table.columns)}}}{{c}}{{\emph{{{tex_escape(row.pending or '')}}}}}"]
        else:
            values = list(row.cells)
        lines.append(" & ".join([*lead, tex_escape(row.label), *values]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


RENDERERS = {".csv": to_csv, ".md": to_markdown, ".tex": to_latex}


# ------------------------------------------------------------------------------- Snakemake scripts


def _flat(files: Any) -> list[str]:
    out: list[str] = []
    for f in files:
        if isinstance(f, (list, tuple)):
            out += _flat(f)
        else:
            out.append(str(f))
    return out


def write_table(table: Table, outputs: Sequence[str]) -> None:
    """Render ``table`` into each output, in the format its suffix names (.csv, .md, .tex), atomically."""
    from boostmdr.formats import atomic_write

    for out in outputs:
        render = RENDERERS.get(Path(out).suffix)
        if render is None:
            raise TableError(f"output {out}: unknown table format; use one of {', '.join(RENDERERS)}")
        with atomic_write(out) as fh:
            fh.write(render(table))
        log.info("wrote %s", out)


DEFAULT_EVAL_PATH = "results/eval/{backbone}/{variant}/{lang}.json"
LAYOUTS = ("languages", "summary", "topics", "batches")


def write_results_table(smk: Any) -> None:
    """``scripts/make_table.py``: one results table from the eval files of its rows.

    Inputs: the eval JSONs of every non-pending row and language. Params: ``rows`` ({label, backbone,
    variant[, group]} or {label, pending[, group]}), ``languages``, ``metric``, ``title``, ``layout``
    (``languages`` or ``summary``), ``measures`` (summary columns), ``eval_path`` (pattern of an eval file;
    every file it names must be an input of the rule, so the DAG and the table cannot disagree).

    Layout ``topics`` reads the topic files (every input; params ``topics``: the topic codes in column
    order) and layout ``batches`` the batch statistics (params ``row_files``: row label -> statistics file,
    each an input).
    """
    from boostmdr.formats import read_eval
    from boostmdr.utils import setup_logging

    logs = _flat(getattr(smk, "log", []) or [])
    setup_logging(logs[0] if logs else None)
    params = smk.params
    rows = getattr(params, "rows")
    languages = list(getattr(params, "languages"))
    title = getattr(params, "title", "") or ""
    layout = getattr(params, "layout", "languages") or "languages"
    if layout not in LAYOUTS:
        raise TableError(f"params.layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    pattern = getattr(params, "eval_path", None) or DEFAULT_EVAL_PATH

    inputs = {os.path.normpath(p) for p in _flat(smk.input)}
    if layout == "topics":
        write_table(_topic_table_from_files(sorted(inputs), languages, list(getattr(params, "topics")), title),
                    _flat(smk.output))
        return
    if layout == "batches":
        from boostmdr.formats import read_json

        row_files = dict(getattr(params, "row_files"))
        for label, path in row_files.items():
            if os.path.normpath(path) not in inputs:
                raise TableError(f"row {label!r}: {path} is not an input of the rule")
        stats = {label: read_json(path) for label, path in row_files.items()}
        write_table(batch_table(rows, stats, languages, title=title), _flat(smk.output))
        return
    scores: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for i, raw in enumerate(rows):
        row = RowSpec.from_dict(raw, i)
        if row.pending is not None:
            log.info("row %r pending: %s", row.label, row.pending)
            continue
        for lang in languages:
            path = os.path.normpath(pattern.format(backbone=row.backbone, variant=row.variant, lang=lang))
            if path not in inputs:
                raise TableError(
                    f"row {row.label!r}, language {lang}: {path} is not an input of the rule; declare it in "
                    f"input: (or set params.eval_path to the pattern the inputs follow)"
                )
            scores.setdefault(row.key, {})[lang] = read_eval(path).aggregate

    if layout == "summary":
        measures = list(getattr(params, "measures", None) or SUMMARY_MEASURES)
        table = summary_table(rows, languages, scores, title=title, measures=measures)
    else:
        table = language_table(rows, languages, getattr(params, "metric"), scores, title=title)
    write_table(table, _flat(smk.output))


def _topic_table_from_files(paths: Sequence[str], languages: Sequence[str], topics: Sequence[str], title: str) -> Table:
    from collections import Counter

    from boostmdr.formats import read_topic_labels

    counts: dict[str, Counter] = {}
    for path in paths:
        for rec in read_topic_labels(path):
            counts.setdefault(rec.lang, Counter())[rec.topic] += 1
    return topic_table(counts, languages, topics, title=title)
def merge_stats(records: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-language statistics from ``(path, record)`` pairs, each record with its ``lang``; records of one
    language are merged key by key, and a key two files give different values names both files."""
    stats: dict[str, dict[str, Any]] = {}
    where: dict[tuple[str, str], str] = {}
    for path, record in records:
        if "lang" not in record:
            raise TableError(f"{path}: a statistics record needs its 'lang'")
        merged = stats.setdefault(record["lang"], {})
        for key, value in record.items():
            if key in merged and merged[key] != value:
                raise TableError(f"{path} and {where[(record['lang'], key)]} disagree on {key!r} for {record['lang']}")
            merged[key] = value
            where.setdefault((record["lang"], key), str(path))
    return stats


def write_stats_table(smk: Any) -> None:
    """``scripts/stats_table.py``: a statistics table (params ``kind``, a key of :data:`STATS_TABLES`;
    ``languages``; ``subtitle``) from per-language JSON statistics files (each with its ``lang``)."""
    from boostmdr.formats import read_json
    from boostmdr.utils import setup_logging

    setup_logging(_flat(smk.log)[0] if smk.log else None)
    kind = smk.params.kind
    if kind not in STATS_TABLES:
        raise TableError(f"params.kind {kind!r}: choose one of {', '.join(STATS_TABLES)}")
    title, rows = STATS_TABLES[kind]
    subtitle = getattr(smk.params, "subtitle", "")
    stats = merge_stats([(path, read_json(path)) for path in _flat(smk.input)])
    table = stats_table(rows, stats, list(smk.params.languages), f"{title} ({subtitle})" if subtitle else title)
    write_table(table, _flat(smk.output))
