"""The report's pages besides the tables: a table drawn as a figure (its lines carry the table's numbers) and the
configuration page."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from boostmdr import figures, report, tables

from conftest import write_eval_files

LANGS = ["sw", "ru", "te"]
SCORES = {
    ("bge", "m0"): {"sw": {"n": 0.30}, "ru": {"n": 0.50}, "te": {"n": 0.40}},
    ("bge", "m50"): {"sw": {"n": 0.36}, "ru": {"n": 0.52}, "te": {"n": 0.44}},
    ("me5", "m0"): {"sw": {"n": 0.20}, "ru": {"n": 0.60}, "te": {"n": 0.30}},
}
ROWS = [
    {"label": "0%", "backbone": "bge", "variant": "m0", "group": "BGE", "x": 0},
    {"label": "50%", "backbone": "bge", "variant": "m50", "group": "BGE", "x": 50},
    {"label": "100%", "pending": "not yet built: stage 2", "group": "BGE", "x": 100},
    {"label": "0%", "backbone": "me5", "variant": "m0", "group": "mE5", "x": 0},
]
AVERAGES = [("Avg", LANGS), ("Avg low-resource", ["sw", "te"])]


def test_figure_draws_one_line_per_group_and_average_with_the_tables_numbers():
    fig = figures.table_figure(ROWS, LANGS, ["n"], SCORES, AVERAGES, x_label="share (%)", title="sweep")
    ax = fig.axes[0]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    # BGE Avg: (0.30 + 0.50 + 0.40) / 3 = 40.0 at 0 and (0.36 + 0.52 + 0.44) / 3 = 44.0 at 50; the pending 100%
    # row is left out (named under the plot); low-resource: (0.30 + 0.40) / 2 = 35.0, (0.36 + 0.44) / 2 = 40.0
    assert lines["BGE Avg"] == ([0.0, 50.0], [40.0, 44.0])
    assert lines["BGE Avg low-resource"] == ([0.0, 50.0], [35.0, 40.0])
    assert lines["mE5 Avg"] == ([0.0], [pytest.approx(36.7)])
    assert ax.get_xlabel() == "share (%)"
    assert any("not yet built: 100%" in t.get_text() for t in fig.texts)
    with pytest.raises(tables.TableError, match=r"rows \['0%'\] have no x"):
        figures.table_figure([{k: v for k, v in ROWS[0].items() if k != "x"}], LANGS, ["n"], SCORES, None, "x")


def test_figure_script_writes_png_and_pdf(tmp_path, repo, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = write_eval_files(SCORES)
    outputs = ["results/figures/t.png", "results/figures/t.pdf"]
    params = SimpleNamespace(rows=ROWS, languages=LANGS, metric="n", averages=AVERAGES,
                             figure={"x_label": "share (%)", "title": "sweep"})
    runpy.run_path(str(repo / "scripts/table_figure.py"),
                   init_globals={"snakemake": SimpleNamespace(input=inputs, output=outputs, log=[], params=params)})
    assert Path(outputs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(outputs[1]).read_bytes()[:5] == b"%PDF-"


def test_config_page_shows_the_merged_config_escaped_and_what_an_overlay_removed():
    page = report.config_page({"languages": ["sw"], "judges": {"llm": {"prompt": "<b>&</b>"}}}, ["tiny_models"])
    assert page.startswith("<!DOCTYPE html>")
    assert "languages:\n- sw" in page and "&lt;b&gt;&amp;&lt;/b&gt;" in page
    assert "Removed by an overlay (set to null): <code>tiny_models</code>" in page
