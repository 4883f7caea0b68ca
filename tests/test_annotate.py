"""Table 12's human-validation kit: Fleiss' kappa against a value worked by hand, sheets sampled from judge
verdicts on a synthetic language, annotators simulated from its planted truth, and the HTML sheet checked as a
self-contained page and driven in a real browser."""

from __future__ import annotations

import json
import random
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from boostmdr import annotate
from boostmdr.demo.synthetic import generate
from boostmdr.formats import (
    SHEET_COLUMNS,
    FormatError,
    read_annotation_key,
    read_annotation_sheet,
    read_qrels,
    read_train,
    write_annotation_sheet,
    write_verdicts,
)
from boostmdr.miracl import prepare

from conftest import ERROR_HOOK, console_errors, run_chromium

KEEP = frozenset({0})


def test_fleiss_kappa_by_hand():
    # 4 items, 3 annotators, grades 0/1/2:
    #   item 1: 0 0 0 -> counts (3, 0, 0)    P_1 = (9 - 3) / (3 * 2) = 1
    #   item 2: 0 0 2 -> counts (2, 0, 1)    P_2 = (4 + 1 - 3) / 6 = 1/3
    #   item 3: 2 2 2 -> counts (0, 0, 3)    P_3 = 1
    #   item 4: 0 1 2 -> counts (1, 1, 1)    P_4 = (1 + 1 + 1 - 3) / 6 = 0
    # P = (1 + 1/3 + 1 + 0) / 4 = 7/12. Shares of the 12 grades: p_0 = 6/12, p_1 = 1/12, p_2 = 5/12, so
    # P_e = 36/144 + 1/144 + 25/144 = 62/144 = 31/72 and kappa = (7/12 - 31/72) / (1 - 31/72) = (11/72) / (41/72)
    # = 11/41 = 0.26829...
    assert annotate.fleiss_kappa([[3, 0, 0], [2, 0, 1], [0, 0, 3], [1, 1, 1]]) == pytest.approx(11 / 41)
    # perfect agreement over two categories: kappa 1; one category only: chance agreement 1, undefined
    assert annotate.fleiss_kappa([[2, 0, 0], [0, 0, 2]]) == pytest.approx(1.0)
    assert annotate.fleiss_kappa([[3, 0, 0], [3, 0, 0]]) is None
    with pytest.raises(ValueError, match="same number"):
        annotate.fleiss_kappa([[3, 0, 0], [1, 1, 0]])


def test_agreement_shares_and_judge_agreement_by_hand():
    from boostmdr.formats import AnnotationKey

    # the same four items, all removed by the judge (verdicts 2, 2, 1, 2); keep = {0}
    keys = [AnnotationKey(f"i{n}", "sw", f"q{n}", f"d{n}", None, v) for n, v in enumerate([2, 2, 1, 2], start=1)]
    grades = {"ann1": {"i1": 0, "i2": 0, "i3": 2, "i4": 0},
              "ann2": {"i1": 0, "i2": 0, "i3": 2, "i4": 1},
              "ann3": {"i1": 0, "i2": 2, "i3": 2, "i4": 2, "extra": 1}}
    result = annotate.agreement(keys, grades, KEEP)
    assert result.items == 4 and result.annotators == 3 and result.left_out == 0
    assert result.shares == {0: 6 / 12, 1: 1 / 12, 2: 5 / 12}
    assert result.agrees_with_judge == 6 / 12  # the 6 annotations graded 1 or 2 also would not train on it
    assert result.same_grade == 2 / 12  # grade = verdict only for ann3 on i2 (2) and on i4 (2); i3's verdict is 1
    assert result.kappa == pytest.approx(11 / 41)
    # an item graded by two of the three annotators is left out of every number
    partial = {name: {k: v for k, v in g.items() if not (name == "ann3" and k == "i4")} for name, g in grades.items()}
    assert annotate.agreement(keys, partial, KEEP).items == 3
    assert annotate.agreement(keys, partial, KEEP).left_out == 1


# ------------------------------------------------------------------ simulated from the synthetic benchmark


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    """One synthetic language, prepared, with judge verdicts on candidates drawn from its planted truth: a
    judge that finds 80% of the planted false negatives and wrongly removes 10% of the true negatives."""
    root = tmp_path_factory.mktemp("annotate")
    generate("sw", root / "raw", seed=5, passages=800, train_queries=60, dev_queries=4, false_negative_rate=0.6)
    prepare(root / "raw", "sw", root / "data")
    train = read_train(root / "data" / "train.jsonl")
    truth = read_qrels(root / "raw" / "synthetic-truth" / "sw.train.complete-qrels.tsv")
    docids = [json.loads(line)["docid"] for line in (root / "data" / "corpus.jsonl").read_text().splitlines()]
    rng = random.Random(1)
    records = []
    for q in train.values():
        planted = [d for d, r in truth.get(q.qid, {}).items() if r > 0 and d not in q.positives]
        others = [d for d in rng.sample(docids, 8) if d not in q.positives and d not in planted]
        for rank, docid in enumerate(planted + others, start=1):
            relevant = docid in planted
            verdict = (2 if rng.random() < 0.8 else 0) if relevant else (1 if rng.random() < 0.1 else 0)
            records.append({"qid": q.qid, "docid": docid, "rank": rank, "score": 1.0 / rank, "lang": "sw",
                            "reference_mode": "positive", "reference_docid": q.positives[0], "verdict": verdict})
    write_verdicts(root / "verdicts.jsonl", records)
    return root, truth


