"""Figures drawn from a results table's evaluation files (matplotlib, PNG and PDF).

A table entry with ``figure`` in the config (and an ``x`` on every row) is also drawn: one panel per measure
of the table, the rows' ``x`` on the horizontal axis, and one line per group of rows (the backbone in a grouped
table) and averaged column (``Avg``, or the low-resource languages apart): the same numbers as the table, in
percent, computed by the same functions (:func:`boostmdr.tables.language_table`). That is the shape of the
paper's Figure 3 (average nDCG@10 against the pool size N, one line per backbone) and of the mined-share
sweep (MRR@10 and nDCG@10 against the share of mined negatives, low-resource languages apart). Rows that
are not built yet are left out and named under the plot; a figure never shows a value the table does not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from boostmdr.tables import (
    Averages,
    RowSpec,
    TableError,
    averaged_columns,
    flat_files,
    measure_list,
    language_table,
    measure_label,
    read_row_evals,
)

log = logging.getLogger(__name__)


def table_figure(rows: Sequence[Mapping], languages: Sequence[str], measures: Sequence[str],
                 scores: Mapping[tuple[str, str], Mapping[str, Mapping[str, float]]], averages: Averages | None,
                 x_label: str, title: str = ""):
    """A matplotlib figure of the table's averaged columns against the rows' ``x`` (see the module doc)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = [RowSpec.from_dict(r, i) for i, r in enumerate(rows)]
    missing_x = [s.label for s in specs if s.x is None]
    if missing_x:
        raise TableError(f"rows {missing_x} have no x: a figure needs every row's position on its horizontal axis")
    avgs = averaged_columns(languages, averages)
    built = [r for r, s in zip(rows, specs) if s.pending is None]
    pending = [s.label for s in specs if s.pending is not None]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.8 * len(measures), 3.6), squeeze=False)
    for ax, measure in zip(axes[0], measures):
        ax.set_title(measure_label(measure))
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{measure_label(measure)} (%)")
        ax.grid(True, alpha=0.3)
        if not built:
            ax.text(0.5, 0.5, "no row built yet", ha="center", va="center", transform=ax.transAxes)
            continue
        table = language_table(built, languages, measure, scores, averages=averages)
        lines: dict[tuple[str | None, int], list[tuple[float, float]]] = {}
        for spec, row in zip([RowSpec.from_dict(r, i) for i, r in enumerate(built)], table.rows):
            for c in range(len(avgs)):
                lines.setdefault((spec.group, c), []).append((float(spec.x), float(row.cells[c])))
        for (group, c), points in lines.items():
            points.sort()
            label = " ".join(x for x in (group, avgs[c][0] if len(avgs) > 1 or group is None else "") if x)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    if pending:
        fig.text(0.01, 0.01, "not yet built: " + ", ".join(pending), fontsize="x-small", color="0.4")
    fig.tight_layout()
    return fig


def write_table_figure(smk: Any) -> None:
    """``scripts/table_figure.py``: the figure of one table (params ``rows``, ``languages``, ``metric``,
    ``averages``, ``figure`` {x_label, title}) from its eval files; outputs by suffix (.png, .pdf)."""
    from pathlib import Path

    from boostmdr.formats import atomic_write
    from boostmdr.utils import setup_logging

    setup_logging(flat_files(smk.log)[0] if smk.log else None)
    params = smk.params
    languages = list(params.languages)
    evals = read_row_evals(params.rows, languages, flat_files(smk.input))
    scores = {key: {lang: ev.aggregate for lang, ev in per_lang.items()} for key, per_lang in evals.items()}
    fig = table_figure(params.rows, languages, measure_list(params.metric), scores, params.averages or None,
                       params.figure["x_label"], params.figure.get("title", ""))
    for out in flat_files(smk.output):
        fmt = Path(out).suffix.lstrip(".")
        # a fixed creation date: the same numbers give the same PDF bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_write(out, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=150, metadata=metadata)
        log.info("wrote %s", out)
