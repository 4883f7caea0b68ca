"""Human validation of the stage-1 judge, as a kit (paper appendix C, Table 12).

Two steps, each a CLI and a rule:

* ``sheet``: sample ``k`` candidates per language (100 in the paper, ``annotation.per_language``) that the
  judge removed from the pool (its "false negatives": verdict not in the pool's keep set, i.e. 1 or 2 under
  the authors' keep = 0), read from the judge's verdict files (which carry each candidate's query, docid and
  the reference positive the judge was shown), and write, per language,

  - the annotation sheet ``{lang}.sheet.tsv`` (:data:`boostmdr.formats.SHEET_COLUMNS`: item id, language,
    query id, docid, query, reference positive, candidate, an empty ``grade``);
  - the same sheet as one static, self-contained HTML page ``{lang}.sheet.html`` (no network, no external
    script or style): it shows each query, reference positive and candidate with a 0 / 1 / 2 choice, keeps
    the choices in the browser's local storage while the annotator works, and exports the filled sheet as
    a TSV built by the page's own JavaScript (a download, and a text box to copy it from where a browser
    blocks downloads);
  - the key ``{lang}.key.tsv``, the judge's verdict on every item, which the annotators never see (so
    the verdict cannot anchor their grades).

  Sampling is seeded per language (``random.Random("annotate:<seed>:<lang>")``) over the removed
  candidates sorted by (query id, docid), so the sample does not depend on file order; a language with
  fewer than ``k`` removed candidates gives all of them (logged). The items are shown in sample order,
  which mixes queries. ``--sample kept`` samples the candidates the judge *kept* as hard negatives
  instead: the paper's Table 12, where humans grade 87-94 % of the sampled items 0 and the text speaks of
  "the correctness of LLMs' identification", reads more naturally that way; both are one setting apart.

* ``agreement``: read the filled sheets of several annotators (one TSV per annotator and language or one
  per annotator for all languages; every ``*.tsv`` of ``annotation.filled_dir``), match them to the keys
  and compute Table 12 per language and over all languages pooled:

  - **0 / 1 / 2**, the paper's "agreement with human judgment": the share of all annotations (item x
    annotator) of the sampled judge-removed candidates that gave each grade. The three shares sum to 100 %;
    with one annotator they are that annotator's grade distribution, with several the mean of theirs.
  - **Agrees with judge**: the share of annotations on the judge's side of the pool's keep line (a removed
    item graded outside the keep set, i.e. 1 or 2 under keep = 0: the annotator, too, would not train on
    it as a negative). **Same grade**: the share of annotations equal to the judge's verdict.
  - **Fleiss' kappa** among the annotators (:func:`fleiss_kappa`), over the items every annotator of the
    language graded (an item graded by fewer annotators is left out of every column, counted and logged);
    ``n/a`` when fewer than two annotators graded it, or when every annotation has the same grade (chance
    agreement 1 leaves kappa undefined). The pooled row's kappa needs the same number of annotators in
    every language.

  Without any filled sheet, every row of the table is printed as pending (a table is never faked).

CLI::

    python -m boostmdr.annotate sheet --verdicts v0.jsonl v1.jsonl --train train.jsonl --corpus corpus.jsonl \\
        --lang sw --keep 0 --per-language 100 --seed 0 --sheet sw.sheet.tsv --page sw.sheet.html --key sw.key.tsv
    python -m boostmdr.annotate agreement --keys sw.key.tsv te.key.tsv --sheets annotations/filled/*.tsv \\
        --keep 0 --languages sw te --out table12.md table12.csv table12.tex table12.html
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import math
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .formats import (
    GRADES,
    SHEET_COLUMNS,
    AnnotationItem,
    AnnotationKey,
    FormatError,
    passage_text,
    read_annotation_key,
    read_annotation_sheet,
    read_corpus,
    read_train,
    read_verdicts,
    sheet_text,
    write_annotation_key,
    write_annotation_sheet,
)
from .utils import setup_logging

log = logging.getLogger(__name__)

DEFAULT_PER_LANGUAGE = 100
"""Items per language (the paper samples 100 false negatives per language)."""
DEFAULT_SEED = 0
SAMPLES = ("removed", "kept")
"""Which candidates a sheet samples: those the judge removed (its false negatives), or those it kept."""
DEFAULT_SAMPLE = "removed"
GRADE_GUIDE = {
    0: "irrelevant: the candidate does not answer the query",
    1: "partially relevant: it touches the query but misses or garbles key points",
    2: "relevant: it answers the query (as the reference positive does)",
}
"""The three-level rating scheme of appendix C, in the words the sheet shows the annotators."""


# --------------------------------------------------------------------------------------------- sampling


def item_id(lang: str, qid: str, docid: str) -> str:
    """A stable, opaque id of an item: the language and a hash of (language, query, candidate)."""
    digest = hashlib.sha1(f"{lang}\t{qid}\t{docid}".encode()).hexdigest()[:10]
    return f"{lang}-{digest}"


def sample_verdicts(
    verdicts: Mapping[tuple[str, str], Mapping[str, Any]],
    keep: frozenset[int],
    k: int,
    seed: int,
    lang: str,
    sample: str = DEFAULT_SAMPLE,
) -> list[Mapping[str, Any]]:
    """``k`` verdict records of one language, at random (seeded), among the candidates the judge removed
    (verdict not in ``keep``) or, with ``sample="kept"``, kept; unparsed (null) verdicts are never sampled."""
    if sample not in SAMPLES:
        raise ValueError(f"sample {sample!r}: choose one of {', '.join(SAMPLES)}")
    if k < 1:
        raise ValueError(f"per-language sample size must be >= 1, got {k}")
    pool = sorted(
        key for key, rec in verdicts.items()
        if rec["verdict"] is not None and ((rec["verdict"] not in keep) == (sample == "removed"))
    )
    if len(pool) < k:
        log.warning("%s: only %d %s candidates to sample from (asked %d); the sheet holds all of them",
                    lang, len(pool), sample, k)
    chosen = random.Random(f"annotate:{seed}:{lang}").sample(pool, min(k, len(pool)))
    return [verdicts[key] for key in chosen]


def build_sheet(
    verdicts: Mapping[tuple[str, str], Mapping[str, Any]],
    train_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    lang: str,
    keep: frozenset[int],
    k: int = DEFAULT_PER_LANGUAGE,
    seed: int = DEFAULT_SEED,
    sample: str = DEFAULT_SAMPLE,
) -> tuple[list[AnnotationItem], list[AnnotationKey]]:
    """The items of one language's sheet (query, reference positive and candidate texts) and their key."""
    chosen = sample_verdicts(verdicts, keep, k, seed, lang, sample)
    train = read_train(train_path)
    wanted = {rec["docid"] for rec in chosen} | {rec["reference_docid"] for rec in chosen if rec.get("reference_docid")}
    texts = {}
    for doc in read_corpus(corpus_path):
        if doc["docid"] in wanted:
            texts[doc["docid"]] = passage_text(doc)
    missing = sorted(wanted - texts.keys())
    if missing:
        raise FormatError(corpus_path, None, f"{len(missing)} sampled docid(s) are not in the corpus, e.g. {missing[:3]}: "
                                             "the verdicts come from another corpus")
    items, keys = [], []
    for rec in chosen:
        qid, docid, ref = str(rec["qid"]), str(rec["docid"]), rec.get("reference_docid")
        if qid not in train:
            raise FormatError(train_path, None, f"query {qid!r} of the verdicts is not a training query")
        iid = item_id(lang, qid, docid)
        items.append(AnnotationItem(iid, lang, qid, docid, train[qid].query, texts[ref] if ref else "", texts[docid]))
        keys.append(AnnotationKey(iid, lang, qid, docid, ref, int(rec["verdict"])))
    return items, keys