def _sheet(root, tmp_path, k=25, seed=0, sample="removed"):
    paths = {name: tmp_path / f"sw.{name}" for name in ("sheet.tsv", "sheet.html", "key.tsv")}
    annotate.main(["sheet", "--verdicts", str(root / "verdicts.jsonl"), "--train", str(root / "data/train.jsonl"),
                   "--corpus", str(root / "data/corpus.jsonl"), "--lang", "sw", "--keep", "0", "--per-language",
                   str(k), "--seed", str(seed), "--sample", sample, "--sheet", str(paths["sheet.tsv"]),
                   "--page", str(paths["sheet.html"]), "--key", str(paths["key.tsv"])])
    return paths


def _simulate(items, truth, noise, seed):
    """An annotator: 2 for a planted (truly relevant) candidate, 0 otherwise; with probability ``noise`` one of
    the two other grades instead, at random (seeded per annotator)."""
    rng = random.Random(f"annotator:{seed}")
    graded = []
    for item in items:
        grade = 2 if truth.get(item.qid, {}).get(item.docid, 0) > 0 else 0
        if rng.random() < noise:
            grade = rng.choice([g for g in (0, 1, 2) if g != grade])
        graded.append(item.__class__(**{**item.__dict__, "grade": grade}))
    return graded


def test_sheet_samples_removed_candidates_with_the_texts_the_judge_saw(language, tmp_path):
    root, truth = language
    paths = _sheet(root, tmp_path)
    items, keys = read_annotation_sheet(paths["sheet.tsv"]), read_annotation_key(paths["key.tsv"])
    assert len(items) == 25 and [i.item_id for i in items] == [k.item_id for k in keys]
    assert len({i.item_id for i in items}) == 25 and all(i.grade is None for i in items)
    assert all(k.verdict in (1, 2) for k in keys)  # removed under keep = {0}
    train = read_train(root / "data/train.jsonl")
    corpus = {json.loads(line)["docid"]: json.loads(line) for line in (root / "data/corpus.jsonl").read_text().splitlines()}
    for item, key in zip(items, keys):
        assert item.query == train[item.qid].query and key.reference_docid == train[item.qid].positives[0]
        assert item.candidate == " ".join(f"{corpus[item.docid]['title']} {corpus[item.docid]['text']}".split())
    # seeded: the same seed samples the same items, another seed others
    assert read_annotation_sheet(_sheet(root, tmp_path / "again")["sheet.tsv"]) == items
    assert read_annotation_sheet(_sheet(root, tmp_path / "other", seed=1)["sheet.tsv"]) != items
    kept = read_annotation_key(_sheet(root, tmp_path / "kept", sample="kept")["key.tsv"])
    assert {k.verdict for k in kept} == {0}


def test_simulated_annotators_from_the_planted_truth(language, tmp_path):
    root, truth = language
    paths = _sheet(root, tmp_path, k=40)
    items, keys = read_annotation_sheet(paths["sheet.tsv"]), read_annotation_key(paths["key.tsv"])
    planted = sum(truth.get(i.qid, {}).get(i.docid, 0) > 0 for i in items)
    assert 0 < planted < len(items)  # the judge's removals hold true and false false-negatives

    # noiseless annotators agree perfectly: share of grade 2 = the judge's precision on the sample
    exact = tmp_path / "exact"
    for n in range(3):
        write_annotation_sheet(exact / f"sw-ann{n}.tsv", _simulate(items, truth, 0.0, n))
    table = annotate.agreement_table(keys, sorted(exact.glob("*.tsv")), ["sw"], KEEP)
    sw = dict(zip(table.columns, table.rows[0].cells))
    assert sw["2"] == f"{100 * planted / len(items):.1f}" and sw["1"] == "0.0"
    assert sw["Agrees with judge"] == sw["2"]  # only a planted candidate is one the annotators also remove
    assert sw["Fleiss' kappa"] == "1.000" and sw["Items"] == "40" and sw["Annotators"] == "3"

    # noisy annotators: shares counted directly, kappa from the other textbook form of Fleiss' formula
    noisy = tmp_path / "noisy"
    sheets = [_simulate(items, truth, 0.15, 10 + n) for n in range(3)]
    for n, graded in enumerate(sheets):
        write_annotation_sheet(noisy / f"sw-ann{n}.tsv", graded)
    result = annotate.agreement(keys, annotate.read_filled(keys, sorted(noisy.glob("*.tsv"))), KEEP)
    grades = [g.grade for graded in sheets for g in graded]
    assert result.shares == {g: grades.count(g) / 120 for g in (0, 1, 2)}
    counts = [[sum(s[i].grade == g for s in sheets) for g in (0, 1, 2)] for i in range(40)]
    n_items, n_raters = 40, 3
    p = [sum(row[g] for row in counts) / (n_items * n_raters) for g in range(3)]
    kappa = 1 - (n_items * n_raters**2 - sum(c * c for row in counts for c in row)) / (
        n_items * n_raters * (n_raters - 1) * (1 - sum(x * x for x in p)))
    assert result.kappa == pytest.approx(kappa, abs=1e-12)
    assert 0.3 < result.kappa < 1.0


