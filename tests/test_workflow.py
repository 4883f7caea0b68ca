"""End to end: the workflow's default target machinery on a tiny overlay of the embedded default config.

Runs the real rules (synthetic benchmark, prepare, tiny models, BM25, dense zero-shot retrieval, miners, stage-1
fusion and LLM judge, stage-2 MIFT, generation and top-up, stage-3 topics and batch manifests, training, evaluation,
tables) in a scratch working directory, then checks the tables against the evaluation files and the evaluation files
against pytrec_eval on the written runs and qrels, and the final pools against N. Besides the five miners and stage 1
alone, two variants of the method train on BGE: the full method (stages 1-3) and Table 3's "w/o stage 2" (the stage-1
pool with stage 3); the other backbones' and ablations' rows are left out of the overlay's tables to keep it short.
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
    "benchmark": {"synthetic": {"passages": 400, "train_queries": 36, "dev_queries": 15, "corpus_shards": 1,
                                "instructions": 70}},
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
        "causal_lms": {
            "tiny-judge": {"train_steps": 300},
            "tiny-gen": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "train_steps": 20, "batch_size": 8},
        },
    },
    "backbones": {b: {"epochs": 1} for b in ["mbert", "mdpr", "mcontriever", "me5", "bge"]},
    "judges": {"llm": {"chunks": 1, "retries": 1}},
    "ensembles": {name: {"depth": 6} for name in ["me5_bge", "bge", "me5"]},
    "training": {"batch_size": 8, "save_steps": 5},
    # Stage 2 in miniature: 70 instructions per language (40 summarization-related), one epoch of MIFT, short
    # generations, N = 6 of 6 fused candidates.
    "generators": {"llm": {
        "sampling": {"summary_max_new_tokens": 16, "query_max_new_tokens": 8},
        "mift": {"max_samples": 60, "train": {"epochs": 1, "save_steps": 5}},
    }},  # fmt: skip
    "variant_defaults": {"negatives": {"pool_size": 6}},
    "tables": {
        "table1": {"rows": [{"backbone": "bm25", "variant": "zeroshot", "label": "BM25"}]
                   + [{"backbone": b, "variant": "zeroshot"} for b in ["mbert", "mdpr", "mcontriever", "me5", "bge"]]
                   + [{"backbone": "bge", "variant": "full", "label": "Ours (BGE)"}]},
        "table3": {"rows": [{"backbone": "bge", "variant": "full", "label": "Full Model"},
                            {"backbone": "bge", "variant": "wo_stage2", "label": "w/o Stage 2"}]},
    },
    # The judging tables for the pointwise judge on a small held-out sample, and the dry estimate of an API judge.
    "judge_eval": {"holdout_queries": 6, "judges": ["llm"], "estimate": ["llm", "gpt4o"]},
}
TARGETS = ["results/tables/table1.md", "results/tables/table2.md", "results/tables/elimination.md",
           "results/tables/judge_quality.md", "results/tables/table3.md", "results/tables/table13.md",
           "results/tables/batches.md", "results/tables/table8.md", "results/tables/stage2.md",
           "results/tables/generation_false_negatives.md", "results/tables/judge_labels.md",
           "results/tables/judge_cost.md", "results/tables/judge_estimate.md"]


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
    assert all(c.replace(".", "", 1).isdigit() for c in rows["Ours (BGE)"]), rows["Ours (BGE)"]


@pytest.mark.slow
def test_table2_has_every_miner_stage1_alone_and_the_full_method(workflow_run):
    rows = _table_rows((workflow_run / "results/tables/table2.md").read_text())
    for label in ["Naive Top-K", "Top-K shifted by N", "TopK-Abs", "TopK-MarginPos", "TopK-PercPos",
                  "Ours, stage 1 only", "Ours"]:
        assert label in rows
        assert all(c.replace(".", "", 1).isdigit() for c in rows[label]), rows[label]


@pytest.mark.slow
def test_stage3_topics_batches_and_a_stage3_variant_end_to_end(workflow_run):
    # Table 13: every prepared training query has a topic; the demo classifiers beat the majority class.
    rows = _table_rows((workflow_run / "results/tables/table13.md").read_text())
    for lang in OVERLAY["languages"]:
        train = (workflow_run / f"results/data/{lang}/train.jsonl").read_text().splitlines()
        assert int(rows[lang][-1].replace(",", "")) == len(train)
    for name in ("yahoo_answers", "dbpedia"):
        report = json.loads((workflow_run / f"results/models/tiny/fasttext/{name}.json").read_text())
        assert report["accuracy"] > report["majority_class_accuracy"] + 0.2, report
    # Table 3: the stage-3 rows are measured.
    rows = _table_rows((workflow_run / "results/tables/table3.md").read_text())
    for label in ("Full Model", "w/o Stage 2"):
        assert all(c.replace(".", "", 1).isdigit() for c in rows[label]), rows[label]
    summary = json.loads((workflow_run / "results/models/bge/wo_stage2/training_summary.json").read_text())
    assert summary["sampler"] == "manifest" and summary["config"]["loss_weighting"] == "paper"
    # The batches table: the stage-3 manifest is monolingual, the stage-1-only one is the old shuffled batches.
    rows = _table_rows((workflow_run / "results/tables/batches.md").read_text())
    assert rows["w/o Stage 2"][0] == "100.0" and float(rows["Stage 1 only (shuffled)"][0]) < 100.0
    stats = json.loads((workflow_run / "results/batches/wo_stage2/epochs-1.stats.json").read_text())
    assert stats["mode"] == "both" and stats["steps_per_epoch"] == summary["steps_per_epoch"]


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
    # its batch manifest is rebuilt from the new pool, and the batches table shows it
    assert planned == {"pool": n_langs, "batches": 1, "train": 1, "encode_corpus": n_shards, "search_dense": n_langs,
                       "evaluate": n_langs, "table": 2}, planned


@pytest.mark.slow
def test_editing_the_judge_model_replans_verdicts_not_candidates(workflow_run):
    default_lm = yaml.safe_load((REPO / "config/config.yaml").read_text())["tiny_models"]["causal_lms"]["tiny-judge"]
    other_lm = default_lm | OVERLAY["tiny_models"]["causal_lms"]["tiny-judge"] | {"seed": 11}
    planned = _planned(workflow_run, {"tiny_models": {"causal_lms": {"tiny-judge-b": other_lm}},
                                      "judges": {"llm": {"model": "results/models/tiny/tiny-judge-b"}}})
    n_langs = len(OVERLAY["languages"])
    assert planned["tiny_lm"] == 1
    assert planned["judge"] == n_langs  # one chunk per language in the overlay
    # the judged pool feeds the stage-1-only, "w/o stage 2" and full trainings, and the six manifests of the batches
    # table (full, w/o stage 2, its three batching ablations, stage 1 only)
    assert planned["pool"] == n_langs and planned["train"] == 3 and planned["batches"] == 6
    # new pools: new generated queries, whose candidates are retrieved and fused again (not the training queries')
    assert planned["generate"] == planned["candidates_dense"] // 2 == planned["fuse"] == n_langs
    for upstream in ("synthetic_language", "prepare", "tiny_encoder", "mine", "bm25_index", "mift_train"):
        assert upstream not in planned, planned


@pytest.mark.slow
def test_editing_nothing_plans_nothing(workflow_run):
    assert _planned(workflow_run, {}) == {}


@pytest.mark.slow
def test_settings_that_do_not_change_a_result_rerun_nothing(workflow_run):
    # how often training state is saved, and how the judge's model is run, change no output
    assert _planned(workflow_run, {"training": {"save_steps": 7}, "judges": {"llm": {"max_batch_rows": 8}}}) == {}


@pytest.mark.slow
def test_every_final_pool_holds_n_negatives_or_records_its_shortfall_with_provenance(workflow_run):
    from boostmdr.formats import read_negatives

    n = OVERLAY["variant_defaults"]["negatives"]["pool_size"]
    pools = sorted(workflow_run.glob("results/stage2/pool/me5_bge/llm/positive/keep-0/n6/llm/mift-pdbg/judged/*.jsonl"))
    assert [p.name for p in pools] == ["ru.jsonl", "sw.jsonl"]
    rows = _table_rows((workflow_run / "results/tables/table8.md").read_text())
    for path in pools:
        stats = json.loads(path.with_suffix("").with_suffix(".stats.json").read_text())["pool"]
        records = read_negatives(path)
        from_llm = 0
        for rec in records:
            assert len(rec.negatives) + rec.meta["shortfall"] == n and len(rec.negatives) <= n
            sources = [neg.source for neg in rec.negatives]
            assert sources == sorted(sources, key=lambda s: s.startswith("stage2:"))  # stage 1 first, then stage 2
            for neg in rec.negatives[rec.meta["from_stage1"]:]:
                assert neg.source == "stage2:me5_bge" and neg.extra["judged"] and neg.extra["verdict"] == 0
                assert neg.extra["gid"].startswith(f"{rec.qid}.g")
            from_llm += rec.meta["from_stage2"]
        total = sum(len(r.negatives) for r in records)
        assert stats["from_stage2"] == from_llm and stats["negatives"] == total
        lang = path.stem
        column = OVERLAY["languages"].index(lang) + 1
        assert rows["From LLM (%)"][column] == f"{100 * from_llm / total:.1f}"
    check = _table_rows((workflow_run / "results/tables/table3.md").read_text())
    assert all(c.replace(".", "", 1).isdigit() for c in check["Full Model"]), check
