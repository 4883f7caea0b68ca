"""Results tables: exact CSV/Markdown/LaTeX/HTML for tiny examples, pending rows, groups, the paper's marks
(significance daggers against scipy, best and second best), the Snakemake script."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from boostmdr import tables
from boostmdr.formats import EvalResult

from conftest import write_eval_files

LANGS = ["sw", "te"]
SCORES = {
    ("bm25", "zeroshot"): {"sw": {"ndcg_cut_10": 0.38264, "recall_100": 0.7008},
                           "te": {"ndcg_cut_10": 0.49416, "recall_100": 0.8307}},
    ("me5", "bdumdr"): {"sw": {"ndcg_cut_10": 0.70, "recall_100": 0.95},
                        "te": {"ndcg_cut_10": 0.801, "recall_100": 0.9612}},
}
ROWS = [
    {"label": "BM25", "backbone": "bm25", "variant": "zeroshot"},
    {"label": "Ours", "backbone": "me5", "variant": "bdumdr"},
    {"label": "Ours + PDBG", "pending": "not yet built: stage 2"},
]


def test_language_table_markdown_exact():
    table = tables.language_table(ROWS, LANGS, "ndcg_cut_10", SCORES, title="nDCG@10 on MIRACL dev")
    # BM25 avg (0.38264 + 0.49416) / 2 = 0.4384 -> 43.8; Ours (0.70 + 0.801) / 2 = 0.7505 -> 75.1
    # (half up on the decimal value, although 75.05 is stored as 75.0499... in binary).
    assert tables.to_markdown(table) == (
        "**nDCG@10 on MIRACL dev**\n"
        "\n"
        "| System | Avg | sw | te |\n"
        "|:--|--:|--:|--:|\n"
        "| BM25 | 43.8 | 38.3 | 49.4 |\n"
        "| Ours | 75.1 | 70.0 | 80.1 |\n"
        "| Ours + PDBG | *not yet built: stage 2* |  |  |\n"
    )


def test_language_table_csv_exact():
    table = tables.language_table(ROWS, LANGS, "recall_100", SCORES)
    assert tables.to_csv(table) == (
        "system,Avg,sw,te,note\n"
        "BM25,76.6,70.1,83.1,\n"
        "Ours,95.6,95.0,96.1,\n"
        "Ours + PDBG,,,,not yet built: stage 2\n"
    )


def test_average_is_taken_before_rounding():
    scores = {("a", "b"): {"x": {"m": 0.00049}, "y": {"m": 0.00149}}}
    table = tables.language_table([{"label": "r", "backbone": "a", "variant": "b"}], ["x", "y"], "m", scores)
    # per-language cells round to 0.0 and 0.1, but the average 0.099% rounds to 0.1
    assert table.rows[0].cells == ("0.1", "0.0", "0.1")


def test_grouped_rows_latex_booktabs():
    rows = [
        {"label": "Zero-shot", "backbone": "bm25", "variant": "zeroshot", "group": "mE5_base"},
        {"label": "Ours", "backbone": "me5", "variant": "bdumdr", "group": "mE5_base"},
        {"label": "Ours", "pending": "needs 100% GPU", "group": "BGE-M3"},
    ]
    table = tables.language_table(rows, LANGS, "ndcg_cut_10", SCORES, title="Backbones & variants")
    assert tables.to_latex(table) == (
        "\\begin{table}[t]\n"
        "\\centering\n"
        "\\caption{Backbones \\& variants}\n"
        "\\begin{tabular}{llrrr}\n"
        "\\toprule\n"
        "Group & System & Avg & sw & te \\\\\n"
        "\\midrule\n"
        "mE5\\_base & Zero-shot & 43.8 & 38.3 & 49.4 \\\\\n"
        " & Ours & 75.1 & 70.0 & 80.1 \\\\\n"
        "\\midrule\n"
        "BGE-M3 & Ours & \\multicolumn{3}{c}{\\emph{needs 100\\% GPU}} \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{table}\n"
    )
    assert tables.to_csv(table).splitlines()[:2] == [
        "group,system,Avg,sw,te,note", "mE5_base,Zero-shot,43.8,38.3,49.4,"]


def test_summary_table_markdown_exact():
    table = tables.summary_table(ROWS[:2], LANGS, SCORES, title="Ablation")
    assert tables.to_markdown(table) == (
        "**Ablation**\n"
        "\n"
        "| System | Avg nDCG@10 | Avg R@100 |\n"
        "|:--|--:|--:|\n"
        "| BM25 | 43.8 | 76.6 |\n"
        "| Ours | 75.1 | 95.6 |\n"
    )


def test_bad_rows_and_missing_scores_are_named():
    with pytest.raises(tables.TableError, match=r"row 0 \('x'\): needs 'backbone' and 'variant', or 'pending'"):
        tables.language_table([{"label": "x", "backbone": "bm25"}], LANGS, "ndcg_cut_10", SCORES)
    with pytest.raises(tables.TableError, match=r"row 0: unknown keys \['varient'\]"):
        tables.language_table([{"label": "x", "backbone": "b", "varient": "v"}], LANGS, "ndcg_cut_10", SCORES)
    with pytest.raises(tables.TableError, match=r"row 'BM25': no ndcg_cut_10 for bm25/zeroshot in language 'fi'"):
        tables.language_table(ROWS[:1], ["fi"], "ndcg_cut_10", SCORES)


def _write_eval(path: Path, ndcg: float, recall: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": "r", "qrels": "q", "num_queries": 1,
                                "aggregate": {"ndcg_cut_10": ndcg, "recall_100": recall},
                                "per_query": {"1": {"ndcg_cut_10": ndcg, "recall_100": recall}}}))


def test_make_table_script_has_no_future_import(repo):
    # Snakemake's script: directive prepends a preamble; a `from __future__` import then fails to compile.
    text = (repo / "scripts" / "make_table.py").read_text()
    assert not [line for line in text.splitlines() if line.startswith("from __future__")]


def test_make_table_script_writes_all_formats(tmp_path, repo, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = []
    for (backbone, variant), per_lang in SCORES.items():
        for lang in LANGS:
            path = Path(f"results/eval/{backbone}/{variant}/{lang}.json")
            _write_eval(path, per_lang[lang]["ndcg_cut_10"], per_lang[lang]["recall_100"])
            inputs.append(str(path))
    outputs = [f"results/tables/table1.{ext}" for ext in ("csv", "md", "tex")]
    smk = SimpleNamespace(
        input=inputs, output=outputs, log=["logs/table1.log"],
        params=SimpleNamespace(rows=ROWS, languages=LANGS, metric="ndcg_cut_10", title="nDCG@10 on MIRACL dev"),
    )
    runpy.run_path(str(repo / "scripts" / "make_table.py"), init_globals={"snakemake": smk})
    assert Path(outputs[1]).read_text() == tables.to_markdown(
        tables.language_table(ROWS, LANGS, "ndcg_cut_10", SCORES, title="nDCG@10 on MIRACL dev"))
    assert Path(outputs[0]).read_text().splitlines()[1] == "BM25,43.8,38.3,49.4,"
    assert Path(outputs[2]).read_text().startswith("\\begin{table}[t]")

    smk.input = inputs[:-1]  # an eval file the rule forgot to declare
    with pytest.raises(tables.TableError, match=r"results/eval/me5/bdumdr/te.json is not an input of the rule"):
        runpy.run_path(str(repo / "scripts" / "make_table.py"), init_globals={"snakemake": smk})


def test_stats_table_averages_present_values_prints_na_and_renders_all_formats():
    rows = tables.STATS_TABLES["judge_quality"][1]
    stats = {
        "sw": {"truth": {"false_negative_rate_among_candidates": 0.2, "precision": 0.5, "recall": 0.25, "accuracy": 0.8}},
        "ru": {"truth": {"false_negative_rate_among_candidates": 0.1, "precision": None, "recall": 0.0, "accuracy": 0.9}},
    }
    table = tables.stats_table(rows, stats, ["sw", "ru"], "quality")
    md = tables.to_markdown(table)
    assert "| Precision (%) | 50.0 | 50.0 | n/a |" in md  # the average over the languages that have a value
    assert "| Recall (%) | 12.5 | 25.0 | 0.0 |" in md
    assert tables.to_csv(table).splitlines()[0] == "statistic,Avg,sw,ru,note"
    assert "\\toprule" in tables.to_latex(table)
    counts = tables.stats_table(tables.STATS_TABLES["elimination"][1][1:2], {"sw": {"judged": 1470}, "ru": {"judged": 35}}, ["sw", "ru"])
    assert [r.cells for r in counts.rows] == [("752.5", "1,470", "35")]
    with pytest.raises(tables.TableError, match=r"no statistics for language\(s\) \['te'\]"):
        tables.stats_table(rows, stats, ["sw", "te"])


def test_topic_table_counts_per_language_with_totals():
    counts = {"sw": {"GE": 1200, "SM": 3}, "te": {"SM": 2, "OT": 1}}
    table = tables.topic_table(counts, LANGS, ["SM", "GE", "OT"], title="Table 13")
    assert tables.to_csv(table) == (
        "lang,SM,GE,OT,Total,note\n"
        "sw,3,\"1,200\",0,\"1,203\",\n"
        "te,2,0,1,3,\n"
        "Total,5,\"1,200\",1,\"1,206\",\n"
    )
    with pytest.raises(tables.TableError, match=r"topic\(s\) \['XX'\] are not in the scheme's topics"):
        tables.topic_table({"sw": {"XX": 1}, "te": {}}, LANGS, ["SM"])
    with pytest.raises(tables.TableError, match=r"no topic counts for language\(s\) \['te'\]"):
        tables.topic_table({"sw": {}}, LANGS, ["SM"])


def test_batch_table_prints_each_rows_statistics_and_na_without_topics():
    stage3 = {"one_language_batch_share": 1.0, "queries_used_share": 0.9512, "mean_weight": 0.85,
              "distinct_topics_per_batch": {"mean": 7.25}, "attainable_topics_per_batch": {"mean": 8.0},
              "language_step_share": {"sw": 0.4, "te": 0.6, "mixed": 0.0}}
    shuffled = {"one_language_batch_share": 0.125, "queries_used_share": 0.98, "mean_weight": None,
                "distinct_topics_per_batch": None, "attainable_topics_per_batch": None,
                "language_step_share": {"sw": 0.0625, "te": 0.0625, "mixed": 0.875}}
    rows = [{"label": "Stage 3", "backbone": "bge", "variant": "a"}, {"label": "Shuffled", "backbone": "bge", "variant": "b"},
            {"label": "Full", "pending": "not yet built: stage 2"}]
    table = tables.batch_table(rows, {"Stage 3": stage3, "Shuffled": shuffled}, LANGS)
    assert table.columns[:5] == ("One-language batches (%)", "Distinct topics / batch", "Most the data allows",
                                 "Queries used / epoch (%)", "Mean weight")
    assert table.rows[0].cells == ("100.0", "7.25", "8.00", "95.1", "0.850", "40.0", "60.0", "0.0")
    assert table.rows[1].cells == ("12.5", "n/a", "n/a", "98.0", "n/a", "6.3", "6.3", "87.5")
    assert table.rows[2].pending == "not yet built: stage 2"


def test_statistics_of_one_language_from_several_files_are_merged_and_disagreements_named():
    merged = tables.merge_stats([
        ("pool/sw.json", {"lang": "sw", "pool": {"from_llm_share": 0.1}}),
        ("judge/sw.json", {"lang": "sw", "elimination_rate": 0.2}),
        ("judge/te.json", {"lang": "te", "elimination_rate": 0.3}),
    ])  # fmt: skip
    assert merged == {"sw": {"lang": "sw", "pool": {"from_llm_share": 0.1}, "elimination_rate": 0.2},
                      "te": {"lang": "te", "elimination_rate": 0.3}}  # fmt: skip
    rows = tables.STATS_TABLES["table8"][1]
    table = tables.stats_table(rows, {"sw": {**merged["sw"], "pool": {"from_llm_share": 0.1, "from_retrieval_share": 0.9}}}, ["sw"])
    assert [r.cells for r in table.rows] == [("90.0", "90.0"), ("10.0", "10.0"), ("20.0", "20.0")]
    with pytest.raises(tables.TableError, match=r"b\.json and a\.json disagree on 'x' for sw"):
        tables.merge_stats([("a.json", {"lang": "sw", "x": 1}), ("b.json", {"lang": "sw", "x": 2})])


# ------------------------------------------------------------------------------------- the paper's marks


def test_best_bold_second_underlined_ties_share_the_mark():
    scores = {("a", "v"): {"sw": {"m": 0.50}, "te": {"m": 0.70}},
              ("b", "v"): {"sw": {"m": 0.50}, "te": {"m": 0.60}},
              ("c", "v"): {"sw": {"m": 0.40}, "te": {"m": 0.65}}}
    rows = [{"label": x.upper(), "backbone": x, "variant": "v"} for x in "abc"] + [{"label": "D", "pending": "later"}]
    table = tables.language_table(rows, LANGS, "m", scores, highlight_mode="best_and_second")
    # Avg: A 60.0 (best), B 55.0 (second), C 52.5. sw: A and B tie at 50.0 (both best), C 40.0 is the next lower
    # printed value (second). te: A 70.0 best, C 65.0 second, B 60.0 unmarked. The pending row takes no part.
    assert tables.to_markdown(table) == (
        "| System | Avg | sw | te |\n"
        "|:--|--:|--:|--:|\n"
        "| A | **60.0** | **50.0** | **70.0** |\n"
        "| B | <u>55.0</u> | **50.0** | 60.0 |\n"
        "| C | 52.5 | <u>40.0</u> | <u>65.0</u> |\n"
        "| D | *later* |  |  |\n"
        "\n"
        "Bold: the best value of each column; underlined: the second best.\n"
    )
    assert "\\underline{55.0}" in tables.to_latex(table) and "\\textbf{50.0}" in tables.to_latex(table)
    assert tables.to_csv(table).splitlines()[1] == "A,60.0,50.0,70.0,"  # the CSV stays plain numbers
    best_only = tables.language_table(rows[:3], LANGS, "m", scores, highlight_mode="best")
    assert [r.mark(0) for r in best_only.rows] == [{"best"}, set(), set()]


def test_marks_compare_within_each_group_and_need_two_rows():
    scores = {("a", "v"): {"sw": {"m": 0.5}}, ("b", "v"): {"sw": {"m": 0.4}}, ("c", "v"): {"sw": {"m": 0.9}}}
    rows = [{"label": "A", "backbone": "a", "variant": "v", "group": "G1"},
            {"label": "B", "backbone": "b", "variant": "v", "group": "G1"},
            {"label": "C", "backbone": "c", "variant": "v", "group": "G2"}]
    table = tables.language_table(rows, ["sw"], "m", scores, highlight_mode="best")
    # G1: A (50.0) beats B (40.0); G2 has one row, so C (90.0, the column's maximum) is not marked.
    assert [r.marks for r in table.rows] == [({"best"}, {"best"}), (set(), set()), (set(), set())]
    assert table.notes == ("Bold: the best value of each column within each group.",)


def _evals(values: dict[str, list[float]], run: str) -> dict[str, EvalResult]:
    return {lang: EvalResult(run, "qrels", len(v), {"ndcg_cut_10": sum(v) / len(v)},
                             {f"q{i}": {"ndcg_cut_10": x} for i, x in enumerate(v)})
            for lang, v in values.items()}


SIG_EVALS = {
    ("bge", "zeroshot"): _evals({"sw": [0.1, 0.2, 0.3, 0.4, 0.5], "te": [0.5, 0.5, 0.5, 0.5]}, "bge-zs"),
    # sw: differences 0.2, 0.3, 0.3, 0.2, 0.4 (mean 0.28, sd sqrt(0.007), t = 0.28 / (sqrt(0.007) / sqrt 5)
    # = 7.483, 4 df, p = 0.0017); te: 0.1, -0.1, 0, 0.05 (p = 0.59)
    ("bge", "full"): _evals({"sw": [0.3, 0.5, 0.6, 0.6, 0.9], "te": [0.6, 0.4, 0.5, 0.55]}, "bge-full"),
    # sw: significantly *worse* (differences -0.1, -0.2, -0.3, -0.2, -0.4): no dagger
    ("bge", "worse"): _evals({"sw": [0.0, 0.0, 0.0, 0.2, 0.1], "te": [0.5, 0.5, 0.5, 0.5]}, "bge-worse"),
}
SIG_ROWS = [{"label": "BGE", "backbone": "bge", "variant": "zeroshot"},
            {"label": "Ours (BGE)", "backbone": "bge", "variant": "full"},
            {"label": "Worse", "backbone": "bge", "variant": "worse"}]


def test_significance_is_scipys_paired_t_test_per_language_and_pooled_for_avg():
    from scipy import stats

    tests = tables.significance_tests(SIG_ROWS, LANGS, "ndcg_cut_10", SIG_EVALS, "zeroshot")
    assert set(tests) == {("bge", "full"), ("bge", "worse")}  # the zero-shot row is the baseline, not tested
    base, ours = SIG_EVALS[("bge", "zeroshot")], SIG_EVALS[("bge", "full")]
    sw = tests[("bge", "full")]["sw"].test
    assert sw.t == pytest.approx(0.28 / (math.sqrt(0.007) / math.sqrt(5)))  # by hand: 7.4833
    assert sw.p == pytest.approx(stats.ttest_rel(ours["sw"].values("ndcg_cut_10"), base["sw"].values("ndcg_cut_10")).pvalue)
    assert sw.p == pytest.approx(0.001705, abs=2e-6)
    pooled = stats.ttest_rel([0.3, 0.5, 0.6, 0.6, 0.9, 0.6, 0.4, 0.5, 0.55], [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert tests[("bge", "full")]["Avg"].test.p == pytest.approx(pooled.pvalue)
    assert tests[("bge", "full")]["Avg"].test.num_queries == 9

    scores = {k: {lang: ev.aggregate for lang, ev in v.items()} for k, v in SIG_EVALS.items()}
    table = tables.language_table(SIG_ROWS, LANGS, "ndcg_cut_10", scores, tests=tests,
                                  highlight_mode="best_and_second")
    md = tables.to_markdown(table)
    # Ours: Avg and sw improve significantly (dagger), te does not (p = 0.59); Worse is significant but lower.
    # Avg = (0.58 + 0.5125) / 2; the zero-shot and the worse row tie at 50.0 in te, both second best.
    assert "| Ours (BGE) | **54.6**\u2020 | **58.0**\u2020 | **51.2** |" in md, md
    assert "| Worse | 28.0 | 6.0 | <u>50.0</u> |" in md, md
    assert "| BGE | <u>40.0</u> | <u>30.0</u> | <u>50.0</u> |" in md, md
    assert "\u2020: significant improvement over the compared row (the same backbone's zeroshot row)" in md
    csv_lines = tables.to_csv(table).splitlines()
    assert csv_lines[0] == "system,Avg,sw,te,compared with,p Avg,p sw,p te,note"
    assert csv_lines[1] == "BGE,40.0,30.0,50.0,,,,,"
    ours_csv = csv_lines[2].split(",")
    assert ours_csv[4] == "bge/zeroshot"
    assert [float(x) for x in ours_csv[5:8]] == pytest.approx(
        [pooled.pvalue, sw.p, tests[("bge", "full")]["te"].test.p], rel=1e-3)
    assert "$^\\dagger$" in tables.to_latex(table)
    assert "<b>58.0</b><sup>\u2020</sup>" in tables.to_html(table)


def test_significance_needs_the_baseline_of_the_same_backbone():
    with pytest.raises(tables.TableError, match=r"row 'Ours \(mE5\)': no evaluation of me5/zeroshot"):
        tables.significance_tests([{"label": "Ours (mE5)", "backbone": "me5", "variant": "full"}], LANGS,
                                  "ndcg_cut_10", {("me5", "full"): SIG_EVALS[("bge", "full")]}, "zeroshot")


def test_averages_over_language_subsets_and_stacked_measures():
    scores = {("a", "v"): {"sw": {"m": 0.2, "n": 0.5}, "ru": {"m": 0.4, "n": 0.7}, "te": {"m": 0.6, "n": 0.9}},
              ("b", "v"): {"sw": {"m": 0.1, "n": 0.6}, "ru": {"m": 0.2, "n": 0.6}, "te": {"m": 0.3, "n": 0.6}}}
    rows = [{"label": "A", "backbone": "a", "variant": "v"}, {"label": "B", "backbone": "b", "variant": "v"}]
    averages = [("Avg", ["sw", "ru", "te"]), ("Avg low-resource", ["sw", "te"]), ("Avg other", ["ru"])]
    parts = [tables.language_table(rows, ["sw", "ru", "te"], m, scores, averages=averages, highlight_mode="best")
             for m in ("m", "n")]
    table = tables.stack_measures(parts, ["M", "N"])
    assert table.columns == ("Avg", "Avg low-resource", "Avg other", "sw", "ru", "te")
    assert tables.to_csv(table).splitlines() == [
        "measure,system,Avg,Avg low-resource,Avg other,sw,ru,te,note",
        "M,A,40.0,40.0,40.0,20.0,40.0,60.0,",   # low-resource (0.2 + 0.6) / 2
        "M,B,20.0,20.0,20.0,10.0,20.0,30.0,",
        "N,A,70.0,70.0,70.0,50.0,70.0,90.0,",
        "N,B,60.0,60.0,60.0,60.0,60.0,60.0,",
    ]
    # marks are per measure: B's sw nDCG (60.0) is the best of block N
    assert table.rows[3].mark(3) == {"best"} and table.rows[2].mark(3) == set()
    assert table.notes == ("Bold: the best value of each column within each measure.",)
    with pytest.raises(tables.TableError, match="must be a non-empty subset"):
        tables.language_table(rows, ["sw"], "m", scores, averages=[("Avg", ["xx"])])


def test_html_table_is_a_self_contained_page_with_escaped_text():
    rows = [{"label": "<BM25> & co", "backbone": "bm25", "variant": "zeroshot"},
            {"label": "Later", "pending": "not yet built: stage 2"}]
    page = tables.to_html(tables.language_table(rows, LANGS, "ndcg_cut_10", SCORES, title="T <1>"))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<caption>T &lt;1&gt;</caption>" in page and "&lt;BM25&gt; &amp; co" in page
    assert '<td class="pending" colspan="3">not yet built: stage 2</td>' in page
    assert "<script" not in page and "http" not in page.replace('lang="en"', "")
    import xml.etree.ElementTree as ET

    ET.fromstring(page.split("\n", 1)[1].replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"/>"))


def test_make_table_script_tests_significance_against_declared_baselines(tmp_path, repo, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = write_eval_files(SIG_EVALS)
    outputs = [f"results/tables/t.{ext}" for ext in ("csv", "md", "html")]
    params = SimpleNamespace(rows=SIG_ROWS[1:2], languages=LANGS, metric="ndcg_cut_10", title="",
                             significance={"against": "zeroshot", "alpha": 0.05}, highlight="none")
    smk = SimpleNamespace(input=inputs, output=outputs, log=[], params=params)
    runpy.run_path(str(repo / "scripts" / "make_table.py"), init_globals={"snakemake": smk})
    # the baseline row is not in the table, but its eval files are read for the test
    assert Path(outputs[1]).read_text().splitlines()[2] == "| Ours (BGE) | 54.6\u2020 | 58.0\u2020 | 51.2 |"
    assert Path(outputs[2]).read_text().startswith("<!DOCTYPE html>")
    smk.input = [p for p in inputs if "zeroshot/te" not in p]
    with pytest.raises(tables.TableError, match=r"results/eval/bge/zeroshot/te.json is not an input of the rule"):
        runpy.run_path(str(repo / "scripts" / "make_table.py"), init_globals={"snakemake": smk})