def test_table12_without_filled_sheets_is_pending_and_foreign_sheets_are_refused(language, tmp_path):
    root, _ = language
    paths = _sheet(root, tmp_path, k=5)
    out = [tmp_path / f"table12.{ext}" for ext in ("md", "csv", "html")]
    annotate.main(["agreement", "--keys", str(paths["key.tsv"]), "--languages", "sw", "--keep", "0",
                   "--filled-dir", "annotations/filled", "--out", *map(str, out)])
    md = out[0].read_text()
    assert "| sw | *not yet annotated: no filled sheet in annotations/filled grades these items* |" in md
    assert out[2].read_text().startswith("<!DOCTYPE html>")
    foreign = tmp_path / "foreign.tsv"
    items = read_annotation_sheet(paths["sheet.tsv"])
    write_annotation_sheet(foreign, [items[0].__class__(**{**items[0].__dict__, "item_id": "sw-0000000000"})])
    with pytest.raises(FormatError, match=r"foreign.tsv: item 'sw-0000000000' is in no annotation key"):
        annotate.read_filled(read_annotation_key(paths["key.tsv"]), [foreign])
    bad = tmp_path / "bad.tsv"
    bad.write_text("\t".join(SHEET_COLUMNS) + "\n" + "\t".join([items[0].item_id, "sw", "q", "d", "a", "b", "c", "3"]) + "\n")
    with pytest.raises(FormatError, match=r"bad.tsv:2: grade '3' of item"):
        read_annotation_sheet(bad)


# ------------------------------------------------------------------------------------------ the page


class _Checker(HTMLParser):
    """Well-formedness: every element but the void ones is closed, in order; no external resource."""

    VOID = {"meta", "input", "br", "hr", "img", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") or (value and re.match(r"(?i)\s*(https?:|//)", value)):
                self.external.append((tag, name, value))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def test_page_is_self_contained_and_well_formed(language, tmp_path):
    root, _ = language
    paths = _sheet(root, tmp_path, k=6)
    page = paths["sheet.html"].read_text()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [] and checker.external == []
    assert "http://" not in page and "https://" not in page and "<link" not in page
    data = json.loads(re.search(r'<script type="application/json" id="sheet-data">(.*?)</script>', page, re.S).group(1))
    items = read_annotation_sheet(paths["sheet.tsv"])
    assert [d["item_id"] for d in data["items"]] == [i.item_id for i in items]
    assert data["columns"] == list(SHEET_COLUMNS)
    assert page.count('class="grade"') == 3 * len(items)


def test_page_in_a_browser_fills_two_choices_and_exports_the_sheet(language, tmp_path, chromium):
    root, _ = language
    paths = _sheet(root, tmp_path, k=6)
    items = read_annotation_sheet(paths["sheet.tsv"])
    page = paths["sheet.html"].read_text()
    # A test copy: the error hook first; at the end, click two choices as a user would and press Export. The
    # download link's click is recorded instead of followed: a download in headless Chromium can keep the
    # process alive after --dump-dom (CI once hung 180 s on it), and the file's name is what is checked.
    drive = (f'<script>window.__downloads = [];'
             f'HTMLAnchorElement.prototype.click = function () {{ window.__downloads.push(this.download); }};'
             f'document.getElementById("annotator").value = "Ann O. Tator";'
             f'document.querySelector(\'input[name="{items[1].item_id}"][value="2"]\').click();'
             f'document.querySelector(\'input[name="{items[4].item_id}"][value="0"]\').click();'
             f'document.getElementById("export").click();'
             f'document.body.setAttribute("data-errors", JSON.stringify(window.__errors));'
             f'document.body.setAttribute("data-downloads", JSON.stringify(window.__downloads));</script>')
    test_copy = tmp_path / "drive.html"
    test_copy.write_text(page.replace("<head>", "<head>" + ERROR_HOOK, 1).replace("</body>", drive + "</body>"))
    proc = run_chromium(chromium, test_copy.as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert console_errors(proc.stderr) == []
    dom = proc.stdout
    assert 'data-errors="[]"' in dom, dom[-2000:]
    assert 'data-downloads="[&quot;sw-Ann_O_Tator.tsv&quot;]"' in dom, dom[-2000:]
    exported = re.search(r'<textarea id="exported" readonly="">(.*?)</textarea>', dom, re.S).group(1)
    import html

    filled = tmp_path / "filled" / "sw-Ann_O_Tator.tsv"
    filled.parent.mkdir()
    filled.write_text(html.unescape(exported))
    got = read_annotation_sheet(filled)
    expected = [i.__class__(**{**i.__dict__, "grade": {1: 2, 4: 0}.get(n)}) for n, i in enumerate(items)]
    assert got == expected
    assert '2 of 6 graded' in dom
