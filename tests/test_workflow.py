"""End to end: the workflow's default target machinery on a tiny overlay of the embedded default config.

Runs the real rules (synthetic benchmark, prepare, tiny models, BM25, dense zero-shot retrieval, miners, stage-1
fusion and LLM judge, training, evaluation, tables) in a scratch working directory, then checks the tables
against the evaluation files and the evaluation files against pytrec_eval on the written runs and qrels.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import pytrec_eval
import yaml

from conftest import REPO, VENV_BIN, workflow_env

OVERLAY = {
    "benchmark": {"synthetic": {"passages": 400, "train_queries": 36, "dev_queries": 15, "corpus_shards": 1}},
    "languages": ["sw", "ru"],
    "corpus_shards": {"default": 1},
    "tiny_models": {
        "tokenizer": {"vocab_size": 1500},
        "encoders": {
            name: {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "warmup_steps": 15, "batch_size": 16}
            for name in ["tiny-mbert", "tiny-mdpr", "tiny-mcontriever", "tiny-me5", "tiny-bge"]
        }
        | {
            # The mining retriever needs a real warm-up: untrained, its cosines all sit in [0.90, 0.97] and the
            # score-threshold miners (appendix B.3: 0.6, pos - 0.15, 90% of pos) keep nothing.
            "tiny-bge": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "warmup_steps": 200,
                         "batch_size": 32}
        },
        # The judge LM keeps its default training (it must emit parseable verdicts).
        "causal_lms": {"tiny-judge": {"train_steps": 300}},
    },
    "backbones": {b: {"epochs": 1} for b in ["mbert", "mdpr", "mcontriever", "me5", "bge"]},
    "judges": {"llm": {"chunks": 1, "retries": 1}},
    "ensembles": {name: {"depth": 6} for name in ["me5_bge", "bge", "me5"]},
    "training": {"batch_size": 8, "save_steps": 5},
    # The judging tables for the pointwise judge on a small held-out sample, and the dry estimate of an API judge.
    "judge_eval": {"holdout_queries": 6, "judges": ["llm"], "estimate": ["llm", "gpt4o"]},
}
TARGETS = ["results/tables/table1.md", "results/tables/table2.md", "results/tables/elimination.md",
           "results/tables/judge_quality.md", "results/tables/judge_labels.md", "results/tables/judge_cost.md",
           "results/tables/judge_estimate.md"]


def snakemake(workdir, targets, flags=(), timeout=1800):
    cmd = [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *flags, "--configfile", str(workdir / "config/config.yaml"), str(workdir / "overlay.yaml"),
           "--", *targets]
    return subprocess.run(cmd, env=workflow_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    proc = snakemake(workdir, TARGETS)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((workdir / "results/logs").rglob("*.log"))[-5:])
        pytest.fail(f"workflow failed:\n{proc.stderr[-6000:]}\n{logs}")
    return workdir


def _grouped_rows(md: str) -> dict[str, list[str]]:
    """Rows of a table whose first column is a group: keyed by the second cell."""
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and not set(cells[1]) <= set("-: "):
            rows.setdefault(cells[1], cells[2:])
    return rows


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_eval_files_match_pytrec_eval_on_the_written_runs(workflow_run):
    for lang in OVERLAY["languages"]:
        for backbone in ["bm25", "bge"]:
            ev = json.loads((workflow_run / f"results/eval/{backbone}/zeroshot/{lang}.json").read_text())
            qrels, run = {}, {}
            for line in (workflow_run / f"results/data/{lang}/dev.qrels.tsv").read_text().splitlines():
                q, _, d, r = line.split()
                qrels.setdefault(q, {})[d] = int(r)
            for line in (workflow_run / f"results/runs/{backbone}/zeroshot/{lang}.trec").read_text().splitlines():
                q, _, d, _, s, _ = line.split()
                run.setdefault(q, {})[d] = float(s)
            per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
            for q in qrels:
                expected = per_query.get(q, {"ndcg_cut_10": 0.0, "recall_100": 0.0})
                assert ev["per_query"][q]["ndcg_cut_10"] == pytest.approx(expected["ndcg_cut_10"], abs=1e-9)
            mean = sum(ev["per_query"][q]["ndcg_cut_10"] for q in qrels) / len(qrels)
            assert ev["aggregate"]["ndcg_cut_10"] == pytest.approx(mean)


@pytest.mark.slow
def test_table1_reports_every_baseline_with_the_eval_averages(workflow_run):
    rows = _table_rows((workflow_run / "results/tables/table1.md").read_text())
    for label in ["BM25", "mBERT", "mDPR", "mContriever", "BGE"]:
        assert label in rows, rows.keys()
    langs = OVERLAY["languages"]
    ev = [json.loads((workflow_run / f"results/eval/bm25/zeroshot/{l}.json").read_text()) for l in langs]
    per_lang = [100 * e["aggregate"]["ndcg_cut_10"] for e in ev]
    assert rows["BM25"][0] == f"{sum(per_lang) / len(per_lang):.1f}"
    assert rows["BM25"][1:3] == [f"{v:.1f}" for v in per_lang]
    # BM25 on the synthetic benchmark is far from random (queries share their positive's key words).
    assert float(rows["BM25"][0]) > 20.0
    assert "not yet built" in " ".join(rows["Ours (BGE)"])


@pytest.mark.slow
def test_table2_has_every_miner_and_a_stage1_row_and_pending_full_method(workflow_run):
    rows = _table_rows((workflow_run / "results/tables/table2.md").read_text())
    for label in ["Naive Top-K", "Top-K shifted by N", "TopK-Abs", "TopK-MarginPos", "TopK-PercPos",
                  "Ours, stage 1 only"]:
        assert label in rows
        assert all(c.replace(".", "", 1).isdigit() for c in rows[label]), rows[label]
    assert "not yet built" in " ".join(rows["Ours"])


@pytest.mark.slow
def test_judging_tables_report_the_judge_on_held_out_labels_and_its_cost(workflow_run):
    langs = OVERLAY["languages"]
    evals = {lang: json.loads((workflow_run / f"results/judge_eval/eval/labels/llm/positive/{lang}.json").read_text())
             for lang in langs}
    held = {lang: (workflow_run / f"results/judge_eval/holdout/{lang}.tsv").read_text().splitlines() for lang in langs}
    assert all(len(h) == 6 for h in held.values())
    # the tiny judge was never fine-tuned on the held-out queries
    info = json.loads((workflow_run / "results/models/tiny/tiny-judge/boostmdr_tiny_lm.json").read_text())
    assert info["judge_finetuning"]["held_out_queries"] == [f"results/judge_eval/holdout/{lang}.tsv" for lang in langs]
    labels = _grouped_rows((workflow_run / "results/tables/judge_labels.md").read_text())
    assert labels["Pairs judged"][1:3] == [str(evals[lang]["pairs"]) for lang in langs]
    cost = _grouped_rows((workflow_run / "results/tables/judge_cost.md").read_text())
    calls = sum(evals[lang]["cost"]["calls"] for lang in langs)
    assert calls >= 4 * sum(evals[lang]["pairs"] for lang in langs)  # the authors' four samples, plus any retries
    assert cost[next(k for k in cost if k.startswith("llm"))][2] == f"{calls:,}"  # Queries, Pairs, Calls, ...
    estimate = _table_rows((workflow_run / "results/tables/judge_estimate.md").read_text())
    api = next(v for k, v in estimate.items() if k.startswith("gpt4o"))
    assert api[-2] != "n/a (no price)" and api[-1] == "4 characters per token"


def _planned(workdir, extra_overlay: dict) -> dict[str, int]:
    """Dry-run the same targets with one more overlay; returns planned jobs per rule."""
    (workdir / "edit.yaml").write_text(yaml.safe_dump(extra_overlay))
    cmd = [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "-n", "--quiet", "rules", "--configfile", str(workdir / "config/config.yaml"),
           str(workdir / "overlay.yaml"), str(workdir / "edit.yaml"), "--", *TARGETS]
    proc = subprocess.run(cmd, env=workflow_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.slow
def test_editing_one_variant_replans_only_that_variant(workflow_run):
    # The stage-1-only variant keeps verdicts 0 and 1 ("drop only 2"): a new pool from the same verdicts,
    # then that variant's training, encoding, search, evaluation and its table; nothing upstream, no other variant.
    planned = _planned(workflow_run, {"variants": {"stage1": {"negatives": {"keep_verdicts": [0, 1]}}}})
    n_langs = len(OVERLAY["languages"])
    shards = yaml.safe_load((REPO / "config/config.yaml").read_text())["corpus_shards"] | OVERLAY["corpus_shards"]
    n_shards = sum(shards.get(lang, shards["default"]) for lang in OVERLAY["languages"])
    assert planned == {"pool": n_langs, "train": 1, "encode_corpus": n_shards, "search_dense": n_langs,
                       "evaluate": n_langs, "table": 1}, planned


@pytest.mark.slow
def test_editing_the_judge_model_replans_verdicts_not_candidates(workflow_run):
    default_lm = yaml.safe_load((REPO / "config/config.yaml").read_text())["tiny_models"]["causal_lms"]["tiny-judge"]
    other_lm = default_lm | OVERLAY["tiny_models"]["causal_lms"]["tiny-judge"] | {"seed": 11}
    planned = _planned(workflow_run, {"tiny_models": {"causal_lms": {"tiny-judge-b": other_lm}},
                                      "judges": {"llm": {"model": "results/models/tiny/tiny-judge-b"}}})
    n_langs = len(OVERLAY["languages"])
    assert planned["tiny_lm"] == 1
    assert planned["judge"] == n_langs  # one chunk per language in the overlay
    assert planned["pool"] == n_langs and planned["train"] == 1
    for upstream in ("synthetic_language", "prepare", "tiny_encoder", "candidates_dense", "fuse", "mine", "bm25_index"):
        assert upstream not in planned, planned


@pytest.mark.slow
def test_editing_nothing_plans_nothing(workflow_run):
    assert _planned(workflow_run, {}) == {}
