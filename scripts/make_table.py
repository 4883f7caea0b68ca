"""Snakemake ``script:`` that writes one results table as .csv, .md and/or .tex (boostmdr.tables).

Inputs: the eval JSONs of every non-pending row and language (``results/eval/{backbone}/{variant}/{lang}.json``).
Params:
  rows       list of {label, backbone, variant[, group]} or {label, pending: reason[, group]}
  languages  language codes, in column order
  metric     ndcg_cut_10 | recall_100 (layout "languages")
  title      caption
  layout     "languages" (default) or "summary" (rows = variants, columns = language-averaged measures)
  measures   summary columns (default ndcg_cut_10 recall_100)
  eval_path  pattern of an eval file (default results/eval/{backbone}/{variant}/{lang}.json); every
             file it names must be one of the rule's inputs, so the DAG and the table cannot disagree
Outputs: any of .csv / .md / .tex, chosen by suffix.

No ``from __future__`` import here: Snakemake prepends its own preamble to a script, after which such
an import is a syntax error.
"""

import logging
import os
from pathlib import Path

from boostmdr import tables
from boostmdr.formats import atomic_write, read_eval
from boostmdr.utils import setup_logging

logger = logging.getLogger("make_table")

DEFAULT_EVAL_PATH = "results/eval/{backbone}/{variant}/{lang}.json"
LAYOUTS = ("languages", "summary")


def _flat(files) -> list[str]:
    out: list[str] = []
    for f in files:
        if isinstance(f, (list, tuple)):
            out += _flat(f)
        else:
            out.append(str(f))
    return out


def main(smk) -> None:
    logs = _flat(getattr(smk, "log", []) or [])
    setup_logging(logs[0] if logs else None)
    params = smk.params
    rows = getattr(params, "rows")
    languages = list(getattr(params, "languages"))
    title = getattr(params, "title", "") or ""
    layout = getattr(params, "layout", "languages") or "languages"
    if layout not in LAYOUTS:
        raise tables.TableError(f"params.layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    pattern = getattr(params, "eval_path", None) or DEFAULT_EVAL_PATH

    inputs = {os.path.normpath(p) for p in _flat(smk.input)}
    scores: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for i, raw in enumerate(rows):
        row = tables.RowSpec.from_dict(raw, i)
        if row.pending is not None:
            logger.info("row %r pending: %s", row.label, row.pending)
            continue
        for lang in languages:
            path = os.path.normpath(pattern.format(backbone=row.backbone, variant=row.variant, lang=lang))
            if path not in inputs:
                raise tables.TableError(
                    f"row {row.label!r}, language {lang}: {path} is not an input of the rule; declare it in "
                    f"input: (or set params.eval_path to the pattern the inputs follow)"
                )
            scores.setdefault(row.key, {})[lang] = read_eval(path).aggregate

    if layout == "summary":
        measures = list(getattr(params, "measures", None) or tables.SUMMARY_MEASURES)
        table = tables.summary_table(rows, languages, scores, title=title, measures=measures)
    else:
        metric = getattr(params, "metric")
        table = tables.language_table(rows, languages, metric, scores, title=title)

    for out in _flat(smk.output):
        render = tables.RENDERERS.get(Path(out).suffix)
        if render is None:
            raise tables.TableError(f"output {out}: unknown table format; use one of {', '.join(tables.RENDERERS)}")
        with atomic_write(out) as fh:
            fh.write(render(table))
        logger.info("wrote %s", out)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
