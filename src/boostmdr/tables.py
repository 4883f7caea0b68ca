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

A language table can also average over subsets of the languages (``averages``: e.g. ``Avg`` over all,
then the low-resource languages apart) and stack several measures (one block of rows per measure).

**The paper's marks** (Tables 1 and 14), computed here and printed by every renderer but CSV:

* ``†`` (:func:`significance_tests`): a two-sided paired t-test over queries
  (:func:`boostmdr.evaluate.paired_ttest`, ``scipy.stats.ttest_rel``) of the row's per-query values against
  those of the same backbone's row of the comparison variant (``zeroshot`` in Tables 1 and 14), read from
  both eval files, which hold every query's value (a query missing from a run counts 0, trec_eval ``-c``).
  A language cell pairs that language's queries. An average cell (``Avg``, or a subset's average) pairs
  every query of its languages, pooled: one pair per query, so a language weighs by its number of queries
  there, while the printed average weighs every language equally. The cell gets ``†`` when p < alpha
  (0.05) and the improvement is positive both in the test (mean per-query difference) and in the printed
  cell (macro average), i.e. a significant *improvement*, as the paper marks. The CSV carries every
  p-value (``p <column>``) and the compared row.
* best in **bold**, second best underlined (:func:`highlight`), per column over the rows with values (per
  group of rows when the table groups them, as the paper's Tables 15 and 16 do per backbone), compared on
  the printed one-decimal values: rows that print the same number get the same mark, and the second best
  is the next lower printed value (so two tied best cells are both bold and the next value is underlined).
  Columns with fewer than two rows get no mark.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boostmdr.evaluate import PairedTTest

log = logging.getLogger(__name__)

MEASURE_LABELS = {"ndcg_cut_10": "nDCG@10", "recall_100": "R@100", "mrr_cut_10": "MRR@10"}
SUMMARY_MEASURES = ("ndcg_cut_10", "recall_100")

Scores = Mapping[tuple[str, str], Mapping[str, Mapping[str, float]]]
"""``{(backbone, variant): {lang: {measure: value}}}``: the aggregates of the eval files."""


class TableError(ValueError):
    """A table cannot be built as specified; the message names the row, language or setting."""


BEST, SECOND, SIGNIFICANT = "best", "second", "significant"
"""Cell marks: best (bold), second best (underlined), significant improvement (dagger)."""
HIGHLIGHTS = ("none", "best", "best_and_second")
"""How a table marks its best cells: not at all, the best in bold, or also the second best underlined."""
DEFAULT_HIGHLIGHT = "none"
DEFAULT_ALPHA = 0.05
"""The significance level of the daggers (the paper's p < 0.05)."""
DAGGER = "\u2020"


@dataclass(frozen=True)
class RowSpec:
    label: str
    backbone: str | None = None
    variant: str | None = None
    group: str | None = None
    pending: str | None = None
    x: float | None = None
    """The row's position on a figure's horizontal axis (e.g. the pool size N), for tables drawn as figures."""

    @classmethod
    def from_dict(cls, row: Mapping, index: int = 0) -> RowSpec:
        if not isinstance(row, Mapping):
            raise TableError(f"row {index}: expected a mapping, got {type(row).__name__}")
        unknown = set(row) - {"label", "backbone", "variant", "group", "pending", "x"}
        if unknown:
            raise TableError(f"row {index}: unknown keys {sorted(unknown)}; "
                             f"allowed: label, backbone, variant, group, pending, x")
        label = row.get("label")
        if not isinstance(label, str) or not label:
            raise TableError(f"row {index}: needs a non-empty 'label'")
        spec = cls(label=label, backbone=row.get("backbone"), variant=row.get("variant"),
                   group=row.get("group"), pending=row.get("pending"), x=row.get("x"))
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
    """One printed row: its label, its cells (``None`` while pending) or the pending reason, its group, the
    marks of each cell (a set of :data:`BEST`, :data:`SECOND`, :data:`SIGNIFICANT`; empty when unmarked), the
    CSV-only values of the table's ``extra_columns``, and whether the label is printed in bold (a total)."""

    label: str
    cells: tuple[str, ...] | None
    pending: str | None = None
    group: str | None = None
    marks: tuple[frozenset[str], ...] | None = None
    extra: tuple[str, ...] | None = None
    strong: bool = False

    def mark(self, column: int) -> frozenset[str]:
        return self.marks[column] if self.marks is not None else frozenset()


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
    extra_columns: tuple[str, ...] = ()
    """Columns only the CSV holds (e.g. the p-values of the significance tests), before ``note``."""
    notes: tuple[str, ...] = ()
    """Lines printed under the table (what the marks mean); not in the CSV."""


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


Averages = Sequence[tuple[str, Sequence[str]]]
"""Averaged columns: ``(column label, languages it averages)``, printed before the language columns."""


def averaged_columns(languages: Sequence[str], averages: Averages | None) -> list[tuple[str, list[str]]]:
    if averages is None:
        return [("Avg", list(languages))]
    out = []
    for label, langs in averages:
        unknown = [lang for lang in langs if lang not in languages]
        if not langs or unknown:
            raise TableError(f"averaged column {label!r}: languages {list(langs)} must be a non-empty subset of "
                             f"the table's languages {list(languages)}")
        out.append((str(label), list(langs)))
    return out


def language_table(rows: Sequence[Mapping], languages: Sequence[str], measure: str, scores: Scores,
                   title: str = "", averages: Averages | None = None,
                   tests: Mapping[tuple[str, str], Mapping[str, CellTest]] | None = None,
                   alpha: float = DEFAULT_ALPHA, highlight_mode: str = DEFAULT_HIGHLIGHT,
                   against: str | None = None) -> Table:
    """Rows = systems, columns the averages (default ``Avg`` over every language) then each language
    (percent, one decimal). ``tests`` (from :func:`significance_tests` against the variant ``against``) adds
    the daggers and the CSV's p-value columns (also when no row is built to test yet); ``highlight_mode``
    (one of :data:`HIGHLIGHTS`) the bold and underlined cells."""
    if not languages:
        raise TableError("a table needs at least one language")
    avgs = averaged_columns(languages, averages)
    columns = (*[label for label, _ in avgs], *languages)
    specs = _parse_rows(rows)
    out = []
    for r in specs:
        if r.pending is not None:
            out.append(TableRow(r.label, None, r.pending, r.group))
            continue
        per_lang = {lang: _value(scores, r, lang, measure) for lang in languages}
        values = [math.fsum(per_lang[lang] for lang in langs) / len(langs) for _, langs in avgs]
        values += [per_lang[lang] for lang in languages]
        marks, extra = None, None
        if tests is not None:
            row_tests = tests.get(r.key)
            extra = ("", *[""] * len(columns))
            if row_tests is not None:
                base = _baseline_key(r, row_tests)
                base_values = [math.fsum(_value(scores, base, lang, measure) for lang in langs) / len(langs)
                               for _, langs in avgs] + [_value(scores, base, lang, measure) for lang in languages]
                marks = tuple(
                    frozenset({SIGNIFICANT}) if _improves(row_tests.get(col), value - base_value, alpha)
                    else frozenset()
                    for col, value, base_value in zip(columns, values, base_values)
                )
                extra = (f"{base.backbone}/{base.variant}",
                         *[_p_value(row_tests.get(col)) for col in columns])
        out.append(TableRow(r.label, tuple(percent(v) for v in values), None, r.group, marks, extra))
    table = Table(title=title, columns=columns, group=any(r.group is not None for r in specs), rows=tuple(out))
    notes = []
    if tests is not None:
        table = replace(table, extra_columns=("compared with", *[f"p {c}" for c in columns]))
        notes.append(f"{DAGGER}: significant improvement over the compared row (the same backbone's "
                     f"{against or _compared_variants(tests)} row), two-sided paired t-test over queries, "
                     f"p < {alpha:g}.")
    table = highlight(table, highlight_mode)
    notes += highlight_notes(highlight_mode, table.group)
    return replace(table, notes=tuple(notes))


def highlight_notes(mode: str, grouped: bool) -> list[str]:
    """The line under a table saying what its bold and underlined cells mean."""
    within = " within each group" if grouped else ""
    if mode == "best":
        return [f"Bold: the best value of each column{within}."]
    if mode == "best_and_second":
        return [f"Bold: the best value of each column{within}; underlined: the second best."]
    return []


def _baseline_key(row: RowSpec, row_tests: Mapping[str, CellTest]) -> RowSpec:
    variant = next(iter(row_tests.values())).against
    return RowSpec(label=f"{row.backbone}/{variant}", backbone=row.backbone, variant=variant)


def _compared_variants(tests: Mapping[tuple[str, str], Mapping[str, CellTest]]) -> str:
    names = sorted({t.against for row in tests.values() for t in row.values()})
    return " / ".join(names) if names else "baseline"


def _improves(test: CellTest | None, cell_difference: float, alpha: float) -> bool:
    return test is not None and test.test.p < alpha and test.test.difference > 0 and cell_difference > 0


def _p_value(test: CellTest | None) -> str:
    return "" if test is None else f"{test.test.p:.4g}"


@dataclass(frozen=True)
class CellTest:
    """The test behind one cell's dagger: against which variant, and the test (its p and mean difference)."""

    against: str
    test: PairedTTest


def _pooled(evals: Mapping[str, Any], langs: Sequence[str]) -> Any:
    """One evaluation of the queries of several languages (query ids prefixed with the language)."""
    from boostmdr.formats import EvalResult

    per_query = {f"{lang}/{qid}": values for lang in langs for qid, values in evals[lang].per_query.items()}
    first = evals[langs[0]]
    aggregate = {m: math.fsum(v[m] for v in per_query.values()) / len(per_query) for m in first.aggregate}
    return EvalResult(run=f"{first.run} (+{len(langs) - 1} languages)", qrels=first.qrels,
                      num_queries=len(per_query), aggregate=aggregate, per_query=per_query)


def significance_tests(rows: Sequence[Mapping], languages: Sequence[str], measure: str,
                       evals: Mapping[tuple[str, str], Mapping[str, Any]], against: str,
                       averages: Averages | None = None) -> dict[tuple[str, str], dict[str, CellTest]]:
    """Paired two-sided t-tests of every built row whose variant is not ``against`` against the same
    backbone's ``against`` row: ``{(backbone, variant): {column: test}}`` for the averaged columns (queries
    of their languages pooled) and each language. ``evals`` holds the eval records
    (:class:`boostmdr.formats.EvalResult`) of the rows and of their baselines, per language."""
    from boostmdr.evaluate import paired_ttest

    avgs = averaged_columns(languages, averages)
    out: dict[tuple[str, str], dict[str, CellTest]] = {}
    for r in _parse_rows(rows):
        if r.pending is not None or r.variant == against:
            continue
        base = (str(r.backbone), against)
        for key in (r.key, base):
            missing = [lang for lang in languages if lang not in evals.get(key, {})]
            if missing:
                raise TableError(f"row {r.label!r}: no evaluation of {key[0]}/{key[1]} for {missing} to test "
                                 f"against (significance against {against!r} compares with the same backbone)")
        mine, theirs = evals[r.key], evals[base]
        tests = {label: CellTest(against, paired_ttest(_pooled(theirs, langs), _pooled(mine, langs), measure))
                 for label, langs in avgs}
        tests.update({lang: CellTest(against, paired_ttest(theirs[lang], mine[lang], measure))
                      for lang in languages})
        out[r.key] = tests
    return out


def _printed(cell: str) -> Decimal | None:
    try:
        return Decimal(cell.replace(",", ""))
    except ArithmeticError:
        return None


def highlight(table: Table, mode: str) -> Table:
    """Mark the best cell of every column in bold and, with ``best_and_second``, the second best underlined,
    per group of rows when the table has groups; compared on the printed values (ties share a mark)."""
    if mode not in HIGHLIGHTS:
        raise TableError(f"highlight {mode!r}: choose one of {', '.join(HIGHLIGHTS)}")
    if mode == "none":
        return table
    marks = {i: [set(row.mark(c)) for c in range(len(table.columns))]
             for i, row in enumerate(table.rows) if row.cells is not None}
    blocks: dict[Any, list[int]] = {}
    for i in marks:
        blocks.setdefault(table.rows[i].group if table.group else None, []).append(i)
    for members in blocks.values():
        for c in range(len(table.columns)):
            values = {i: _printed(table.rows[i].cells[c]) for i in members}
            values = {i: v for i, v in values.items() if v is not None}
            if len(values) < 2:
                continue
            ranked = sorted(set(values.values()), reverse=True)
            for i, v in values.items():
                if v == ranked[0]:
                    marks[i][c].add(BEST)
                elif mode == "best_and_second" and len(ranked) > 1 and v == ranked[1]:
                    marks[i][c].add(SECOND)
    rows = tuple(replace(row, marks=tuple(frozenset(m) for m in marks[i])) if i in marks else row
                 for i, row in enumerate(table.rows))
    return replace(table, rows=rows)


def stack_measures(tables: Sequence[Table], labels: Sequence[str], header: str = "Measure") -> Table:
    """One table of several measures' tables with the same columns: each measure's rows as one group."""
    if any(t.group for t in tables):
        raise TableError("a table of several measures groups its rows by measure; its rows cannot have groups")
    first = tables[0]
    rows = tuple(replace(row, group=label) for t, label in zip(tables, labels) for row in t.rows)
    notes = tuple(dict.fromkeys(n.replace(" of each column.", " of each column within each measure.")
                                .replace(" of each column;", " of each column within each measure;")
                                for t in tables for n in t.notes))
    return replace(first, group=True, group_header=header, rows=rows, notes=notes)


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
    """CSV: ``[group,]system,<columns>,[<extra columns>,]note``; a pending row has empty value cells and its
    reason in ``note``. Values are printed without marks; the p-values behind the daggers are extra columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    lead = [table.group_header.lower()] if table.group else []
    w.writerow([*lead, table.label_header.lower(), *table.columns, *table.extra_columns, "note"])
    for row in table.rows:
        lead = [row.group or ""] if table.group else []
        values = list(row.cells) if row.cells is not None else [""] * len(table.columns)
        extra = list(row.extra) if row.extra is not None else [""] * len(table.extra_columns)
        w.writerow([*lead, row.label, *values, *extra, row.pending or ""])
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _marked(cell: str, marks: frozenset[str], bold: str, underline: str, dagger: str) -> str:
    """A cell with its marks, in one format: ``bold``/``underline`` are format strings, ``dagger`` a suffix."""
    if BEST in marks:
        cell = bold.format(cell)
    elif SECOND in marks:
        cell = underline.format(cell)
    return cell + (dagger if SIGNIFICANT in marks else "")


def to_markdown(table: Table) -> str:
    """GitHub Markdown; the group is printed on the first row of each run of equal groups. Best cells in
    ``**bold**``, second best ``<u>underlined</u>``, significant improvements followed by a dagger."""
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
            values = [_marked(c, row.mark(i), "**{}**", "<u>{}</u>", DAGGER) for i, c in enumerate(row.cells)]
        else:
            values = [f"*{_md_escape(row.pending or '')}*"] + [""] * (len(table.columns) - 1)
        label = f"**{_md_escape(row.label)}**" if row.strong else _md_escape(row.label)
        lines.append("| " + " | ".join([*lead, label, *values]) + " |")
    if table.notes:
        lines += [""] + [_md_escape(n) for n in table.notes]
    return "\n".join(lines) + "\n"


_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 DAGGER: r"$^\dagger$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment; groups are separated by ``\\midrule``; best cells ``\\textbf``,
    second best ``\\underline``, significant improvements ``$^\\dagger$``; notes below the tabular."""
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
            values = [_marked(c, row.mark(j), r"\textbf{{{}}}", r"\underline{{{}}}", r"$^\dagger$")
                      for j, c in enumerate(row.cells)]
        label = rf"\textbf{{{tex_escape(row.label)}}}" if row.strong else tex_escape(row.label)
        lines.append(" & ".join([*lead, label, *values]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines += [r"\par\smallskip", r"\footnotesize " + r" \\ ".join(tex_escape(n) for n in table.notes)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em; color: #111; }
table.boostmdr { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
table.boostmdr caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.4em; }
table.boostmdr th, table.boostmdr td { padding: 0.2em 0.7em; white-space: nowrap; }
table.boostmdr thead th { border-top: 2px solid #111; border-bottom: 1px solid #111; }
table.boostmdr tbody tr:last-child td { border-bottom: 2px solid #111; }
table.boostmdr tr.group-start td { border-top: 1px solid #999; }
table.boostmdr .num { text-align: right; }
table.boostmdr .pending { color: #666; font-style: italic; white-space: normal; }
p.note { font-size: 0.9em; color: #333; margin: 0.2em 0; }
""".strip()


def html_table(table: Table) -> str:
    """The table as one HTML ``<table class="boostmdr">`` element (a fragment): the title as its caption,
    best cells in ``<b>``, second best in ``<u>``, significant improvements with a superscript dagger, a
    pending row's reason across its value cells; the notes follow as paragraphs."""
    esc = html.escape
    head = ([table.group_header] if table.group else []) + [table.label_header]
    out = ['<table class="boostmdr">']
    if table.title:
        out.append(f"<caption>{esc(table.title)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
               + "".join(f'<th scope="col" class="num">{esc(c)}</th>' for c in table.columns) + "</tr></thead>")
    out.append("<tbody>")
    previous = object()
    for i, row in enumerate(table.rows):
        cells = []
        starts_group = False
        if table.group:
            starts_group = row.group != previous and i > 0
            cells.append(f"<td>{esc(row.group or '') if row.group != previous else ''}</td>")
            previous = row.group
        label = f"<b>{esc(row.label)}</b>" if row.strong else esc(row.label)
        cells.append(f'<th scope="row" style="text-align:left;font-weight:normal">{label}</th>')
        if row.cells is None:
            cells.append(f'<td class="pending" colspan="{len(table.columns)}">{esc(row.pending or "")}</td>')
        else:
            sup = f"<sup>{DAGGER}</sup>"
            cells += [f'<td class="num">{_marked(esc(c), row.mark(j), "<b>{}</b>", "<u>{}</u>", sup)}</td>'
                      for j, c in enumerate(row.cells)]
        tr = '<tr class="group-start">' if starts_group else "<tr>"
        out.append(tr + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out += [f'<p class="note">{esc(n)}</p>' for n in table.notes]
    return "\n".join(out)


def html_page(title: str, body: Sequence[str]) -> str:
    """A complete, self-contained HTML page (inline style, no script, no external resource) around HTML
    fragments: what the Snakemake report shows inline for a ``text/html`` result."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{HTML_STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
    ]) + "\n"


def to_html(table: Table) -> str:
    """The table as a complete HTML page (:func:`html_page` around :func:`html_table`)."""
    return html_page(table.title or "table", [html_table(table)])


RENDERERS = {".csv": to_csv, ".md": to_markdown, ".tex": to_latex, ".html": to_html}


# ------------------------------------------------------------------------------- Snakemake scripts


def flat_files(files: Any) -> list[str]:
    out: list[str] = []
    for f in files:
        if isinstance(f, (list, tuple)):
            out += flat_files(f)
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


def measure_list(metric: Any) -> list[str]:
    measures = [metric] if isinstance(metric, str) else list(metric or [])
    if not measures or not all(isinstance(m, str) and m for m in measures):
        raise TableError(f"params.metric {metric!r}: give a measure name (e.g. ndcg_cut_10) or a list of them")
    return measures


def read_row_evals(rows: Sequence[Mapping], languages: Sequence[str], inputs: Sequence[str],
                   pattern: str = DEFAULT_EVAL_PATH, against: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The eval records of every built row (and, with ``against``, of the row each is tested against), per
    language: ``{(backbone, variant): {lang: EvalResult}}``. Every file must be one of ``inputs`` (the rule's
    declared inputs), so the DAG and the table cannot disagree."""
    from boostmdr.formats import read_eval

    declared = {os.path.normpath(p) for p in inputs}
    evals: dict[tuple[str, str], dict[str, Any]] = {}

    def load(backbone: str, variant: str, label: str) -> None:
        for lang in languages:
            path = os.path.normpath(pattern.format(backbone=backbone, variant=variant, lang=lang))
            if path not in declared:
                raise TableError(
                    f"row {label!r}, language {lang}: {path} is not an input of the rule; declare it in "
                    f"input: (or set params.eval_path to the pattern the inputs follow)"
                )
            evals.setdefault((backbone, variant), {})[lang] = read_eval(path)

    for i, raw in enumerate(rows):
        row = RowSpec.from_dict(raw, i)
        if row.pending is not None:
            log.info("row %r pending: %s", row.label, row.pending)
            continue
        load(str(row.backbone), str(row.variant), row.label)
        if against and row.variant != against:
            load(str(row.backbone), against, f"{row.label} (significance baseline)")
    return evals


def write_results_table(smk: Any) -> None:
    """``scripts/make_table.py``: one results table from the eval files of its rows.

    Inputs: the eval JSONs of every non-pending row and language (and, with ``significance``, of every
    tested row's baseline). Params: ``rows`` ({label, backbone, variant[, group]} or {label, pending[,
    group]}), ``languages``, ``metric`` (a measure, or a list of measures stacked in blocks of rows),
    ``title``, ``layout`` (``languages`` or ``summary``), ``measures`` (summary columns), ``averages``
    (``[[label, [languages]], ...]``, default ``Avg`` over all), ``significance`` ({against: variant,
    alpha: 0.05} or empty), ``highlight`` (one of :data:`HIGHLIGHTS`), ``eval_path`` (pattern of an eval file;
    every file it names must be an input of the rule, so the DAG and the table cannot disagree).

    Layout ``topics`` reads the topic files (every input; params ``topics``: the topic codes in column
    order) and layout ``batches`` the batch statistics (params ``row_files``: row label -> statistics file,
    each an input).
    """
    from boostmdr.utils import setup_logging

    logs = flat_files(getattr(smk, "log", []) or [])
    setup_logging(logs[0] if logs else None)
    params = smk.params
    rows = getattr(params, "rows")
    languages = list(getattr(params, "languages"))
    title = getattr(params, "title", "") or ""
    layout = getattr(params, "layout", "languages") or "languages"
    if layout not in LAYOUTS:
        raise TableError(f"params.layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    pattern = getattr(params, "eval_path", None) or DEFAULT_EVAL_PATH
    significance = dict(getattr(params, "significance", None) or {})
    unknown = set(significance) - {"against", "alpha"}
    if unknown or (significance and not significance.get("against")):
        raise TableError(f"params.significance {significance!r}: give {{against: <variant>, alpha: 0.05}}")
    highlight_mode = getattr(params, "highlight", None) or DEFAULT_HIGHLIGHT
    averages = getattr(params, "averages", None) or None

    inputs = {os.path.normpath(p) for p in flat_files(smk.input)}
    if layout == "topics":
        write_table(_topic_table_from_files(sorted(inputs), languages, list(getattr(params, "topics")), title),
                    flat_files(smk.output))
        return
    if layout == "batches":
        from boostmdr.formats import read_json

        row_files = dict(getattr(params, "row_files"))
        for label, path in row_files.items():
            if os.path.normpath(path) not in inputs:
                raise TableError(f"row {label!r}: {path} is not an input of the rule")
        stats = {label: read_json(path) for label, path in row_files.items()}
        write_table(batch_table(rows, stats, languages, title=title), flat_files(smk.output))
        return
    evals = read_row_evals(rows, languages, flat_files(smk.input), pattern, significance.get("against"))
    scores = {key: {lang: ev.aggregate for lang, ev in per_lang.items()} for key, per_lang in evals.items()}

    if layout == "summary":
        measures = list(getattr(params, "measures", None) or SUMMARY_MEASURES)
        table = summary_table(rows, languages, scores, title=title, measures=measures)
    else:
        measures = measure_list(getattr(params, "metric"))
        alpha = float(significance.get("alpha", DEFAULT_ALPHA))
        parts = []
        for measure in measures:
            tests = (significance_tests(rows, languages, measure, evals, significance["against"], averages)
                     if significance else None)
            parts.append(language_table(rows, languages, measure, scores, title=title, averages=averages,
                                        tests=tests, alpha=alpha, highlight_mode=highlight_mode,
                                        against=significance.get("against")))
        table = parts[0] if len(parts) == 1 else stack_measures(parts, [measure_label(m) for m in measures])
    write_table(table, flat_files(smk.output))


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

    setup_logging(flat_files(smk.log)[0] if smk.log else None)
    kind = smk.params.kind
    if kind not in STATS_TABLES:
        raise TableError(f"params.kind {kind!r}: choose one of {', '.join(STATS_TABLES)}")
    title, rows = STATS_TABLES[kind]
    subtitle = getattr(smk.params, "subtitle", "")
    stats = merge_stats([(path, read_json(path)) for path in flat_files(smk.input)])
    table = stats_table(rows, stats, list(smk.params.languages), f"{title} ({subtitle})" if subtitle else title)
    write_table(table, flat_files(smk.output))
