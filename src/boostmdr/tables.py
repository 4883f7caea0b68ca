"""Results tables (paper layout) built from evaluation records: CSV, Markdown and LaTeX (booktabs).

Pure functions: dicts in, strings out. ``scripts/make_table.py`` reads the eval files and writes the
outputs; nothing here touches the file system.

Two layouts:

* **languages** (:func:`language_table`): one row per system, columns ``Avg`` then one column per
  language in the given order; cells are one measure in percent with one decimal.
  ``Avg`` is the mean over the languages of the per-language aggregate (computed before rounding).
* **summary** (:func:`summary_table`): one row per variant, columns the language-averaged value of
  each measure (default ``Avg nDCG@10`` and ``Avg R@100``), for ablation tables.

Rows are dicts ``{"label", "backbone", "variant"}`` (optionally ``"group"``, printed as the first
column, for tables that group systems by backbone), or ``{"label", "pending": "reason"}`` for a
system that is not built yet: it is printed with its reason instead of numbers.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import ROUND_HALF_UP, Decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


# ------------------------------------------------------------------------------------------ renderers


def to_csv(table: Table) -> str:
    """CSV: ``[group,]system,<columns>,note``; a pending row has empty value cells and its reason in ``note``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    lead = ["group"] if table.group else []
    w.writerow([*lead, "system", *table.columns, "note"])
    for row in table.rows:
        lead = [row.group or ""] if table.group else []
        values = list(row.cells) if row.cells is not None else [""] * len(table.columns)
        w.writerow([*lead, row.label, *values, row.pending or ""])
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """GitHub Markdown; the group is printed on the first row of each run of equal groups."""
    head = (["Group"] if table.group else []) + ["System", *table.columns]
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
    head = (["Group"] if table.group else []) + ["System", *table.columns]
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