# ----------------------------------------------------------------------------------------- the page

PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 60em;
       padding: 1em 1.5em 4em; color: #111; line-height: 1.45; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc; padding: 0.6em 0; z-index: 1; }
.item { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 1em; margin: 1em 0; }
.item.graded { border-color: #4a8; background: #f6fbf8; }
.item h2 { font-size: 0.95em; margin: 0 0 0.4em; color: #555; font-weight: 600; }
.field { margin: 0.35em 0; }
.field b { display: inline-block; min-width: 10em; }
.choices label { margin-right: 1.2em; white-space: nowrap; }
textarea { width: 100%; height: 8em; font-family: monospace; font-size: 0.8em; }
dl.guide dt { font-weight: 600; float: left; width: 1.5em; }
dl.guide dd { margin-left: 2em; }
""".strip()

PAGE_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sheet-data").textContent);
  var storageKey = "boostmdr-annotation:" + data.sheet_id;
  var grades = {};
  try { grades = JSON.parse(window.localStorage.getItem(storageKey) || "{}"); } catch (err) { grades = {}; }

  function save() {
    try { window.localStorage.setItem(storageKey, JSON.stringify(grades)); } catch (err) { /* storage off */ }
  }

  function show() {
    var done = 0;
    data.items.forEach(function (item) {
      var section = document.getElementById("item-" + item.item_id);
      var grade = grades[item.item_id];
      section.classList.toggle("graded", grade !== undefined);
      if (grade !== undefined) {
        done += 1;
        var input = section.querySelector('input[value="' + grade + '"]');
        if (input) { input.checked = true; }
      }
    });
    document.getElementById("progress").textContent = done + " of " + data.items.length + " graded";
  }

  function sheetTsv() {
    var lines = [data.columns.join("\t")];
    data.items.forEach(function (item) {
      var grade = grades[item.item_id];
      lines.push([item.item_id, item.lang, item.qid, item.docid, item.query, item.reference, item.candidate,
                  grade === undefined ? "" : String(grade)].join("\t"));
    });
    return lines.join("\n") + "\n";
  }

  function fileName() {
    var who = document.getElementById("annotator").value.trim().replace(/[^A-Za-z0-9_-]+/g, "_") || "annotator";
    return data.lang + "-" + who + ".tsv";
  }

  function exportSheet() {
    var text = sheetTsv();
    var box = document.getElementById("exported");
    box.textContent = text;
    box.value = text;
    var url = URL.createObjectURL(new Blob([text], { type: "text/tab-separated-values" }));
    var link = document.createElement("a");
    link.href = url;
    link.download = fileName();
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    return text;
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.classList && target.classList.contains("grade")) {
      grades[target.name] = Number(target.value);
      save();
      show();
    }
  });
  document.getElementById("export").addEventListener("click", exportSheet);
  show();
  window.boostmdrSheet = { sheetTsv: sheetTsv, exportSheet: exportSheet, grades: grades };
})();
"""


def _json_for_script(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no HTML comment opener)."""
    text = json.dumps(obj, ensure_ascii=False, sort_keys=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_page(items: Sequence[AnnotationItem], lang: str, title: str = "") -> str:
    """The annotation sheet as one self-contained HTML page (inline style and script, nothing fetched)."""
    esc = html.escape
    rows = [dict(zip(SHEET_COLUMNS[:7], item.row()[:7])) for item in items]
    sheet_id = hashlib.sha1(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    data = {"lang": lang, "sheet_id": sheet_id, "columns": list(SHEET_COLUMNS), "items": rows}
    title = title or f"Annotation sheet: {lang}"
    guide = "".join(f"<dt>{g}</dt><dd>{esc(text)}</dd>" for g, text in GRADE_GUIDE.items())
    sections = []
    for n, item in enumerate(items, start=1):
        choices = "".join(
            f'<label><input type="radio" class="grade" name="{esc(item.item_id)}" value="{g}"> {g}</label>'
            for g in GRADES
        )
        sections.append(
            f'<section class="item" id="item-{esc(item.item_id)}">'
            f"<h2>{n}. item {esc(item.item_id)}</h2>"
            f'<div class="field"><b>Query</b> {esc(sheet_text(item.query))}</div>'
            f'<div class="field"><b>Reference positive</b> {esc(sheet_text(item.reference)) or "<i>(none)</i>"}</div>'
            f'<div class="field"><b>Candidate</b> {esc(sheet_text(item.candidate))}</div>'
            f'<div class="field choices"><b>Grade</b> {choices}</div>'
            "</section>"
        )
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{PAGE_STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{esc(title)}</h1>",
        '<p><label>Your name <input id="annotator" type="text" size="16"></label> '
        '<button id="export" type="button">Export the filled sheet (TSV)</button> '
        '<span id="progress"></span></p>',
        "</header>",
        "<p>Grade how relevant each <b>candidate</b> passage is to the <b>query</b>. The reference positive is a "
        "passage known to answer the query, shown for comparison. Choices are kept in this browser while you "
        "work; export the sheet when done and send the file back. If your browser blocks the download, copy "
        "the text from the box at the end of the page into a file.</p>",
        f'<dl class="guide">{guide}</dl>',
        *sections,
        '<h2>Exported sheet</h2><textarea id="exported" readonly></textarea>',
        f'<script type="application/json" id="sheet-data">{_json_for_script(data)}</script>',
        f"<script>{PAGE_SCRIPT}</script>",
        "</body>",
        "</html>",
    ]) + "\n"


def write_sheet(
    verdict_paths: Sequence[str | os.PathLike],
    train_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    lang: str,
    keep: frozenset[int],
    sheet_path: str | os.PathLike,
    page_path: str | os.PathLike,
    key_path: str | os.PathLike,
    k: int = DEFAULT_PER_LANGUAGE,
    seed: int = DEFAULT_SEED,
    sample: str = DEFAULT_SAMPLE,
) -> int:
    """Sample, then write the sheet, its page and its key; returns the number of items."""
    from .formats import atomic_write

    items, keys = build_sheet(read_verdicts(verdict_paths), train_path, corpus_path, lang, keep, k, seed, sample)
    write_annotation_sheet(sheet_path, items)
    write_annotation_key(key_path, keys)
    with atomic_write(page_path) as fh:
        fh.write(render_page(items, lang))
    log.info("%s: %d %s candidates sampled -> %s, %s (key: %s); verdicts %s", lang, len(items), sample,
             sheet_path, page_path, key_path, dict(sorted(Counter(k.verdict for k in keys).items())))
    return len(items)


# ---------------------------------------------------------------------------------------- agreement


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of ``counts[i][j]``, the number of raters who put item ``i`` in category ``j``.

    Every item must have the same number n >= 2 of ratings. With N items and p_j the share of all ratings
    in category j: P_i = (sum_j counts[i][j]^2 - n) / (n (n - 1)), P = mean P_i, P_e = sum_j p_j^2, and
    kappa = (P - P_e) / (1 - P_e). ``None`` when undefined: no item, or every rating in one category
    (P_e = 1).
    """
    if not counts:
        return None
    n = sum(counts[0])
    if n < 2 or any(sum(row) != n for row in counts):
        raise ValueError(f"Fleiss' kappa needs the same number (>= 2) of ratings for every item; got "
                         f"{sorted({sum(row) for row in counts})}")
    items = len(counts)
    p_i = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts]
    p_bar = math.fsum(p_i) / items
    shares = [math.fsum(row[j] for row in counts) / (items * n) for j in range(len(counts[0]))]
    p_e = math.fsum(p * p for p in shares)
    if p_e >= 1.0 - 1e-12:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


@dataclass(frozen=True)
class Agreement:
    """Table 12's numbers for one language (or all pooled)."""

    items: int
    annotators: int
    shares: dict[int, float]
    agrees_with_judge: float
    same_grade: float
    kappa: float | None
    left_out: int


def agreement(
    keys: Sequence[AnnotationKey],
    grades: Mapping[str, Mapping[str, int]],
    keep: frozenset[int],
) -> Agreement | None:
    """Agreement over the items of ``keys`` graded in ``grades`` (``{annotator: {item_id: grade}}``); ``None``
    when no item is graded. Items graded by fewer annotators than the most any item got are left out."""
    ratings = {k.item_id: [g[k.item_id] for g in grades.values() if k.item_id in g] for k in keys}
    n = max((len(r) for r in ratings.values()), default=0)
    if n == 0:
        return None
    complete = [k for k in keys if len(ratings[k.item_id]) == n]
    left_out = sum(1 for k in keys if 0 < len(ratings[k.item_id]) < n)
    annotations = [(k, g) for k in complete for g in ratings[k.item_id]]
    total = len(annotations)
    counts = Counter(g for _, g in annotations)
    kappa = fleiss_kappa([[ratings[k.item_id].count(g) for g in GRADES] for k in complete]) if n >= 2 else None
    return Agreement(
        items=len(complete),
        annotators=n,
        shares={g: counts[g] / total for g in GRADES},
        agrees_with_judge=sum((g in keep) == (k.verdict in keep) for k, g in annotations) / total,
        same_grade=sum(g == k.verdict for k, g in annotations) / total,
        kappa=kappa,
        left_out=left_out,
    )


def read_filled(keys: Sequence[AnnotationKey], sheet_paths: Sequence[str | os.PathLike]) -> dict[str, dict[str, int]]:
    """``{sheet: {item_id: grade}}`` of the graded items of every filled sheet; an item that is in no key (a
    sheet made from another sample) names the sheet."""
    known = {k.item_id: k for k in keys}
    out: dict[str, dict[str, int]] = {}
    for path in sheet_paths:
        graded = {}
        for item in read_annotation_sheet(path):
            key = known.get(item.item_id)
            if key is None:
                raise FormatError(path, None, f"item {item.item_id!r} is in no annotation key: the sheet was made from "
                                              "another sample (rebuilt after the judge or the seed changed?)")
            if (item.lang, item.qid, item.docid) != (key.lang, key.qid, key.docid):
                raise FormatError(path, None, f"item {item.item_id!r} names {item.qid}/{item.docid} in {item.lang}, the "
                                              f"key {key.qid}/{key.docid} in {key.lang}")
            if item.grade is not None:
                graded[item.item_id] = item.grade
        out[str(path)] = graded
    return out


def agreement_table(
    keys: Sequence[AnnotationKey],
    sheet_paths: Sequence[str | os.PathLike],
    languages: Sequence[str],
    keep: frozenset[int],
    filled_dir: str = "",
    sample: str = DEFAULT_SAMPLE,
):
    """Table 12 (:class:`boostmdr.tables.Table`): a row per language and one for all languages pooled."""
    from .tables import Table, TableRow, percent

    grades = read_filled(keys, sheet_paths)
    columns = ("0", "1", "2", "Agrees with judge", "Same grade", "Fleiss' kappa", "Items", "Annotators")
    what = "removed" if sample == "removed" else "kept"
    title = (f"Table 12: human grades of the candidates the stage-1 judge {what} (% of annotations per grade), "
             "agreement with the judge, and Fleiss' kappa among the annotators")
    rows = []
    results: dict[str, Agreement | None] = {}
    for lang in languages:
        results[lang] = agreement([k for k in keys if k.lang == lang], grades, keep)
    pooled_n = {a.annotators for a in results.values() if a is not None}
    results["All"] = agreement(list(keys), grades, keep) if len(pooled_n) == 1 else None
    for label, result in results.items():
        if result is None:
            reason = (f"not yet annotated: no filled sheet in {filled_dir or 'the filled-sheets directory'} grades "
                      "these items" if label != "All" or not pooled_n
                      else "languages have different numbers of annotators; see their rows")
            rows.append(TableRow(label, None, reason))
            continue
        cells = (
            *(percent(result.shares[g]) for g in GRADES),
            percent(result.agrees_with_judge),
            percent(result.same_grade),
            "n/a" if result.kappa is None else f"{result.kappa:.3f}",
            str(result.items),
            str(result.annotators),
        )
        rows.append(TableRow(label, cells, strong=label == "All"))
        if result.left_out:
            log.warning("%s: %d items graded by fewer than %d annotators are left out", label, result.left_out,
                        result.annotators)
    notes = (
        "0 / 1 / 2: share of all annotations (items x annotators) with that grade. Agrees with judge: share of "
        f"annotations on the judge's side of the pool's keep set {sorted(keep)}. Same grade: share equal to the "
        "judge's verdict. Fleiss' kappa over the items every annotator graded.",
    )
    return Table(title=title, columns=columns, group=False, rows=tuple(rows), label_header="Subset", notes=notes)


# ---------------------------------------------------------------------------------------------- CLI


def _keep(spec: str) -> frozenset[int]:
    try:
        keep = frozenset(int(x) for x in spec.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: give the pool's kept verdicts as a comma list, e.g. 0 or 0,1") from None
    if not keep <= set(GRADES):
        raise argparse.ArgumentTypeError(f"{spec!r}: verdicts are 0, 1 and 2")
    return keep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m boostmdr.annotate",
                                description="Human validation of the stage-1 judge (paper appendix C, Table 12).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sheet", help="sample judged candidates into an annotation sheet (TSV, HTML page, key)")
    s.add_argument("--verdicts", nargs="+", required=True, help="the judge's verdict files of the language (every chunk)")
    s.add_argument("--train", required=True, help="prepared train.jsonl (query texts)")
    s.add_argument("--corpus", required=True, help="prepared corpus.jsonl (passage texts)")
    s.add_argument("--lang", required=True)
    s.add_argument("--keep", type=_keep, default=frozenset({0}), help="verdicts the pool keeps (default 0)")
    s.add_argument("--per-language", type=int, default=DEFAULT_PER_LANGUAGE, help="items to sample (default 100)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED)
    s.add_argument("--sample", choices=SAMPLES, default=DEFAULT_SAMPLE,
                   help="removed: the judge's false negatives (default); kept: its hard negatives")
    s.add_argument("--sheet", required=True, help="annotation sheet to write (TSV)")
    s.add_argument("--page", required=True, help="the sheet as a self-contained HTML page")
    s.add_argument("--key", required=True, help="the judge's verdicts of the items (TSV; not for annotators)")
    s.add_argument("--log", default=None)
    a = sub.add_parser("agreement", help="Table 12 from the filled sheets of several annotators")
    a.add_argument("--keys", nargs="+", required=True, help="the key of every language's sheet")
    a.add_argument("--sheets", nargs="*", default=[], help="filled sheets, one file per annotator (and language)")
    a.add_argument("--languages", nargs="+", required=True, help="table rows, in order")
    a.add_argument("--keep", type=_keep, default=frozenset({0}), help="verdicts the pool keeps (default 0)")
    a.add_argument("--sample", choices=SAMPLES, default=DEFAULT_SAMPLE, help="what the sheets sampled (for the title)")
    a.add_argument("--filled-dir", default="", help="where filled sheets go (named in pending rows)")
    a.add_argument("--out", nargs="+", required=True, help="table files (.md, .csv, .tex, .html)")
    a.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    if args.command == "sheet":
        write_sheet(args.verdicts, args.train, args.corpus, args.lang, args.keep, args.sheet, args.page, args.key,
                    args.per_language, args.seed, args.sample)
    else:
        from .tables import write_table

        keys = [k for path in args.keys for k in read_annotation_key(path)]
        table = agreement_table(keys, args.sheets, args.languages, args.keep, args.filled_dir, args.sample)
        write_table(table, args.out)
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
